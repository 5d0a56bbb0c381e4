package controllers_test

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/slots"
	"github.com/keymint/keymint/internal/testenv"
)

// TestDeletedSlotsAreNoticed: someone with rights in the slot namespace
// deletes a user's two slot Leases. The Active keys claim them again within
// seconds, keep their keys, and the user's waiting key stays waiting: the
// user never holds more than two keys.
func TestDeletedSlotsAreNoticed(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	startManager(t, managerOptions{})
	ns := newNamespace(t)
	observed := observeCap(t, ns)
	user := userIn(ns, "ivan")
	var active []*keymintv1alpha1.APIKey
	for _, name := range []string{"k1", "k2"} {
		k := newKey(ns, name, user, never())
		g.Expect(k8sClient.Create(ctx, k)).To(Succeed())
		active = append(active, waitForPhase(t, k, keymintv1alpha1.PhaseActive))
	}
	waiting := newKey(ns, "k3", user, never())
	g.Expect(k8sClient.Create(ctx, waiting)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(getKey(g, waiting).Status.ReadyReason()).To(Equal(keymintv1alpha1.ReasonKeyLimitReached))
	}).Should(Succeed())

	leases := &coordinationv1.LeaseList{}
	g.Expect(k8sClient.List(ctx, leases, client.InNamespace(slotNamespace), client.MatchingLabels{slots.LabelUserHash: slots.UserHash(user)})).To(Succeed())
	g.Expect(leases.Items).To(HaveLen(2))
	deleted := time.Now()
	for i := range leases.Items {
		g.Expect(k8sClient.Delete(ctx, &leases.Items[i])).To(Succeed())
	}
	g.Eventually(func(g Gomega) {
		now := &coordinationv1.LeaseList{}
		g.Expect(k8sClient.List(ctx, now, client.InNamespace(slotNamespace), client.MatchingLabels{slots.LabelUserHash: slots.UserHash(user)})).To(Succeed())
		g.Expect(now.Items).To(HaveLen(2))
		for _, l := range now.Items {
			g.Expect(l.Labels[slots.LabelHolderName]).To(BeElementOf("k1", "k2"), "the Active keys hold the slots again")
		}
	}).WithTimeout(5 * time.Second).Should(Succeed())
	t.Logf("slots claimed again %s after their deletion", time.Since(deleted).Round(10*time.Millisecond))
	for _, k := range active {
		got := getKey(g, k)
		g.Expect(got.Status.Phase).To(Equal(keymintv1alpha1.PhaseActive))
		g.Expect(got.Status.KeyID).To(Equal(k.Status.KeyID), "%s keeps its key", k.Name)
	}
	g.Expect(getKey(g, waiting).Status.Phase).To(Equal(keymintv1alpha1.PhasePending))
	maxActive, maxSecrets := observed.maxima()
	g.Expect(maxActive).To(Equal(2), "never more than two Active keys")
	g.Expect(maxSecrets).To(Equal(2), "never more than two Secrets")
}

// TestSecretOfAForceDeletedKeyIsDeleted: a user removes their APIKey's
// finalizer and deletes it; keymint deletes the Secret it leaves, with its
// live key, within seconds, without waiting for garbage collection, and
// frees the slot.
func TestSecretOfAForceDeletedKeyIsDeleted(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	stop := startManager(t, managerOptions{})
	ns := newNamespace(t)
	user := userIn(ns, "judy")
	secretGone := func(g Gomega, k *keymintv1alpha1.APIKey) {
		err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: k.Name}, &corev1.Secret{})
		g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "the Secret of %s is still there", k.Name)
	}

	seen := newKey(ns, "seen", user, never())
	g.Expect(k8sClient.Create(ctx, seen)).To(Succeed())
	waitForPhase(t, seen, keymintv1alpha1.PhaseActive)
	deleteWithoutFinalizer(g, k8sClient, seen)
	g.Eventually(func(g Gomega) {
		secretGone(g, seen)
		g.Expect(userSlotCount(g, user)).To(BeZero())
	}).WithTimeout(5 * time.Second).Should(Succeed())

	// Deleted while the manager was down: found when it starts again.
	unseen := newKey(ns, "unseen", user, never())
	g.Expect(k8sClient.Create(ctx, unseen)).To(Succeed())
	waitForPhase(t, unseen, keymintv1alpha1.PhaseActive)
	stop()
	deleteWithoutFinalizer(g, k8sClient, unseen)
	startManager(t, managerOptions{})
	g.Eventually(func(g Gomega) {
		secretGone(g, unseen)
		g.Expect(userSlotCount(g, user)).To(BeZero())
	}).WithTimeout(10 * time.Second).Should(Succeed())
}
