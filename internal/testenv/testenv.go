// Package testenv starts the control plane tests run on: kube-apiserver and
// etcd from KUBEBUILDER_ASSETS (bin/k8s, built by `make controlplane`), with
// keymint's CRD, access roles and admission policies installed as `make
// install` installs them.
package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
)

// SlotNamespace is where the test managers keep slot Leases.
const SlotNamespace = "keymint-system"

// Env is a running control plane.
type Env struct {
	*envtest.Environment
	Config *rest.Config
	Client client.WithWatch
	// Audit is set when the API server sends audit batches to a webhook.
	Audit *AuditWebhook
	// API is set when the API server aggregates keymint's API.
	API *Aggregation
}

// Option changes how the control plane starts.
type Option func(*options)

type options struct {
	auditDir, apiDir string
}

// WithAuditWebhook makes the API server audit with config/audit's policy
// and send the batches to a webhook, with its files in dir (see
// ConfigureAudit).
func WithAuditWebhook(dir string) Option {
	return func(o *options) { o.auditDir = dir }
}

// WithAggregation turns the aggregation layer on and registers keymint's
// aggregated API at a local port, with its files in dir (see
// ConfigureAggregation).
func WithAggregation(dir string) Option {
	return func(o *options) { o.apiDir = dir }
}

// Start starts the control plane and installs keymint's CRD, roles and
// policies from configDir (the repository's config/).
func Start(ctx context.Context, configDir string, scheme *runtime.Scheme, opts ...Option) (*Env, error) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		return nil, errors.New("KUBEBUILDER_ASSETS is not set: run `make test`, which builds kube-apiserver and etcd into bin/k8s and sets it")
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(configDir, "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	var auditWebhook *AuditWebhook
	if o.auditDir != "" {
		var err error
		if auditWebhook, err = ConfigureAudit(env, configDir, o.auditDir); err != nil {
			return nil, err
		}
	}
	var aggregation *Aggregation
	if o.apiDir != "" {
		var err error
		if aggregation, err = ConfigureAggregation(env, o.apiDir); err != nil {
			return nil, err
		}
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("starting envtest: %w", err)
	}
	e := &Env{Environment: env, Config: cfg, Audit: auditWebhook, API: aggregation}
	fail := func(err error) (*Env, error) {
		_ = env.Stop()
		return nil, err
	}
	if e.Client, err = client.NewWithWatch(cfg, client.Options{Scheme: scheme}); err != nil {
		return fail(err)
	}
	if err := e.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: SlotNamespace}}); err != nil {
		return fail(err)
	}
	for _, dir := range []string{"access", "admission"} {
		if err := e.Apply(ctx, filepath.Join(configDir, dir)); err != nil {
			return fail(err)
		}
	}
	if err := e.WaitForPolicies(ctx); err != nil {
		return fail(err)
	}
	if aggregation != nil {
		if err := aggregation.Register(ctx, env, e.Client, configDir); err != nil {
			return fail(err)
		}
	}
	return e, nil
}

// Apply creates every object in the YAML files of dir, except its
// kustomization.
func (e *Env) Apply(ctx context.Context, dir string) error {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return err
	}
	for _, file := range files {
		if filepath.Base(file) == "kustomization.yaml" {
			continue
		}
		raw, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		decoder := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096)
		for {
			obj := &unstructured.Unstructured{}
			if err := decoder.Decode(&obj.Object); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				return fmt.Errorf("%s: %w", file, err)
			}
			if len(obj.Object) == 0 {
				continue
			}
			if err := e.Client.Create(ctx, obj); err != nil {
				return fmt.Errorf("%s: %s %s: %w", file, obj.GetKind(), obj.GetName(), err)
			}
		}
	}
	return nil
}

// WaitForPolicies waits until the API server applies the admission
// policies, which load asynchronously: an APIKey created comes back with
// spec.requester set.
func (e *Env) WaitForPolicies(ctx context.Context) error {
	i := 0
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		i++
		probe := &keymintv1alpha1.APIKey{
			ObjectMeta: metav1.ObjectMeta{Namespace: metav1.NamespaceDefault, Name: fmt.Sprintf("policy-probe-%d", i)},
			Spec: keymintv1alpha1.APIKeySpec{
				User:       "probe",
				Expiration: keymintv1alpha1.Expiration{Never: new(true)},
			},
		}
		// Until the policies know the new CRD, a create can fail outright.
		if err := e.Client.Create(ctx, probe); err != nil {
			return false, nil
		}
		// The probe carries the finalizer the requester policy adds; no
		// manager runs yet to remove it.
		probe.Finalizers = nil
		if err := e.Client.Update(ctx, probe); err != nil {
			return false, err
		}
		return probe.Spec.Requester != nil && probe.Spec.StateChangedBy != "", e.Client.Delete(ctx, probe)
	})
	if err != nil {
		return fmt.Errorf("the admission policies did not take effect: %w", err)
	}
	return nil
}

// ServiceAccountToken creates ServiceAccount namespace/name and returns a
// token of it (a TokenRequest, valid ten minutes): a bearer token a
// TokenReview accepts, for tests of delegated authentication.
func (e *Env) ServiceAccountToken(ctx context.Context, namespace, name string) (string, error) {
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	if err := e.Client.Create(ctx, sa); err != nil {
		return "", err
	}
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](600)}}
	if err := e.Client.SubResource("token").Create(ctx, sa, req); err != nil {
		return "", err
	}
	return req.Status.Token, nil
}

// WriteKubeconfig writes to path a kubeconfig of a new user of env's API
// server, in groups: how a process of its own (a manager, kubectl) reaches
// the control plane as that user.
func WriteKubeconfig(env *envtest.Environment, path, user string, groups ...string) error {
	u, err := env.AddUser(envtest.User{Name: user, Groups: groups}, nil)
	if err != nil {
		return err
	}
	raw, err := u.KubeConfig()
	if err != nil {
		return err
	}
	return os.WriteFile(path, raw, 0o600)
}
