package controllers_test

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/testenv"
)

// TestExpiryAt lets a key reach its spec.expiration.at on the real clock:
// its Secret lives until then and is gone about a second after, and its
// slot goes to the key that waited for it.
func TestExpiryAt(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	startManager(t, managerOptions{maxKeys: 1})
	ns := newNamespace(t)
	expiresAt := time.Now().Add(4 * time.Second).Truncate(time.Second)
	short := newKey(ns, "short-lived", userIn(ns, "ivan"), at(expiresAt))
	g.Expect(k8sClient.Create(ctx, short)).To(Succeed())
	active := waitForPhase(t, short, keymintv1alpha1.PhaseActive)
	g.Expect(active.Status.ExpiresAt.Time).To(BeTemporally("==", expiresAt))
	g.Expect(string(secretOf(g, short).Data["expires-at"])).To(Equal(expiresAt.UTC().Format(time.RFC3339)))

	next := newKey(ns, "next", userIn(ns, "ivan"), never())
	g.Expect(k8sClient.Create(ctx, next)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(getKey(g, next).Status.ReadyReason()).To(Equal(keymintv1alpha1.ReasonKeyLimitReached))
	}).Should(Succeed())

	// Gone within about a second after expiresAt, never before (the
	// fake-clock tests and TestDecide pin the exact instant; this is the
	// real clock's smoke test).
	g.Eventually(func(g Gomega) {
		err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "short-lived"}, &corev1.Secret{})
		g.Expect(apierrors.IsNotFound(err)).To(BeTrue())
	}).WithTimeout(time.Until(expiresAt) + 1500*time.Millisecond).WithPolling(50 * time.Millisecond).Should(Succeed())
	g.Expect(time.Now()).To(BeTemporally(">=", expiresAt), "the Secret went before its expiry")

	expired := waitForPhase(t, short, keymintv1alpha1.PhaseExpired)
	ready := expired.Status.Ready()
	g.Expect(ready.Status).To(Equal(metav1.ConditionFalse))
	g.Expect(ready.Reason).To(Equal(keymintv1alpha1.ReasonExpired))
	g.Expect(kstatusOf(g, expired)).To(Equal(status.FailedStatus), "an expired key needs a person: remove or replace it")
	g.Eventually(func(g Gomega) {
		e := eventWith(g, ns, "short-lived", keymintv1alpha1.ReasonExpired)
		g.Expect(e).NotTo(BeNil())
		g.Expect(e.Note).To(Equal("key " + active.Status.KeyID + " of user " + userIn(ns, "ivan") + " expired at " + expiresAt.UTC().Format(time.RFC3339)))
	}).Should(Succeed())

	// The freed slot goes to the waiting key; the expired one stays as a record.
	waitForPhase(t, next, keymintv1alpha1.PhaseActive)
	pokeAndAwait(g, short)
	g.Expect(getKey(g, short).Status.Phase).To(Equal(keymintv1alpha1.PhaseExpired))
	g.Expect(userSlotCount(g, userIn(ns, "ivan"))).To(Equal(1))
}

// TestExpiryMonthsWithInjectedClock issues a key on a fake clock. One
// second before its calendar-month expiry it is still alive: its Secret,
// deleted, is reissued with the first expiry. Then the clock passes the
// expiry while no manager runs: the next manager expires it as it starts.
func TestExpiryMonthsWithInjectedClock(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	clk := clocktesting.NewFakeClock(time.Date(2028, 1, 31, 10, 0, 0, 0, time.UTC))
	stop := startManager(t, managerOptions{clock: clk})
	ns := newNamespace(t)
	key := newKey(ns, "leap", userIn(ns, "judy"), months(1))
	g.Expect(k8sClient.Create(ctx, key)).To(Succeed())
	active := waitForPhase(t, key, keymintv1alpha1.PhaseActive)
	wantExpiry := time.Date(2028, 2, 29, 10, 0, 0, 0, time.UTC)
	g.Expect(active.Status.ExpiresAt.Time).To(BeTemporally("==", wantExpiry))

	clk.SetTime(wantExpiry.Add(-time.Second))
	g.Expect(k8sClient.Delete(ctx, secretOf(g, key))).To(Succeed())
	g.Eventually(func(g Gomega) {
		again := getKey(g, key)
		g.Expect(again.Status.Phase).To(Equal(keymintv1alpha1.PhaseActive))
		g.Expect(again.Status.KeyID).NotTo(Equal(active.Status.KeyID), "a second before its expiry, the key is reissued")
		g.Expect(again.Status.ExpiresAt.Time).To(BeTemporally("==", wantExpiry), "a reissue keeps the first expiry")
		secretOf(g, key)
	}).Should(Succeed())

	stop()
	clk.SetTime(wantExpiry.Add(72 * time.Hour))
	startManager(t, managerOptions{clock: clk})
	expired := waitForPhase(t, key, keymintv1alpha1.PhaseExpired)
	g.Expect(expired.Status.ExpiresAt.Time).To(BeTemporally("==", wantExpiry))
	err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "leap"}, &corev1.Secret{})
	g.Expect(apierrors.IsNotFound(err)).To(BeTrue())
	g.Expect(userSlotCount(g, userIn(ns, "judy"))).To(BeZero())
}

// TestKeyWaitingPastItsAtExpiresUnissued: a key whose at passes while it
// waits for a slot is never issued.
func TestKeyWaitingPastItsAtExpiresUnissued(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	clk := clocktesting.NewFakeClock(time.Now())
	startManager(t, managerOptions{maxKeys: 1, clock: clk})
	ns := newNamespace(t)
	g.Expect(k8sClient.Create(ctx, newKey(ns, "holder", userIn(ns, "kim"), never()))).To(Succeed())
	waitForPhase(t, newKey(ns, "holder", userIn(ns, "kim"), never()), keymintv1alpha1.PhaseActive)
	waitsUntil := time.Now().Add(time.Hour).Truncate(time.Second)
	waiting := newKey(ns, "waiting", userIn(ns, "kim"), at(waitsUntil))
	g.Expect(k8sClient.Create(ctx, waiting)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(getKey(g, waiting).Status.ReadyReason()).To(Equal(keymintv1alpha1.ReasonKeyLimitReached))
	}).Should(Succeed())
	clk.SetTime(waitsUntil)
	pokeAndAwait(g, waiting)
	expired := waitForPhase(t, waiting, keymintv1alpha1.PhaseExpired)
	g.Expect(expired.Status.KeyID).To(BeEmpty())
	err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "waiting"}, &corev1.Secret{})
	g.Expect(apierrors.IsNotFound(err)).To(BeTrue())
}
