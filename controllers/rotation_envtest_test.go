package controllers_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/audit"
	"github.com/keymint/keymint/internal/slots"
	"github.com/keymint/keymint/internal/testenv"
)

// TestABlockedRenewalGoesFirstAndAKillLeavesOneSuccessor, on a stepped
// clock: a renewal due while the user's two slots are held is blocked
// (RotationBlocked, a Warning Event naming the holders); when a slot frees
// it renews ahead of a key waiting for its first issue. The manager
// "stops" after writing the successor into the Secret and before the
// status: the retry finishes that renewal (revision 2, one Renewed
// record), never a third credential. At no watch event does the user hold
// more than two slots.
func TestABlockedRenewalGoesFirstAndAKillLeavesOneSuccessor(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	clk := clocktesting.NewFakeClock(time.Now().Truncate(time.Second))
	trail := &testenv.Trail{}
	var mu sync.Mutex
	secretWritten, killed := false, false
	funcs := interceptor.Funcs{
		Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			err := c.Update(ctx, obj, opts...)
			if _, ok := obj.(*corev1.Secret); ok && err == nil {
				mu.Lock()
				secretWritten = true
				mu.Unlock()
			}
			return err
		},
		SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
			mu.Lock()
			kill := secretWritten && !killed && obj.GetName() == "renewing"
			killed = killed || kill
			mu.Unlock()
			if kill {
				return errors.New("injected: the manager stopped after the Secret, before the status")
			}
			return c.SubResource(sub).Patch(ctx, obj, patch, opts...)
		},
	}
	startManager(t, managerOptions{clock: clk, intercept: &funcs, audit: trail})
	ns := newNamespace(t)
	user := userIn(ns, "rosa")
	maxSlots := watchSlots(t, user)

	key := newKey(ns, "renewing", user, months(3))
	key.Spec.Rotation = &keymintv1alpha1.Rotation{RenewBefore: &metav1.Duration{Duration: 336 * time.Hour}}
	g.Expect(k8sClient.Create(ctx, key)).To(Succeed())
	first := waitForPhase(t, key, keymintv1alpha1.PhaseActive)
	holder := newKey(ns, "holder", user, never())
	g.Expect(k8sClient.Create(ctx, holder)).To(Succeed())
	waitForPhase(t, holder, keymintv1alpha1.PhaseActive)
	newcomer := newKey(ns, "newcomer", user, never())
	g.Expect(k8sClient.Create(ctx, newcomer)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(getKey(g, newcomer).Status.ReadyReason()).To(Equal(keymintv1alpha1.ReasonKeyLimitReached))
	}).Should(Succeed())

	clk.SetTime(first.Status.RenewalTime.Time)
	pokeAndAwait(g, key)
	g.Eventually(func(g Gomega) {
		got := getKey(g, key)
		c := apimeta.FindStatusCondition(got.Status.Conditions, keymintv1alpha1.ConditionRotationBlocked)
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Reason).To(Equal(keymintv1alpha1.ReasonKeyLimitReached))
		g.Expect(c.Message).To(ContainSubstring(ns + "/holder"))
		g.Expect(got.Status.Ready().Status).To(Equal(metav1.ConditionTrue), "a blocked renewal leaves the key Ready")
		g.Expect(kstatusOf(g, got).String()).To(Equal("Current"))
		e := eventWith(g, ns, "renewing", keymintv1alpha1.ReasonRotationBlocked)
		g.Expect(e).NotTo(BeNil())
		g.Expect(e.Type).To(Equal(corev1.EventTypeWarning))
	}).Should(Succeed())

	// The freed slot goes to the renewal, not to the key that waited.
	g.Expect(k8sClient.Delete(ctx, holder)).To(Succeed())
	renewed := &keymintv1alpha1.APIKey{}
	g.Eventually(func(g Gomega) {
		renewed = getKey(g, key)
		g.Expect(renewed.Status.Revision).To(Equal(int64(2)))
		g.Expect(renewed.Status.PreviousKey).NotTo(BeNil())
	}).Should(Succeed())
	mu.Lock()
	g.Expect(killed).To(BeTrue(), "the injected stop between the Secret and the status did not happen")
	mu.Unlock()
	g.Expect(apimeta.FindStatusCondition(renewed.Status.Conditions, keymintv1alpha1.ConditionRotationBlocked)).To(BeNil())
	g.Expect(secretOf(g, key).Annotations[keymintv1alpha1.AnnotationRevision]).To(Equal("2"), "the retry adopted the successor it wrote")
	g.Expect(secretOf(g, key).Data[keymintv1alpha1.DataKeyID]).To(BeEquivalentTo(renewed.Status.KeyID))
	pokeAndAwait(g, newcomer)
	g.Expect(getKey(g, newcomer).Status.Phase).To(Equal(keymintv1alpha1.PhasePending))
	ids := map[string]bool{}
	for _, r := range trail.Of(audit.Action(keymintv1alpha1.ReasonRenewed), "renewing") {
		ids[r.ID] = true
	}
	g.Expect(ids).To(HaveLen(1), "one renewal, one record")

	// The previous key retires at its expiry; its slot goes to the newcomer.
	clk.SetTime(renewed.Status.PreviousKey.ExpiresAt.Time)
	pokeAndAwait(g, key)
	waitForPhase(t, newcomer, keymintv1alpha1.PhaseActive)
	g.Expect(getKey(g, key).Status.PreviousKey).To(BeNil())
	g.Expect(maxSlots()).To(BeNumerically("<=", 2), "the user held more than two slots at some watch event")
}

// watchSlots watches user's slot Leases until the test ends; the function
// it returns tells the most it saw at once.
func watchSlots(t *testing.T, user string) func() int {
	t.Helper()
	wc, err := client.NewWithWatch(restConfig, client.Options{Scheme: testScheme})
	if err != nil {
		t.Fatal(err)
	}
	w, err := wc.Watch(ctx, &coordinationv1.LeaseList{}, client.InNamespace(slotNamespace),
		client.MatchingLabels{slots.LabelUserHash: slots.UserHash(user)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	most := 0
	held := map[string]bool{}
	var mu sync.Mutex
	go func() {
		for e := range w.ResultChan() {
			l, ok := e.Object.(*coordinationv1.Lease)
			if !ok {
				continue
			}
			mu.Lock()
			if e.Type == watch.Deleted {
				delete(held, l.Name)
			} else {
				held[l.Name] = true
			}
			most = max(most, len(held))
			mu.Unlock()
		}
	}()
	return func() int {
		mu.Lock()
		defer mu.Unlock()
		return most
	}
}

// TestRotationAddedLaterReplacesTheImmutableSecret, on a stepped clock: a
// key issued without spec.rotation has an immutable Secret; given
// spec.rotation later, its first renewal replaces that Secret with a
// mutable one of the same name (a new UID), and the next renewal updates
// the mutable one in place.
func TestRotationAddedLaterReplacesTheImmutableSecret(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	clk := clocktesting.NewFakeClock(time.Now().Truncate(time.Second))
	startManager(t, managerOptions{clock: clk})
	ns := newNamespace(t)
	key := newKey(ns, "later", userIn(ns, "lena"), months(3))
	g.Expect(k8sClient.Create(ctx, key)).To(Succeed())
	waitForPhase(t, key, keymintv1alpha1.PhaseActive)
	immutable := secretOf(g, key)
	g.Expect(immutable.Immutable).To(HaveValue(BeTrue()))

	g.Expect(k8sClient.Patch(ctx, key.DeepCopy(), client.RawPatch(types.MergePatchType, []byte(`{"spec":{"rotation":{}}}`)))).To(Succeed())
	var due time.Time
	g.Eventually(func(g Gomega) {
		got := getKey(g, key)
		g.Expect(got.Status.RenewalTime).NotTo(BeNil())
		due = got.Status.RenewalTime.Time
	}).Should(Succeed())

	// The workqueue waits by the real clock: a poke calls the key in after
	// the step. Not at every poll: a poke each 50 ms would conflict with
	// every status write of a pass slower than that.
	renewAt := func(at time.Time, revision int64) *corev1.Secret {
		clk.SetTime(at)
		var poked time.Time
		g.Eventually(func(g Gomega) {
			if time.Since(poked) > time.Second {
				poke(g, key)
				poked = time.Now()
			}
			g.Expect(getKey(g, key).Status.Revision).To(Equal(revision))
		}).Should(Succeed())
		return secretOf(g, key)
	}
	mutable := renewAt(due, 2)
	g.Expect(mutable.UID).NotTo(Equal(immutable.UID), "an immutable Secret cannot be updated: it is replaced")
	g.Expect(mutable.Immutable).To(HaveValue(BeFalse()), "the replacement is mutable, so the kubelet refreshes it")
	again := renewAt(getKey(g, key).Status.RenewalTime.Time, 3)
	g.Expect(again.UID).To(Equal(mutable.UID), "the next renewal updates the mutable Secret in place")
}
