package auditserver_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/app"
	"github.com/keymint/keymint/internal/audit"
	"github.com/keymint/keymint/internal/auditserver"
	"github.com/keymint/keymint/internal/testenv"
)

var (
	scheme = runtime.NewScheme()
	env    *testenv.Env
	// managerLogs holds every line the managers log, so tests can prove
	// that no key reaches a log.
	managerLogs = &testenv.Buffer{}
)

func TestMain(m *testing.M) {
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	SetDefaultEventuallyTimeout(30 * time.Second)
	SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(keymintv1alpha1.AddToScheme(scheme))
	logf.SetLogger(zap.New(zap.WriteTo(managerLogs), zap.Level(zapcore.Level(-5))))
	if flag.Parse(); testing.Short() {
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "keymint-audit-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }()
	env, err = testenv.Start(context.Background(), filepath.Join("..", "..", "config"), scheme, testenv.WithAuditWebhook(dir))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping envtest:", err)
		}
	}()
	return m.Run()
}

// startManager runs a keymint manager with its audit endpoint, built as
// main builds it: records go to log (which exports read) and then to out
// (nothing more when nil). Its port is the one the API server sends to, so
// one runs at a time.
func startManager(t *testing.T, log *audit.File, out audit.Writer, configure ...func(*auditserver.Server)) (stop func()) {
	t.Helper()
	if out == nil {
		out = audit.Multi{}
	}
	o := app.TestOptions(testenv.SlotNamespace)
	o.Audit.Addr, o.Audit.CertFile, o.Audit.KeyFile, o.Audit.TokenFile = env.Audit.Addr, env.Audit.CertFile, env.Audit.KeyFile, env.Audit.TokenFile
	o.Audit.ShutdownTimeout = 200 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	mgr, err := app.New(ctx, env.Config, o, app.Deps{
		AuditLog: log, AuditOut: out, SeveralManagers: true,
		AuditEndpoint: func(s *auditserver.Server) {
			for _, c := range configure {
				c(s)
			}
		},
	})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	stop = sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})
	t.Cleanup(stop)
	return stop
}

// actorsOf are the usernames of the actors of the records of action in
// namespace, in the order written.
func actorsOf(t *testing.T, log *audit.File, namespace string, action audit.Action) []string {
	t.Helper()
	var out []string
	for _, r := range testenv.Records(t, log, namespace, action) {
		out = append(out, r.Actor.Username)
	}
	return out
}

// as returns a client that acts as user (impersonation).
func as(t *testing.T, user string, groups ...string) client.Client {
	t.Helper()
	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: append([]string{"system:authenticated"}, groups...)}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// holders is the group that may read and delete Secrets and APIKeys in a
// test's namespace.
const holders = "key-holders"

// newNamespace creates a namespace in which every user may hold keys and
// the group holders may read and delete Secrets and APIKeys.
func newNamespace(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "audit-"}}
	if err := env.Client.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "key-holder"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "list", "watch", "delete"}},
			{APIGroups: []string{keymintv1alpha1.GroupVersion.Group}, Resources: []string{"apikeys"}, Verbs: []string{"get", "list", "delete"}},
		},
	}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "key-holder"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: holders}},
	}
	// Every user may hold keys here (the controller checks "use").
	everyone := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "keymint-user"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "keymint-user"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "system:authenticated"}},
	}
	for _, obj := range []client.Object{role, binding, everyone} {
		if err := env.Client.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	return ns.Name
}

// issue creates an APIKey for user (as the administrator, whom the audit
// server ignores as the manager's own identity) and waits for its key.
// Users are unique to a namespace (userIn), since the cap counts a user's
// keys across namespaces.
func issue(t *testing.T, ns, name, user string) *keymintv1alpha1.APIKey {
	t.Helper()
	g := NewWithT(t)
	key := &keymintv1alpha1.APIKey{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: keymintv1alpha1.APIKeySpec{
			User:       user,
			Expiration: keymintv1alpha1.Expiration{Never: new(true)},
		},
	}
	g.Expect(env.Client.Create(context.Background(), key)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(env.Client.Get(context.Background(), client.ObjectKeyFromObject(key), key)).To(Succeed())
		g.Expect(key.Status.Phase).To(Equal(keymintv1alpha1.PhaseActive))
	}).Should(Succeed())
	return key
}

// userIn makes a user name unique to a test's namespace.
func userIn(ns, user string) string { return user + "@" + ns }
