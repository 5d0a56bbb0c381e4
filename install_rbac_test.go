package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/app"
	"github.com/keymint/keymint/internal/testenv"
)

// TestManagerRunsWithTheInstallsRBAC runs the manager as the install
// runs it: with a token of the ServiceAccount that dist/install.yaml (and
// the chart) creates, bound to exactly the RBAC they grant, no
// system:masters anywhere, and the Deployment's own arguments. It drives a
// key's whole life: issue, the owner's read, a verification that writes
// lastUsedAt, expiry, access removal and deletion. A missing permission
// fails the test and is named.
func TestManagerRunsWithTheInstallsRBAC(t *testing.T) {
	testenv.RequireControlPlane(t)
	for _, tc := range []struct {
		name   string
		render func(t *testing.T) []byte
	}{
		{"dist/install.yaml", func(t *testing.T) []byte {
			raw, err := os.ReadFile("dist/install.yaml")
			if err != nil {
				t.Fatal(err)
			}
			return raw
		}},
		{"the Helm chart", func(t *testing.T) []byte {
			var crds []byte
			for _, crd := range []string{"keymint.io_apikeys.yaml", "keymint.io_auditentries.yaml"} {
				raw, err := os.ReadFile(filepath.Join("charts", "keymint", "crds", crd))
				if err != nil {
					t.Fatal(err)
				}
				crds = append(append(crds, raw...), "\n---\n"...)
			}
			rendered, err := tool(t, nil, "helm", "template", "keymint", "charts/keymint", "--namespace", "keymint-system", "--kube-version", "v1.37.2")
			if err != nil {
				t.Fatalf("%v\n%s", err, rendered)
			}
			ns := "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: keymint-system\n"
			return []byte(ns + "---\n" + string(crds) + rendered)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) { runWithInstalledRBAC(t, tc.render(t)) })
	}
}

func runWithInstalledRBAC(t *testing.T, manifest []byte) {
	g := NewWithT(t)
	ctx := context.Background()
	env, adminConfig := bareControlPlane(t)
	if out, err := tool(t, manifest, "kubectl", "--kubeconfig", adminConfig, "apply", "--server-side", "-f", "-"); err != nil {
		t.Fatalf("applying the install: %v\n%s", err, out)
	}
	admin, err := client.NewWithWatch(env.Config, client.Options{Scheme: app.Scheme})
	g.Expect(err).NotTo(HaveOccurred())
	if err := (&testenv.Env{Client: admin}).WaitForPolicies(ctx); err != nil {
		t.Fatal(err)
	}

	// The manager's identity: a token of its ServiceAccount, nothing more.
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "keymint-system", Name: "keymint-manager"}}
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}
	g.Expect(admin.SubResource("token").Create(ctx, sa, req)).To(Succeed())
	kubeconfig := tokenKubeconfig(t, env.Config, req.Status.Token)

	verifyAddr := freeAddr(t)
	args := deploymentArgs(t, manifest)
	for i, a := range args {
		switch {
		case strings.HasPrefix(a, "--verify-bind-address="):
			args[i] = "--verify-bind-address=" + verifyAddr
		case strings.HasPrefix(a, "--metrics-bind-address="):
			args[i] = "--metrics-bind-address=" + freeAddr(t)
		case strings.HasPrefix(a, "--health-probe-bind-address="):
			args[i] = "--health-probe-bind-address=" + freeAddr(t)
		case strings.HasPrefix(a, "--ext-authz-bind-address="):
			args[i] = "--ext-authz-bind-address=" + freeAddr(t)
		case strings.HasPrefix(a, "--api-bind-address="):
			args[i] = "--api-bind-address=" + freeAddr(t)
		}
	}
	t.Setenv("POD_NAMESPACE", "keymint-system")
	t.Setenv("POD_NAME", "keymint-manager-rbac-test")
	logPath := filepath.Join(t.TempDir(), "manager.log")
	startManagerProcess(t, kubeconfig, logPath, args...)
	logs := func() string { raw, _ := os.ReadFile(logPath); return string(raw) }
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("manager log:\n%s", tail(logs(), 6000))
		}
	})

	// main wires what internal/app wires, and says so.
	g.Eventually(logs, 30*time.Second, 100*time.Millisecond).Should(ContainSubstring(
		`"components":["controller","verifier","ext-authz","aggregated-api","metrics","probes"]`))

	ns := "team-rbac"
	g.Expect(admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
	alice := "alice"
	grant := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "alice-keys"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "keymint-user"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: alice}},
	}
	g.Expect(admin.Create(ctx, grant)).To(Succeed())
	aliceConfig := rest.CopyConfig(env.Config)
	aliceConfig.Impersonate = rest.ImpersonationConfig{UserName: alice, Groups: []string{"system:authenticated"}}
	asAlice, err := client.New(aliceConfig, client.Options{Scheme: app.Scheme})
	g.Expect(err).NotTo(HaveOccurred())

	phase := func(name string) keymintv1alpha1.Phase {
		k := &keymintv1alpha1.APIKey{}
		if err := admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, k); err != nil {
			return ""
		}
		return k.Status.Phase
	}
	// Issue, and the owner reads her key.
	key := &keymintv1alpha1.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ci"},
		Spec: keymintv1alpha1.APIKeySpec{User: alice, Expiration: keymintv1alpha1.Expiration{Never: new(true)}}}
	g.Expect(asAlice.Create(ctx, key)).To(Succeed())
	g.Eventually(func() keymintv1alpha1.Phase { return phase("ci") }, time.Minute).Should(Equal(keymintv1alpha1.PhaseActive))
	secret := &corev1.Secret{}
	g.Expect(apierrors.IsForbidden(asAlice.Get(ctx, client.ObjectKey{Namespace: ns, Name: "ci"}, secret))).To(BeTrue(),
		"the owner reads her key's Secret directly; people see keys through keymint's API")
	g.Expect(admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: "ci"}, secret)).To(Succeed())

	// A verification, which writes lastUsedAt.
	g.Eventually(func() (int, error) {
		r, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+verifyAddr+"/verify", nil)
		if err != nil {
			return 0, err
		}
		r.Header.Set("Authorization", "Bearer "+string(secret.Data[keymintv1alpha1.DataKey]))
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode, nil
	}, 30*time.Second).Should(Equal(http.StatusOK))
	g.Eventually(func(g Gomega) {
		g.Expect(admin.Get(ctx, client.ObjectKeyFromObject(key), key)).To(Succeed())
		g.Expect(key.Status.LastUsedAt).NotTo(BeNil())
	}, 30*time.Second).Should(Succeed(), "lastUsedAt was not written")

	// A renewal into the same Secret (an in-place rotation of a key with
	// spec.rotation, the owner's request): the manager updates the Secret.
	rotating := &keymintv1alpha1.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "rotating"},
		Spec: keymintv1alpha1.APIKeySpec{User: alice, Expiration: keymintv1alpha1.Expiration{Months: new(int32(3))},
			Rotation: &keymintv1alpha1.Rotation{}}}
	g.Expect(asAlice.Create(ctx, rotating)).To(Succeed())
	g.Eventually(func() keymintv1alpha1.Phase { return phase("rotating") }, time.Minute).Should(Equal(keymintv1alpha1.PhaseActive))
	request := []byte(`{"metadata":{"annotations":{"keymint.io/rotate-requested-at":"2026-12-06T12:00:00Z","keymint.io/rotate-grace":"0s"}}}`)
	g.Expect(asAlice.Patch(ctx, rotating, client.RawPatch(types.MergePatchType, request))).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(admin.Get(ctx, client.ObjectKeyFromObject(rotating), rotating)).To(Succeed())
		g.Expect(rotating.Status.Revision).To(Equal(int64(2)))
	}, 30*time.Second).Should(Succeed(), "the key was not renewed")

	// Expiry, on the manager's real clock.
	soon := metav1.NewTime(time.Now().Add(6 * time.Second).Truncate(time.Second))
	expiring := &keymintv1alpha1.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "short"},
		Spec: keymintv1alpha1.APIKeySpec{User: alice, Expiration: keymintv1alpha1.Expiration{At: &soon}}}
	g.Expect(asAlice.Create(ctx, expiring)).To(Succeed())
	g.Eventually(func() keymintv1alpha1.Phase { return phase("short") }, time.Minute).Should(Equal(keymintv1alpha1.PhaseExpired))

	// Access removed: the key is suspended; then deleted.
	g.Expect(admin.Delete(ctx, grant)).To(Succeed())
	g.Eventually(func() keymintv1alpha1.Phase { return phase("ci") }, time.Minute).Should(Equal(keymintv1alpha1.PhaseSuspended))
	for _, name := range []string{"ci", "short", "rotating"} {
		g.Expect(admin.Delete(ctx, &keymintv1alpha1.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}})).To(Succeed())
		g.Eventually(func() bool {
			return apierrors.IsNotFound(admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &keymintv1alpha1.APIKey{}))
		}, time.Minute).Should(BeTrue(), "apikey/%s was not finalized", name)
	}

	// Nothing the manager asked for was forbidden.
	var forbidden []string
	for line := range strings.SplitSeq(logs(), "\n") {
		if strings.Contains(line, "forbidden") || strings.Contains(line, "cannot ") && strings.Contains(line, "resource") {
			forbidden = append(forbidden, line)
		}
	}
	g.Expect(forbidden).To(BeEmpty(), "the install's RBAC lacks a permission the manager used")
}

// deploymentArgs are the manager container's arguments in manifest.
func deploymentArgs(t *testing.T, manifest []byte) []string {
	t.Helper()
	decoder := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(manifest), 4096)
	for {
		var d appsv1.Deployment
		if err := decoder.Decode(&d); err != nil {
			if errors.Is(err, io.EOF) {
				t.Fatal("no Deployment in the manifest")
			}
			t.Fatal(err)
		}
		if d.Kind != "Deployment" {
			continue
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			if c.Name == "manager" {
				return append([]string(nil), c.Args...)
			}
		}
	}
}

// tokenKubeconfig is a kubeconfig of the API server of cfg that
// authenticates with token alone.
func tokenKubeconfig(t *testing.T, cfg *rest.Config, token string) string {
	t.Helper()
	c := clientcmdapi.NewConfig()
	c.Clusters["c"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	c.AuthInfos["sa"] = &clientcmdapi.AuthInfo{Token: token}
	c.Contexts["c"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "sa"}
	c.CurrentContext = "c"
	path := filepath.Join(t.TempDir(), "manager.kubeconfig")
	if err := clientcmd.WriteToFile(*c, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// freeAddr is a loopback address with a port free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return fmt.Sprint(l.Addr())
}
