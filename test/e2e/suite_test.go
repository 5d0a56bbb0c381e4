//go:build e2e

// Package e2e runs keymint as its users do: installed with the Helm chart,
// as Pods a kubelet starts, on the one-node cluster of hack/e2e/cluster.sh.
// `make e2e` brings the cluster up, runs these tests inside its network
// namespace and tears it down; they cannot run anywhere else.
package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	auditv1alpha1 "github.com/keymint/keymint/api/audit/v1alpha1"
	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
)

const (
	// systemNamespace is where the chart installs keymint.
	systemNamespace = "keymint-system"
	// image is the manager's image, built from this repository by hack/e2e/images.sh.
	imageRepository = "keymint.io/e2e/keymint"
	imageTag        = "dev"
)

var (
	// cfg and admin are the cluster operator's (system:masters): they
	// install the chart and set the scene. keymint itself runs as the
	// chart's ServiceAccount, and users act through impersonation.
	cfg   *rest.Config
	admin client.Client
	// repo is the repository's root, for the chart and bin/.
	repo string
	// scheme has keymint's kinds and those of its aggregated API.
	scheme = runtime.NewScheme()
)

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(keymintv1alpha1.AddToScheme(scheme))
	utilruntime.Must(auditv1alpha1.AddToScheme(scheme))
}

func TestMain(m *testing.M) {
	if err := setUp(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func setUp() error {
	if os.Getenv("KEYMINT_E2E") != "1" {
		return fmt.Errorf("these tests run on make e2e's cluster: run make e2e")
	}
	_, file, _, _ := goruntime.Caller(0)
	repo = filepath.Join(filepath.Dir(file), "..", "..")
	log.SetLogger(logr.Discard())
	var err error
	if cfg, err = clientcmd.BuildConfigFromFlags("", os.Getenv("KUBECONFIG")); err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = 50, 100
	if admin, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		return err
	}
	start := time.Now()
	if out, err := helm(true, "--install", "--create-namespace", "--set", "image.repository="+imageRepository,
		"--set", "image.tag="+imageTag, "--set", "image.pullPolicy=Never"); err != nil {
		return fmt.Errorf("helm install: %w\n%s", err, out)
	}
	fmt.Fprintf(os.Stderr, "e2e: the chart is installed and its Deployment Ready after %s\n", time.Since(start).Round(100*time.Millisecond))
	return nil
}

// helm runs helm upgrade of the chart's release with args, waiting for it
// to be Ready when wait is set.
func helm(wait bool, args ...string) ([]byte, error) {
	args = append([]string{"upgrade", "keymint", filepath.Join(repo, "charts", "keymint"), "--namespace", systemNamespace}, args...)
	if wait {
		args = append(args, "--wait", "--timeout", "3m")
	}
	return exec.Command(filepath.Join(repo, "bin", "helm"), args...).CombinedOutput()
}

// alice is the user who holds keys in the tests.
const alice = "alice"

// asAlice returns a client that acts as alice (impersonated by the operator).
func asAlice(t *testing.T) client.Client {
	t.Helper()
	c := rest.CopyConfig(cfg)
	c.Impersonate = rest.ImpersonationConfig{UserName: alice, Groups: []string{"system:authenticated"}}
	cl, err := client.New(c, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// newNamespace makes a namespace where alice may hold keys (keymint-user),
// deleted when the test ends.
func newNamespace(t *testing.T, name string) {
	t.Helper()
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := admin.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.Delete(context.Background(), ns) })
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: name, Name: "keymint-user-" + alice},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "keymint-user"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: alice}},
	}
	if err := admin.Create(ctx, rb); err != nil {
		t.Fatal(err)
	}
}
