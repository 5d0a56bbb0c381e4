package auditserver_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/audit"
	"github.com/keymint/keymint/internal/auditserver"
	"github.com/keymint/keymint/internal/testenv"
)

// authenticatedAs is a client that authenticates as user itself (no
// impersonation), unthrottled.
func authenticatedAs(t *testing.T, user string, groups ...string) (client.Client, *rest.Config) {
	t.Helper()
	u, err := env.AddUser(envtest.User{Name: user, Groups: groups}, env.Config)
	if err != nil {
		t.Fatal(err)
	}
	cfg := u.Config()
	cfg.QPS, cfg.Burst = -1, 0
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c, cfg
}

// TestDeniedListsCannotFlushTheTrail: an unprivileged user's 10,000 refused
// lists of every Secret in the cluster, through the API server's real audit
// batches, against 1,000 keys and the smallest retention, are a handful of
// records that count every attempt, and every Issued, Viewed and Deleted
// record stays exportable.
func TestDeniedListsCannotFlushTheTrail(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	ctx := context.Background()
	log, err := audit.OpenFile(filepath.Join(t.TempDir(), "audit.log"), 1<<20, 1)
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = log.Close() })
	// Ahead of the API server's clock, as the other test's, so no deletion
	// looks older than a request.
	clk := clocktesting.NewFakeClock(time.Now().Add(time.Hour))
	startManager(t, log, nil, func(s *auditserver.Server) { s.Clock = clk })
	ns := newNamespace(t)

	const keys = 1000
	for i := range keys {
		key := &keymintv1alpha1.APIKey{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("k%04d", i)},
			Spec:       keymintv1alpha1.APIKeySpec{User: userIn(ns, fmt.Sprint("u", i/2)), Expiration: keymintv1alpha1.Expiration{Never: new(true)}},
		}
		g.Expect(env.Client.Create(ctx, key)).To(Succeed())
	}
	g.Eventually(func() []audit.Record { return testenv.Records(t, log, ns, audit.ActionIssued) }, 3*time.Minute).Should(HaveLen(keys))
	var all corev1.SecretList
	g.Expect(as(t, userIn(ns, "auditor"), holders).List(ctx, &all, client.InNamespace(ns))).To(Succeed())
	g.Expect(all.Items).To(HaveLen(keys))
	g.Eventually(func() []audit.Record { return testenv.Records(t, log, ns, audit.ActionViewed) }, within).Should(HaveLen(keys))
	g.Expect(env.Client.Delete(ctx, &keymintv1alpha1.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "k0000"}})).To(Succeed())

	mallory, _ := authenticatedAs(t, userIn(ns, "mallory"))
	const attempts, workers = 10_000, 8
	var refused atomic.Int32
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < attempts; i += workers {
				if err := mallory.List(ctx, &corev1.SecretList{}); apierrors.IsForbidden(err) {
					refused.Add(1)
				}
			}
		})
	}
	wg.Wait()
	g.Expect(refused.Load()).To(BeNumerically("==", attempts))

	// Every attempt is counted: the first of each window on its own, the
	// rest in the window's summary, written when the window closes.
	counted := func() (n, written int) {
		g.Expect(log.Each(audit.Filter{User: "", Action: audit.ActionViewDenied}, func(r audit.Record) error {
			if r.Actor.Username != userIn(ns, "mallory") {
				return nil
			}
			written++
			if r.Repeats != nil {
				n += r.Repeats.Count
			} else {
				n++
			}
			return nil
		})).To(Succeed())
		return n, written
	}
	g.Eventually(func() int {
		clk.Step(auditserver.RepeatWindow)
		n, _ := counted()
		return n
	}, time.Minute, 500*time.Millisecond).Should(Equal(attempts))
	n, written := counted()
	t.Logf("%d refused lists counted in %d records", n, written)
	g.Expect(written).To(BeNumerically("<=", 30))

	g.Expect(testenv.Records(t, log, ns, audit.ActionIssued)).To(HaveLen(keys), "an Issued record was lost")
	g.Expect(testenv.Records(t, log, ns, audit.ActionViewed)).To(HaveLen(keys), "a Viewed record was lost")
	g.Eventually(func() []audit.Record { return testenv.Records(t, log, ns, audit.ActionDeleted) }, within).ShouldNot(BeEmpty())
}

// TestImpersonatorsAreRecorded: a read by impersonation names both the
// impersonated user and the impersonator, and impersonating the manager's
// own identity is recorded too.
func TestImpersonatorsAreRecorded(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	ctx := context.Background()
	log := testenv.OpenLog(t)
	startManager(t, log, nil)
	ns := newNamespace(t)
	key := issue(t, ns, "impersonated", userIn(ns, "bob"))
	self, err := auditserver.Self(ctx, env.Client)
	g.Expect(err).NotTo(HaveOccurred())
	_, rootConfig := authenticatedAs(t, userIn(ns, "root"), "system:masters")

	read := func(user string, groups ...string) {
		cfg := rest.CopyConfig(rootConfig)
		cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: groups}
		c, err := client.New(cfg, client.Options{Scheme: scheme})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(c.Get(ctx, client.ObjectKey{Namespace: ns, Name: key.SecretNameOrDefault()}, &corev1.Secret{})).To(Succeed())
	}
	read(userIn(ns, "bob"), holders)
	read(self, "system:masters")
	g.Eventually(func() []audit.Record { return testenv.Records(t, log, ns, audit.ActionViewed) }, within).Should(HaveLen(2))
	byActor := map[string]audit.Record{}
	for _, r := range testenv.Records(t, log, ns, audit.ActionViewed) {
		byActor[r.Actor.Username] = r
	}
	for _, actor := range []string{userIn(ns, "bob"), self} {
		r, ok := byActor[actor]
		g.Expect(ok).To(BeTrue(), "no record of the read as %s", actor)
		g.Expect(r.Impersonator).NotTo(BeNil())
		g.Expect(r.Impersonator.Username).To(Equal(userIn(ns, "root")))
	}
}

// TestAWatchLongerThanTheTombstonesIsRecorded: a watch that received a
// key's Secret, then its deletion, and ended 11 minutes later (by the
// resolver's clock), past TombstoneTTL, is still a view of that key.
func TestAWatchLongerThanTheTombstonesIsRecorded(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	ctx := context.Background()
	log := testenv.OpenLog(t)
	// Deletions are stamped by this clock, and must not look older than
	// the watch, which the API server stamps by its own.
	clk := clocktesting.NewFakeClock(time.Now().Add(time.Hour))
	startManager(t, log, nil, func(s *auditserver.Server) { s.Clock = clk })
	ns := newNamespace(t)
	alice := userIn(ns, "alice")
	key := issue(t, ns, "watched", alice)
	other := issue(t, ns, "other", userIn(ns, "bob"))

	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: alice, Groups: []string{"system:authenticated", holders}}
	watcher, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	g.Expect(err).NotTo(HaveOccurred())
	w, err := watcher.Watch(ctx, &corev1.SecretList{}, client.InNamespace(ns), client.MatchingFields{"metadata.name": key.SecretNameOrDefault()})
	g.Expect(err).NotTo(HaveOccurred())
	defer w.Stop()
	g.Eventually(w.ResultChan()).Should(Receive(), "the watch returns the key's Secret")
	// A read after the watch began: once it is on record, so is the
	// watch's start, which the API server batched no later.
	g.Expect(watcher.Get(ctx, client.ObjectKey{Namespace: ns, Name: other.SecretNameOrDefault()}, &corev1.Secret{})).To(Succeed())
	g.Eventually(func() []audit.Record { return testenv.Records(t, log, ns, audit.ActionViewed) }, within).ShouldNot(BeEmpty())

	g.Expect(env.Client.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: key.SecretNameOrDefault()}})).To(Succeed())
	g.Eventually(w.ResultChan()).Should(Receive(), "the watch returns the deletion")
	clk.Step(11 * time.Minute)
	// Another deletion makes the resolver sweep its tombstones.
	g.Expect(env.Client.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: other.SecretNameOrDefault()}})).To(Succeed())
	clk.Step(2 * time.Minute)
	g.Expect(env.Client.Delete(ctx, other)).To(Succeed())
	g.Eventually(func() []audit.Record { return testenv.Records(t, log, ns, audit.ActionDeleted) }, within).ShouldNot(BeEmpty())

	w.Stop()
	g.Eventually(func(g Gomega) {
		var watched []string
		for _, r := range testenv.Records(t, log, ns, audit.ActionViewed) {
			if r.Actor.Username == alice && r.Name == key.Name {
				watched = append(watched, r.KeyID)
			}
		}
		g.Expect(watched).To(ContainElement(key.Status.KeyID), "the watch is not on record as a view of the deleted key")
	}, within).Should(Succeed())
}
