package auditapi_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	auditv1alpha1 "github.com/keymint/keymint/api/audit/v1alpha1"
	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/app"
	"github.com/keymint/keymint/internal/audit"
	"github.com/keymint/keymint/internal/auditapi"
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

// runSuite starts a control plane with the aggregation layer on and no
// audit webhook: what a managed cluster gives keymint.
func runSuite(m *testing.M) int {
	SetDefaultEventuallyTimeout(30 * time.Second)
	SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(keymintv1alpha1.AddToScheme(scheme))
	utilruntime.Must(auditv1alpha1.AddToScheme(scheme))
	logf.SetLogger(zap.New(zap.WriteTo(managerLogs)))
	// k8s.io/apiserver logs through klog: to the same buffer, not stderr.
	klog.SetOutput(managerLogs)
	klog.LogToStderr(false)
	if flag.Parse(); testing.Short() {
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "keymint-api-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }()
	env, err = testenv.Start(context.Background(), filepath.Join("..", "..", "config"), scheme, testenv.WithAggregation(dir))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping envtest:", err)
		}
	}()
	// The RBAC the install grants (the auditor's role among it).
	if err := env.Apply(context.Background(), filepath.Join("..", "..", "config", "rbac")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// failing stands in front of the durable trail, and fails while on as a
// full disk would.
type failing struct {
	on   atomic.Bool
	next audit.Writer
}

func (f *failing) Write(records []audit.Record) error {
	if f.on.Load() {
		return errors.New("no space left on device")
	}
	return f.next.Write(records)
}

// startManager runs a keymint manager with the aggregated API on the port
// the APIService points at, built as main builds it: records go to log;
// the reveals' go through store, in front of it. It waits until the
// aggregator says the API is Available.
func startManager(t *testing.T, log *audit.File, store *failing, configure ...func(*app.Options)) (stop func()) {
	t.Helper()
	o := app.TestOptions(testenv.SlotNamespace)
	for _, c := range configure {
		c(o)
	}
	o.API.BindAddress, o.API.CertFile, o.API.KeyFile = env.API.Addr(), env.API.CertFile, env.API.KeyFile
	o.API.AuthenticationKubeconfig, o.API.AuthorizationKubeconfig = env.API.Kubeconfig, env.API.Kubeconfig
	ctx, cancel := context.WithCancel(context.Background())
	deps := app.Deps{AuditLog: log, AuditOut: audit.Multi{}, SeveralManagers: true}
	if store != nil {
		deps.API = func(d *auditapi.Deps) { store.next, d.Trail = d.Trail, store }
	}
	mgr, err := app.New(ctx, env.Config, o, deps)
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
	if err := env.API.WaitAvailable(ctx, env.Config, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	// The APIService may still be Available from the last manager: wait
	// until this one answers an authenticated request.
	NewWithT(t).Eventually(func() error {
		return env.Client.List(ctx, &auditv1alpha1.AuditRecordList{}, client.InNamespace("default"))
	}).Should(Succeed())
	return stop
}

// clientAs is a client authenticated to the API server as user, in groups.
func clientAs(t *testing.T, user string, groups ...string) client.Client {
	t.Helper()
	u, err := env.AddUser(envtest.User{Name: user, Groups: groups}, env.Config)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(u.Config(), client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// newNamespace makes a namespace of the test's own.
func newNamespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "api-"}}
	if err := env.Client.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// bind binds role to user in ns.
func bind(t *testing.T, ns, role, user string) {
	t.Helper()
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: role + "-"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
	}
	if err := env.Client.Create(context.Background(), rb); err != nil {
		t.Fatal(err)
	}
}
