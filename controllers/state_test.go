package controllers_test

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/audit"
	"github.com/keymint/keymint/internal/testenv"
)

// TestInactiveKeys: the owner switches her key off and an administrator,
// who cannot read it, switches it on and off again. An Inactive key keeps
// its Secret (the same key), its slot and its expiry; kstatus calls it
// Current; each switch is recorded with the actor the API server
// authenticated and the reason, which a user cannot forge.
func TestInactiveKeys(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	trail := openTrail(t)
	clk := clocktesting.NewFakeClock(time.Now())
	startManager(t, managerOptions{audit: trail, clock: clk})
	ns := newRestrictedNamespace(t)
	alice, carol := userIn(ns, "alice"), userIn(ns, "carol")
	bind(t, ns, "alice-keys", "keymint-user", userSubject(alice))
	bind(t, ns, "carol-admin", "keymint-admin", userSubject(carol))
	asAlice, asCarol := clientAs(t, alice), clientAs(t, carol)

	expiresAt := clk.Now().Add(time.Hour).Truncate(time.Second)
	key := newKey(ns, "switched", alice, at(expiresAt))
	g.Expect(asAlice.Create(ctx, key)).To(Succeed())
	active := waitForPhase(t, key, keymintv1alpha1.PhaseActive)
	g.Expect(active.Spec.StateChangedBy).To(Equal(alice), "the creator set the state")
	secret := secretOf(g, key)

	switchTo := func(as client.Client, state keymintv1alpha1.KeyState, reason string) {
		t.Helper()
		patch := []byte(`{"spec":{"state":"` + string(state) + `","stateReason":"` + reason + `"}}`)
		g.Expect(as.Patch(ctx, key.DeepCopy(), client.RawPatch(types.MergePatchType, patch))).To(Succeed())
	}
	expectSwitched := func(phase keymintv1alpha1.Phase, action audit.Action, actor, reason string, n int) *keymintv1alpha1.APIKey {
		t.Helper()
		got := waitForPhase(t, key, phase)
		g.Expect(got.Status.KeyID).To(Equal(active.Status.KeyID), "the same key, not a new one")
		g.Expect(got.Spec.StateChangedBy).To(Equal(actor))
		g.Expect(kstatusOf(g, got)).To(Equal(status.CurrentStatus))
		g.Expect(secretOf(g, key).Data).To(Equal(secret.Data), "the Secret keeps the key")
		g.Eventually(func(g Gomega) {
			records := recordsOf(g, trail, ns, key.Name, action)
			g.Expect(records).To(HaveLen(n))
			last := records[n-1]
			g.Expect(last.Actor.Username).To(Equal(actor))
			g.Expect(last.KeyID).To(Equal(active.Status.KeyID))
			g.Expect(last.Message).To(HaveSuffix(" by " + actor + ": " + reason))
			e := eventWith(g, ns, key.Name, string(action))
			g.Expect(e).NotTo(BeNil())
		}).Should(Succeed())
		return got
	}

	// The owner switches it off.
	switchTo(asAlice, keymintv1alpha1.StateInactive, "is anyone using it?")
	inactive := expectSwitched(keymintv1alpha1.PhaseInactive, audit.ActionDeactivated, alice, "is anyone using it?", 1)
	ready := inactive.Status.Ready()
	g.Expect(ready.Reason).To(Equal(keymintv1alpha1.ReasonInactive))
	g.Expect(ready.Message).To(ContainSubstring("(set by " + alice + "): is anyone using it?"))

	// The administrator cannot read the key, but switches it on and off.
	err := asCarol.Get(ctx, client.ObjectKeyFromObject(secret), &corev1.Secret{})
	g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "an administrator read a key: %v", err)
	switchTo(asCarol, keymintv1alpha1.StateActive, "")
	g.Eventually(func(g Gomega) {
		records := recordsOf(g, trail, ns, key.Name, audit.ActionReactivated)
		g.Expect(records).To(HaveLen(1))
		g.Expect(records[0].Actor.Username).To(Equal(carol))
	}).Should(Succeed())
	g.Expect(waitForPhase(t, key, keymintv1alpha1.PhaseActive).Status.KeyID).To(Equal(active.Status.KeyID))
	switchTo(asCarol, keymintv1alpha1.StateInactive, "leaked in ticket 42")
	expectSwitched(keymintv1alpha1.PhaseInactive, audit.ActionDeactivated, carol, "leaked in ticket 42", 2)

	// Nobody writes another actor: the policy keeps the one that set the
	// state.
	forged := client.RawPatch(types.MergePatchType, []byte(`{"spec":{"stateChangedBy":"mallory"}}`))
	if err := asAlice.Patch(ctx, key.DeepCopy(), forged); err == nil {
		g.Expect(getKey(g, key).Spec.StateChangedBy).To(Equal(carol))
	}

	// The Inactive key holds a slot: with a second key, a third waits.
	second := newKey(ns, "second", alice, never())
	g.Expect(asAlice.Create(ctx, second)).To(Succeed())
	waitForPhase(t, second, keymintv1alpha1.PhaseActive)
	third := newKey(ns, "third", alice, never())
	g.Expect(asAlice.Create(ctx, third)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(getKey(g, third).Status.ReadyReason()).To(Equal(keymintv1alpha1.ReasonKeyLimitReached))
	}).Should(Succeed())

	// It expires on time, Inactive or not: not a second before.
	clk.SetTime(expiresAt.Add(-time.Second))
	pokeAndAwait(g, key)
	g.Expect(getKey(g, key).Status.Phase).To(Equal(keymintv1alpha1.PhaseInactive))
	clk.SetTime(expiresAt)
	pokeAndAwait(g, key)
	expired := waitForPhase(t, key, keymintv1alpha1.PhaseExpired)
	g.Expect(expired.Status.ExpiresAt.Time).To(BeTemporally("==", expiresAt))
	err = k8sClient.Get(ctx, client.ObjectKeyFromObject(secret), &corev1.Secret{})
	g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "the Secret of an expired key is gone")
	waitForPhase(t, third, keymintv1alpha1.PhaseActive)
}
