package controllers_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/controllers"
	"github.com/keymint/keymint/internal/app"
	"github.com/keymint/keymint/internal/audit"
	"github.com/keymint/keymint/internal/testenv"
)

const slotNamespace = testenv.SlotNamespace

var (
	testScheme = runtime.NewScheme()
	restConfig *rest.Config
	testEnv    *envtest.Environment
	k8sClient  client.WithWatch
	// managerLogs holds every line the managers log, so tests can prove
	// that no key reaches a log.
	managerLogs = &testenv.Buffer{}
)

func TestMain(m *testing.M) {
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	SetDefaultEventuallyTimeout(20 * time.Second)
	SetDefaultEventuallyPollingInterval(50 * time.Millisecond)
	utilruntime.Must(clientgoscheme.AddToScheme(testScheme))
	utilruntime.Must(keymintv1alpha1.AddToScheme(testScheme))
	logf.SetLogger(zap.New(zap.WriteTo(managerLogs), zap.Level(zapcore.Level(-5))))
	if flag.Parse(); testing.Short() {
		return m.Run()
	}

	env, err := testenv.Start(context.Background(), filepath.Join("..", "config"), testScheme)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping envtest:", err)
		}
	}()
	testEnv, restConfig, k8sClient = env.Environment, env.Config, env.Client
	return m.Run()
}

// The key builders, shared with the unit tests of package controllers.
var (
	newKey = controllers.NewKey
	months = controllers.Months
	never  = controllers.Never
	at     = controllers.At
)

// managerOptions configure one test manager.
type managerOptions struct {
	clock   clock.PassiveClock
	maxKeys int
	// intercept, when set, wraps the manager's client, for failure injection.
	intercept *interceptor.Funcs
	// audit, when set, receives the manager's audit records.
	audit audit.Writer
}

// startManager runs a keymint manager, built by internal/app as main builds
// it, until the test ends or stop is called. Each test runs its own, so
// that it chooses its clock and cap.
func startManager(t *testing.T, o managerOptions) (stop func()) {
	t.Helper()
	opts := app.TestOptions(slotNamespace)
	if o.maxKeys != 0 {
		opts.MaxKeysPerUser = o.maxKeys
	}
	deps := app.Deps{
		Clock: o.clock, AuditOut: o.audit, SeveralManagers: true,
		Controller: func(r *controllers.APIKeyReconciler) { controllers.SetReconciled(r, passes.saw) },
	}
	if deps.AuditOut == nil {
		deps.AuditOut = audit.Multi{}
	}
	if o.intercept != nil {
		funcs := *o.intercept
		deps.NewClient = func(cfg *rest.Config, options client.Options) (client.Client, error) {
			c, err := client.NewWithWatch(cfg, options)
			if err != nil {
				return nil, err
			}
			return interceptor.NewClient(c, funcs), nil
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	mgr, err := app.New(ctx, restConfig, opts, deps)
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

// passes remembers which versions of which keys the test managers have
// reconciled.
var passes = &reconcileLog{seen: map[string]bool{}}

type reconcileLog struct {
	mu   sync.Mutex
	seen map[string]bool
}

func (l *reconcileLog) saw(key types.NamespacedName, rv string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seen[key.String()+"@"+rv] = true
}

func (l *reconcileLog) has(key types.NamespacedName, rv string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seen[key.String()+"@"+rv]
}

// pokeAndAwait changes key's annotations, which makes a manager reconcile
// it, and waits until a pass over that very version has finished: a test
// then checks what the pass did, or that it did nothing. It returns the
// poked version.
func pokeAndAwait(g Gomega, key *keymintv1alpha1.APIKey) string {
	poked := key.DeepCopy()
	patch := []byte(`{"metadata":{"annotations":{"test.keymint.io/poke":"` + time.Now().Format(time.RFC3339Nano) + `"}}}`)
	g.Expect(k8sClient.Patch(ctx, poked, client.RawPatch("application/merge-patch+json", patch))).To(Succeed())
	g.Eventually(func() bool { return passes.has(client.ObjectKeyFromObject(poked), poked.ResourceVersion) }).
		Should(BeTrue(), "no reconcile of the poked version")
	return poked.ResourceVersion
}

// newNamespace creates a namespace of the test's own in which every
// authenticated user may hold API keys (keymint-user bound to
// system:authenticated), so tests of other behaviour need no grants.
func newNamespace(t *testing.T) string {
	t.Helper()
	ns := newRestrictedNamespace(t)
	bind(t, ns, "everyone", "keymint-user", rbacv1.Subject{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "system:authenticated"})
	return ns
}

// newRestrictedNamespace creates a namespace in which nobody has access to
// API keys until a test grants it.
func newRestrictedNamespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "test-"}}
	if err := k8sClient.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// bind binds ClusterRole role to subject in ns, as an administrator grants
// access.
func bind(t *testing.T, ns, name, role string, subject rbacv1.Subject) *rbacv1.RoleBinding {
	t.Helper()
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
		Subjects:   []rbacv1.Subject{subject},
	}
	if err := k8sClient.Create(context.Background(), rb); err != nil {
		t.Fatal(err)
	}
	return rb
}

// openTrail opens an audit file of the test's own, closed when it ends.
func openTrail(t *testing.T) *audit.File {
	t.Helper()
	trail, err := audit.OpenFile(filepath.Join(t.TempDir(), "audit.log"), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = trail.Close() })
	return trail
}

// userIn makes a user name unique to a test namespace: the cap counts a
// user's keys across namespaces, and tests (or -count=N runs) must not
// share users.
func userIn(ns, user string) string { return user + "@" + ns }

// getKey reads an APIKey from the API server.
func getKey(g Gomega, key *keymintv1alpha1.APIKey) *keymintv1alpha1.APIKey {
	out := &keymintv1alpha1.APIKey{}
	g.Expect(k8sClient.Get(context.Background(), client.ObjectKeyFromObject(key), out)).To(Succeed())
	return out
}

// deleteWithoutFinalizer removes keymint's finalizer from key as client as
// and deletes it. The delete is conditional on the resourceVersion the
// patch left: a reconcile that put the finalizer back in between makes it
// fail, and both are tried again, so the APIKey really goes without
// keymint's finalizer.
func deleteWithoutFinalizer(g Gomega, as client.Client, key *keymintv1alpha1.APIKey) {
	unfinalize := client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`))
	g.Eventually(func(g Gomega) {
		live := key.DeepCopy()
		g.Expect(as.Patch(context.Background(), live, unfinalize)).To(Succeed())
		g.Expect(as.Delete(context.Background(), live, client.Preconditions{ResourceVersion: &live.ResourceVersion})).To(Succeed())
	}).Should(Succeed())
}

// waitForPhase waits until key reaches phase and returns it.
func waitForPhase(t *testing.T, key *keymintv1alpha1.APIKey, phase keymintv1alpha1.Phase) *keymintv1alpha1.APIKey {
	t.Helper()
	var out *keymintv1alpha1.APIKey
	NewWithT(t).Eventually(func(g Gomega) {
		out = getKey(g, key)
		g.Expect(out.Status.Phase).To(Equal(phase))
		g.Expect(out.Status.ObservedGeneration).To(Equal(out.Generation))
	}).WithTimeout(20 * time.Second).WithPolling(50 * time.Millisecond).Should(Succeed())
	return out
}

// secretOf reads the Secret of key, which must exist.
func secretOf(g Gomega, key *keymintv1alpha1.APIKey) *corev1.Secret {
	s := &corev1.Secret{}
	g.Expect(k8sClient.Get(context.Background(), client.ObjectKey{Namespace: key.Namespace, Name: key.SecretNameOrDefault()}, s)).To(Succeed())
	return s
}

// eventsOf lists the Events about the object named name in ns.
func eventsOf(g Gomega, ns, name string) []eventsv1.Event {
	list := &eventsv1.EventList{}
	g.Expect(k8sClient.List(context.Background(), list, client.InNamespace(ns))).To(Succeed())
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.Name == name {
			out = append(out, e)
		}
	}
	return out
}

// eventReasons are the reasons of the Events about name, with their notes.
func eventWith(g Gomega, ns, name, reason string) *eventsv1.Event {
	for _, e := range eventsOf(g, ns, name) {
		if e.Reason == reason {
			return &e
		}
	}
	return nil
}

// kstatusOf computes what kstatus (Argo CD, Flux) reads of key.
func kstatusOf(g Gomega, key *keymintv1alpha1.APIKey) status.Status {
	raw, err := runtime.DefaultUnstructuredConverter.ToUnstructured(key)
	g.Expect(err).NotTo(HaveOccurred())
	res, err := status.Compute(&unstructured.Unstructured{Object: raw})
	g.Expect(err).NotTo(HaveOccurred())
	return res.Status
}

// expectNoPlaintext fails if the key value appears in the APIKey, its
// Events or the managers' logs.
func expectNoPlaintext(g Gomega, key *keymintv1alpha1.APIKey, value string) {
	g.Expect(value).NotTo(BeEmpty())
	apiKeyJSON, err := json.Marshal(getKey(g, key))
	g.Expect(err).NotTo(HaveOccurred())
	eventsJSON, err := json.Marshal(eventsOf(g, key.Namespace, key.Name))
	g.Expect(err).NotTo(HaveOccurred())
	// Printed as booleans so that a failure never prints the key.
	g.Expect(strings.Contains(string(apiKeyJSON), value)).To(BeFalse(), "the key appears in the APIKey")
	g.Expect(strings.Contains(string(eventsJSON), value)).To(BeFalse(), "the key appears in its Events")
	g.Expect(strings.Contains(managerLogs.String(), value)).To(BeFalse(), "the key appears in the manager's logs")
}

func keyValue(s *corev1.Secret) string { return string(s.Data[keymintv1alpha1.DataKey]) }
