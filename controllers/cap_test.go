package controllers_test

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/controllers"
	"github.com/keymint/keymint/internal/slots"
	"github.com/keymint/keymint/internal/testenv"
)

// capObserver watches a namespace's APIKeys and minted Secrets and keeps the
// largest number of Active keys and of Secrets it ever saw at once.
type capObserver struct {
	mu                    sync.Mutex
	active                map[string]bool
	secrets               map[string]bool
	maxActive, maxSecrets int
}

func observeCap(t *testing.T, ns string) *capObserver {
	o := &capObserver{active: map[string]bool{}, secrets: map[string]bool{}}
	keysWatch, err := k8sClient.Watch(ctx, &keymintv1alpha1.APIKeyList{}, client.InNamespace(ns))
	if err != nil {
		t.Fatal(err)
	}
	secretsWatch, err := k8sClient.Watch(ctx, &corev1.SecretList{}, client.InNamespace(ns),
		client.MatchingLabels{keymintv1alpha1.LabelManagedBy: keymintv1alpha1.ManagedBy})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(keysWatch.Stop)
	t.Cleanup(secretsWatch.Stop)
	go func() {
		for ev := range keysWatch.ResultChan() {
			if k, ok := ev.Object.(*keymintv1alpha1.APIKey); ok {
				o.mu.Lock()
				o.active[k.Name] = ev.Type != watch.Deleted && k.Status.Phase == keymintv1alpha1.PhaseActive
				o.maxActive = max(o.maxActive, count(o.active))
				o.mu.Unlock()
			}
		}
	}()
	go func() {
		for ev := range secretsWatch.ResultChan() {
			if s, ok := ev.Object.(*corev1.Secret); ok {
				o.mu.Lock()
				o.secrets[s.Name] = ev.Type != watch.Deleted
				o.maxSecrets = max(o.maxSecrets, count(o.secrets))
				o.mu.Unlock()
			}
		}
	}()
	return o
}

func count(m map[string]bool) int {
	n := 0
	for _, v := range m {
		if v {
			n++
		}
	}
	return n
}

func (o *capObserver) maxima() (int, int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.maxActive, o.maxSecrets
}

// TestCapHoldsUnderConcurrentCreates creates 10 keys for one user at once,
// reconciled by two managers at once (each with its own cache and four
// workers), and shows that at no observed moment more than two are Active
// or have a Secret; then deletes keys and shows the oldest waiting key
// takes each freed slot.
func TestCapHoldsUnderConcurrentCreates(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	startManager(t, managerOptions{})
	startManager(t, managerOptions{})
	ns := newNamespace(t)
	obs := observeCap(t, ns)

	var wg sync.WaitGroup
	for i := range 10 {
		wg.Go(func() {
			g.Expect(k8sClient.Create(ctx, newKey(ns, fmt.Sprintf("key-%d", i), userIn(ns, "mallory"), never()))).To(Succeed())
		})
	}
	wg.Wait()

	list := &keymintv1alpha1.APIKeyList{}
	g.Eventually(func(g Gomega) {
		g.Expect(k8sClient.List(ctx, list, client.InNamespace(ns))).To(Succeed())
		byPhase := phases(list)
		g.Expect(byPhase[keymintv1alpha1.PhaseActive]).To(HaveLen(2))
		g.Expect(byPhase[keymintv1alpha1.PhasePending]).To(HaveLen(8))
		for _, k := range list.Items {
			if k.Status.Phase != keymintv1alpha1.PhasePending {
				continue
			}
			ready := k.Status.Ready()
			g.Expect(ready.Reason).To(Equal(keymintv1alpha1.ReasonKeyLimitReached))
			for _, holder := range byPhase[keymintv1alpha1.PhaseActive] {
				g.Expect(ready.Message).To(ContainSubstring(ns + "/" + holder))
			}
			g.Expect(kstatusOf(g, &k)).To(Equal(status.InProgressStatus))
		}
	}).WithTimeout(30 * time.Second).Should(Succeed())
	g.Eventually(func(g Gomega) {
		e := eventWith(g, ns, phases(list)[keymintv1alpha1.PhasePending][0], keymintv1alpha1.ReasonKeyLimitReached)
		g.Expect(e).NotTo(BeNil())
		g.Expect(e.Type).To(Equal(corev1.EventTypeWarning))
	}).Should(Succeed())
	g.Expect(userSlotCount(g, userIn(ns, "mallory"))).To(Equal(2))

	// Release: each deleted Active key hands its slot to the oldest waiting one.
	for range 3 {
		g.Expect(k8sClient.List(ctx, list, client.InNamespace(ns))).To(Succeed())
		byPhase := phases(list)
		next := oldestWaiting(list)
		g.Expect(k8sClient.Delete(ctx, &keymintv1alpha1.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: byPhase[keymintv1alpha1.PhaseActive][0]}})).To(Succeed())
		waitForPhase(t, newKey(ns, next, "", never()), keymintv1alpha1.PhaseActive)
	}
	// A waiting key looked at again still waits: the cap is full.
	g.Expect(k8sClient.List(ctx, list, client.InNamespace(ns))).To(Succeed())
	pokeAndAwait(g, newKey(ns, oldestWaiting(list), "", never()))
	g.Expect(k8sClient.List(ctx, list, client.InNamespace(ns))).To(Succeed())
	g.Expect(phases(list)[keymintv1alpha1.PhaseActive]).To(HaveLen(2))
	g.Expect(phases(list)[keymintv1alpha1.PhasePending]).To(HaveLen(5))

	maxActive, maxSecrets := obs.maxima()
	g.Expect(maxActive).To(Equal(2), "Active keys at the most at one observed moment")
	g.Expect(maxSecrets).To(Equal(2), "minted Secrets at the most at one observed moment")
}

// phases groups the names of listed keys by phase.
func phases(list *keymintv1alpha1.APIKeyList) map[keymintv1alpha1.Phase][]string {
	out := map[keymintv1alpha1.Phase][]string{}
	for _, k := range list.Items {
		out[k.Status.Phase] = append(out[k.Status.Phase], k.Name)
	}
	return out
}

// oldestWaiting is the name of the Pending key that is next in line.
func oldestWaiting(list *keymintv1alpha1.APIKeyList) string {
	var waiting []slots.Candidate
	for i := range list.Items {
		if list.Items[i].Status.Phase == keymintv1alpha1.PhasePending && list.Items[i].DeletionTimestamp.IsZero() {
			waiting = append(waiting, controllers.Candidate(&list.Items[i]))
		}
	}
	return slots.Sorted(waiting)[0].Key.Name
}

// TestCapCountsAcrossNamespaces: the cap is per user, not per namespace.
func TestCapCountsAcrossNamespaces(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	startManager(t, managerOptions{})
	nsA, nsB, nsC := newNamespace(t), newNamespace(t), newNamespace(t)
	niaj := userIn(nsA, "niaj")
	a := newKey(nsA, "a", niaj, never())
	g.Expect(k8sClient.Create(ctx, a)).To(Succeed())
	waitForPhase(t, a, keymintv1alpha1.PhaseActive)
	b := newKey(nsB, "b", niaj, never())
	g.Expect(k8sClient.Create(ctx, b)).To(Succeed())
	waitForPhase(t, b, keymintv1alpha1.PhaseActive)
	c := newKey(nsC, "c", niaj, never())
	g.Expect(k8sClient.Create(ctx, c)).To(Succeed())
	g.Eventually(func(g Gomega) {
		got := getKey(g, c)
		g.Expect(got.Status.ReadyReason()).To(Equal(keymintv1alpha1.ReasonKeyLimitReached))
		g.Expect(got.Status.Ready().Message).To(
			Equal(fmt.Sprintf("user %s already holds 2 active keys (%s); this key is issued when one of them is deleted or expires", niaj,
				strings.Join(slices.Sorted(slices.Values([]string{nsA + "/a", nsB + "/b"})), ", "))))
	}).Should(Succeed())
	// Another user is not affected.
	other := newKey(nsC, "other", userIn(nsC, "olivia"), never())
	g.Expect(k8sClient.Create(ctx, other)).To(Succeed())
	waitForPhase(t, other, keymintv1alpha1.PhaseActive)
}

// TestStaleSlotIsReclaimed: an APIKey force-deleted (finalizer removed by
// hand) while no manager runs leaves its slot Lease behind; the next key of
// the user finds the holder gone and takes the slot.
func TestStaleSlotIsReclaimed(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	stop := startManager(t, managerOptions{maxKeys: 1})
	ns := newNamespace(t)
	user := userIn(ns, "peggy")
	gone := newKey(ns, "force-deleted", user, never())
	g.Expect(k8sClient.Create(ctx, gone)).To(Succeed())
	waitForPhase(t, gone, keymintv1alpha1.PhaseActive)
	stop()

	g.Expect(k8sClient.Delete(ctx, gone)).To(Succeed())
	latest := getKey(g, gone)
	latest.Finalizers = nil
	g.Expect(k8sClient.Update(ctx, latest)).To(Succeed())
	g.Expect(userSlotCount(g, user)).To(Equal(1), "the slot outlived its APIKey")

	startManager(t, managerOptions{maxKeys: 1})
	next := newKey(ns, "next", user, never())
	g.Expect(k8sClient.Create(ctx, next)).To(Succeed())
	waitForPhase(t, next, keymintv1alpha1.PhaseActive)
	g.Expect(userSlotCount(g, user)).To(Equal(1))
}
