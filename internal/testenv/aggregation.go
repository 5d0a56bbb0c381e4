package testenv

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	auditv1alpha1 "github.com/keymint/keymint/api/audit/v1alpha1"
)

// APIServiceName and APIServiceNamespace name the Service the APIService
// points at; the serving certificate is for <name>.<namespace>.svc.
const (
	APIServiceName      = "keymint-api"
	APIServiceNamespace = SlotNamespace
)

// Aggregation is the aggregation layer of the test control plane: the API
// server runs with front-proxy client certificates and --requestheader-*
// flags, as a kubeadm cluster does, and reaches keymint's aggregated API on
// 127.0.0.1:Port through a Service of type ExternalName (localhost): the
// aggregator dials localhost:<APIService port> and checks the certificate
// against <service>.<namespace>.svc.
type Aggregation struct {
	Port int
	// CertFile and KeyFile are the API's serving certificate; CABundle
	// vouches for it in the APIService.
	CertFile, KeyFile string
	CABundle          []byte
	// Kubeconfig is the identity the API delegates authentication and
	// authorization with.
	Kubeconfig string
	dir        string
}

// Addr is where the manager serves the API.
func (a *Aggregation) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(a.Port)) }

// ConfigureAggregation sets env's API server up as a front proxy, with its
// files in dir.
func ConfigureAggregation(env *envtest.Environment, dir string) (*Aggregation, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	a := &Aggregation{Port: port, dir: dir, Kubeconfig: filepath.Join(dir, "api-delegate.kubeconfig"),
		CertFile: filepath.Join(dir, "api-serving.crt"), KeyFile: filepath.Join(dir, "api-serving.key")}
	// The certificates are valid from an hour before now for a day.
	now := clock.RealClock{}.Now()
	proxyCA, err := newCA("front-proxy-ca", now)
	if err != nil {
		return nil, err
	}
	if err := proxyCA.issue(filepath.Join(dir, "front-proxy-client"), &x509.Certificate{
		Subject: pkix.Name{CommonName: "front-proxy-client"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "front-proxy-ca.crt"), proxyCA.certPEM, 0o600); err != nil {
		return nil, err
	}
	servingCA, err := newCA("keymint-api-ca", now)
	if err != nil {
		return nil, err
	}
	host := APIServiceName + "." + APIServiceNamespace + ".svc"
	if err := servingCA.issue(filepath.Join(dir, "api-serving"), &x509.Certificate{
		Subject: pkix.Name{CommonName: host}, DNSNames: []string{host}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return nil, err
	}
	a.CABundle = servingCA.certPEM
	env.ControlPlane.GetAPIServer().Configure().
		Set("requestheader-client-ca-file", filepath.Join(dir, "front-proxy-ca.crt")).
		Set("requestheader-allowed-names", "front-proxy-client").
		Set("requestheader-username-headers", "X-Remote-User").
		Set("requestheader-group-headers", "X-Remote-Group").
		Set("requestheader-extra-headers-prefix", "X-Remote-Extra-").
		Set("proxy-client-cert-file", filepath.Join(dir, "front-proxy-client.crt")).
		Set("proxy-client-key-file", filepath.Join(dir, "front-proxy-client.key"))
	return a, nil
}

// Register writes the delegate's kubeconfig and creates, with c, the
// Service and APIService that send audit.keymint.io to 127.0.0.1:Port, and
// the install's deletion webhook (configDir/api/deletions.yaml) pointed at
// the same server.
func (a *Aggregation) Register(ctx context.Context, env *envtest.Environment, c client.Client, configDir string) error {
	if err := WriteKubeconfig(env, a.Kubeconfig, "keymint-api-delegate", "system:masters"); err != nil {
		return err
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: APIServiceNamespace, Name: APIServiceName},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "localhost",
			Ports: []corev1.ServicePort{{Name: "https", Port: int32(a.Port)}}},
	}
	if err := c.Create(ctx, svc); err != nil {
		return fmt.Errorf("creating the API's Service: %w", err)
	}
	as := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiregistration.k8s.io/v1",
		"kind":       "APIService",
		"metadata":   map[string]any{"name": auditv1alpha1.GroupVersion.Version + "." + auditv1alpha1.GroupName},
		"spec": map[string]any{
			"group": auditv1alpha1.GroupName, "version": auditv1alpha1.GroupVersion.Version,
			"groupPriorityMinimum": int64(1000), "versionPriority": int64(15),
			"service":  map[string]any{"name": APIServiceName, "namespace": APIServiceNamespace, "port": int64(a.Port)},
			"caBundle": a.CABundle,
		},
	}}
	if err := c.Create(ctx, as); err != nil {
		return fmt.Errorf("creating the APIService: %w", err)
	}
	return a.registerDeletions(ctx, c, filepath.Join(configDir, "api", "deletions.yaml"))
}

// registerDeletions creates the webhook configuration of file, each
// webhook sent to 127.0.0.1:Port with the test CA.
func (a *Aggregation) registerDeletions(ctx context.Context, c client.Client, file string) error {
	raw, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	wh := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(raw, &wh.Object); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	hooks, _, _ := unstructured.NestedSlice(wh.Object, "webhooks")
	for _, h := range hooks {
		m := h.(map[string]any)
		_ = unstructured.SetNestedField(m, APIServiceNamespace, "clientConfig", "service", "namespace")
		_ = unstructured.SetNestedField(m, int64(a.Port), "clientConfig", "service", "port")
		_ = unstructured.SetNestedField(m, base64.StdEncoding.EncodeToString(a.CABundle), "clientConfig", "caBundle")
	}
	_ = unstructured.SetNestedSlice(wh.Object, hooks, "webhooks")
	if err := c.Create(ctx, wh); err != nil {
		return fmt.Errorf("creating the deletion webhook: %w", err)
	}
	return nil
}

// WaitAvailable waits until the aggregator says the API is Available and
// its aggregated discovery and OpenAPI list the API's resources: a client
// that starts afresh maps kinds from the one and kubectl validates against
// the other, which the aggregator fills in a moment after the APIService
// turns Available.
func (a *Aggregation) WaitAvailable(ctx context.Context, cfg *rest.Config, timeout time.Duration) error {
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		return err
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return err
	}
	var last string
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		if last = available(ctx, c); last != "" {
			return false, nil
		}
		last = discovered(dc)
		return last == "", nil
	})
	if err != nil {
		return fmt.Errorf("the API is not available: %s", last)
	}
	return nil
}

// available says why the APIService is not Available, or "".
func available(ctx context.Context, c client.Client) string {
	as := &unstructured.Unstructured{}
	as.SetAPIVersion("apiregistration.k8s.io/v1")
	as.SetKind("APIService")
	if err := c.Get(ctx, client.ObjectKey{Name: auditv1alpha1.GroupVersion.Version + "." + auditv1alpha1.GroupName}, as); err != nil {
		return err.Error()
	}
	conds, _, _ := unstructured.NestedSlice(as.Object, "status", "conditions")
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok && m["type"] == "Available" {
			if m["status"] == "True" {
				return ""
			}
			return fmt.Sprintf("%v: %v", m["reason"], m["message"])
		}
	}
	return "the APIService has no Available condition yet"
}

// discovered says why aggregated discovery does not list the API's
// resources, or "".
func discovered(dc *discovery.DiscoveryClient) string {
	_, resources, failed, err := dc.GroupsAndMaybeResources()
	if err != nil {
		return err.Error()
	}
	if err := failed[auditv1alpha1.GroupVersion]; err != nil {
		return err.Error()
	}
	if list := resources[auditv1alpha1.GroupVersion]; list == nil || len(list.APIResources) == 0 {
		return "aggregated discovery does not list " + auditv1alpha1.GroupVersion.String() + " yet"
	}
	// kubectl validates what it creates against the OpenAPI schema, which
	// the aggregator also fetches a moment later.
	paths, err := dc.OpenAPIV3().Paths()
	if err != nil {
		return err.Error()
	}
	if _, ok := paths["apis/"+auditv1alpha1.GroupVersion.String()]; !ok {
		return "the API server's OpenAPI v3 does not list " + auditv1alpha1.GroupVersion.String() + " yet"
	}
	// kubectl's client-side validation still reads OpenAPI v2.
	v2, err := dc.OpenAPISchema()
	if err != nil {
		return err.Error()
	}
	for _, d := range v2.GetDefinitions().GetAdditionalProperties() {
		if strings.HasSuffix(d.GetName(), ".audit.v1alpha1.APIKeyReveal") {
			return ""
		}
	}
	return "the API server's OpenAPI v2 has no APIKeyReveal yet"
}

// ca is a certificate authority of the test's own.
type ca struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM []byte
}

func newCA(name string, now time.Time) (*ca, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &ca{cert: cert, key: key, certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// issue writes path.crt and path.key, a certificate of tmpl's subject,
// names and usages signed by c.
func (c *ca) issue(path string, tmpl *x509.Certificate) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		return err
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore, tmpl.NotAfter = c.cert.NotBefore, c.cert.NotAfter
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(path+".crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(path+".key", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
}
