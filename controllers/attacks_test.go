package controllers_test

import (
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/audit"
	"github.com/keymint/keymint/internal/testenv"
)

// The attacks of issue 20 on the controller, each against the real API
// server: a Secret taking a key's Secret's name, a revoked key revived
// by replaying its Secret, a key deleted with no record, and APIKeys in
// keymint's own namespace.

// recordsOf reads the trail's records about the APIKey ns/name.
func recordsOf(g Gomega, trail *audit.File, ns, name string, action audit.Action) []audit.Record {
	var out []audit.Record
	g.Expect(trail.Each(audit.Filter{Namespace: ns, Name: name, Action: action},
		func(r audit.Record) error { out = append(out, r); return nil })).To(Succeed())
	return out
}

// TestAConflictGivesTheOwnerNothing: a key's user reads no Secret
// directly, her key's included (keys are seen through keymint's API), so
// when someone else's Secret takes the name of her key's Secret she cannot
// read it either: the attack of issue 20 that borrowed a Secret through the
// owner grant of earlier versions has nothing left to borrow.
func TestAConflictGivesTheOwnerNothing(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	stop := startManager(t, managerOptions{})
	ns := newRestrictedNamespace(t)
	r1 := userIn(ns, "r1")
	bind(t, ns, "r1-keys", "keymint-user", userSubject(r1))
	asR1 := clientAs(t, r1)
	key := newKey(ns, "race1", r1, never())
	key.Spec.SecretName = "victim1"
	g.Expect(asR1.Create(ctx, key)).To(Succeed())
	waitForPhase(t, key, keymintv1alpha1.PhaseActive)
	victim := client.ObjectKey{Namespace: ns, Name: "victim1"}
	g.Expect(apierrors.IsForbidden(asR1.Get(ctx, victim, &corev1.Secret{}))).To(BeTrue(), "the owner reads her key's Secret directly")

	// Whoever owns the name takes it back while the manager restarts.
	stop()
	g.Expect(k8sClient.Delete(ctx, secretOf(g, key))).To(Succeed())
	g.Expect(k8sClient.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "victim1"},
		StringData: map[string]string{"pw": "VICTIM-1"}})).To(Succeed())
	startManager(t, managerOptions{})

	g.Eventually(func(g Gomega) {
		g.Expect(getKey(g, key).Status.ReadyReason()).To(Equal(keymintv1alpha1.ReasonSecretConflict))
	}).Should(Succeed())
	expectNoOwnerAccess(g, key)
	err := asR1.Get(ctx, victim, &corev1.Secret{})
	g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "r1 reads the Secret that took her key's name: %v", err)
}

// TestNoAPIKeyInKeymintsNamespace: the namespace that holds the signing key
// and the slots takes no APIKey, whoever asks.
func TestNoAPIKeyInKeymintsNamespace(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	user := "squatter@" + slotNamespace
	bind(t, slotNamespace, "squatter-keys", "keymint-user", userSubject(user))
	for who, c := range map[string]client.Client{"a keymint-user": clientAs(t, user), "a cluster administrator": k8sClient} {
		err := c.Create(ctx, newKey(slotNamespace, "squat", user, never()))
		g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "%s created an APIKey in %s: %v", who, slotNamespace, err)
		g.Expect(err.Error()).To(ContainSubstring("namespace keymint-system is keymint's own"))
	}
}

// TestReplayedSecretStaysRevoked keeps a copy of a key's Secret, lets the
// key move on (reissued, or suspended and granted again), and puts the copy
// back while the manager is down: keymint refuses it, records why, and
// mints a new key. The old key never comes back.
func TestReplayedSecretStaysRevoked(t *testing.T) {
	testenv.RequireControlPlane(t)
	for _, tc := range []struct {
		name string
		// moveOn revokes the copied key; backOn lets the key be issued again.
		moveOn, backOn func(t *testing.T, g Gomega, key *keymintv1alpha1.APIKey, grant *rbacv1.RoleBinding)
		revision       int64
	}{{
		name: "reissued after its Secret was deleted",
		moveOn: func(t *testing.T, g Gomega, key *keymintv1alpha1.APIKey, _ *rbacv1.RoleBinding) {
			first := getKey(g, key)
			g.Expect(k8sClient.Delete(ctx, secretOf(g, key))).To(Succeed())
			g.Eventually(func(g Gomega) {
				got := getKey(g, key)
				g.Expect(got.Status.Phase).To(Equal(keymintv1alpha1.PhaseActive))
				g.Expect(got.Status.KeyID).NotTo(Equal(first.Status.KeyID))
				g.Expect(got.Status.Revision).To(Equal(int64(2)))
			}).Should(Succeed())
		},
		revision: 3,
	}, {
		name: "suspended, then granted access again",
		moveOn: func(t *testing.T, g Gomega, key *keymintv1alpha1.APIKey, grant *rbacv1.RoleBinding) {
			g.Expect(k8sClient.Delete(ctx, grant)).To(Succeed())
			waitForPhase(t, key, keymintv1alpha1.PhaseSuspended)
		},
		backOn: func(t *testing.T, g Gomega, key *keymintv1alpha1.APIKey, grant *rbacv1.RoleBinding) {
			bind(t, key.Namespace, grant.Name, "keymint-user", userSubject(key.Spec.User))
		},
		revision: 2,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			trail := openTrail(t)
			opts := managerOptions{audit: trail}
			stop := startManager(t, opts)
			ns := newRestrictedNamespace(t)
			user := userIn(ns, "alice")
			grant := bind(t, ns, "alice-keys", "keymint-user", userSubject(user))
			key := newKey(ns, "kept", user, never())
			g.Expect(k8sClient.Create(ctx, key)).To(Succeed())
			first := waitForPhase(t, key, keymintv1alpha1.PhaseActive)
			g.Expect(first.Status.Revision).To(Equal(int64(1)))
			kept := secretOf(g, key)
			revoked := map[string]bool{first.Status.KeyHash: true}

			tc.moveOn(t, g, key, grant)
			moved := getKey(g, key)
			revoked[moved.Status.KeyHash] = true
			stop()
			if moved.Status.Phase == keymintv1alpha1.PhaseActive {
				g.Expect(k8sClient.Delete(ctx, secretOf(g, key))).To(Succeed())
			}
			replay := &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: kept.Name, Labels: kept.Labels, Annotations: kept.Annotations,
					OwnerReferences: kept.OwnerReferences},
				Type: kept.Type, Immutable: kept.Immutable, Data: kept.Data,
			}
			g.Eventually(func() error { return k8sClient.Create(ctx, replay.DeepCopy()) }).Should(Succeed())
			startManager(t, opts)
			if tc.backOn != nil {
				tc.backOn(t, g, key, grant)
			}

			g.Eventually(func(g Gomega) {
				got := getKey(g, key)
				g.Expect(got.Status.Phase).To(Equal(keymintv1alpha1.PhaseActive))
				g.Expect(got.Status.Revision).To(Equal(tc.revision))
				g.Expect(revoked[got.Status.KeyHash]).To(BeFalse(), "a revoked key came back")
				g.Expect(secretOf(g, key).Annotations[keymintv1alpha1.AnnotationKeyHash]).To(Equal(got.Status.KeyHash))
			}).Should(Succeed())
			records := recordsOf(g, trail, ns, key.Name, audit.ActionUntrustedSecret)
			g.Expect(records).To(HaveLen(1))
			g.Expect(records[0].Message).To(ContainSubstring("holds key " + first.Status.KeyID + " of revision 1, which this APIKey has moved past"))
		})
	}
}

// TestDeletionIsRecordedOnEveryPath: an ordinary user can neither take
// keymint's finalizer off her key nor hold it with one of her own; an
// administrator who force-deletes a key (finalizer removed) leaves a
// Deleted record all the same, with the manager up or down.
func TestDeletionIsRecordedOnEveryPath(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	trail := openTrail(t)
	opts := managerOptions{audit: trail}
	stop := startManager(t, opts)
	ns := newRestrictedNamespace(t)
	alice, carol := userIn(ns, "alice"), userIn(ns, "carol")
	bind(t, ns, "alice-keys", "keymint-user", userSubject(alice))
	bind(t, ns, "carol-admin", "keymint-admin", userSubject(carol))
	asAlice, asCarol := clientAs(t, alice), clientAs(t, carol)

	// Applied server-side, twice, as a GitOps tool does: the finalizer the
	// policy added is not the user's to drop, and the second apply passes.
	apply := func(as client.Client, user, name string) *keymintv1alpha1.APIKey {
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": keymintv1alpha1.GroupVersion.String(), "kind": "APIKey",
			"metadata": map[string]any{"namespace": ns, "name": name},
			"spec":     map[string]any{"user": user, "expiration": map[string]any{"never": true}},
		}}
		for range 2 {
			g.Expect(as.Apply(ctx, client.ApplyConfigurationFromUnstructured(u.DeepCopy()), client.FieldOwner("gitops"), client.ForceOwnership)).To(Succeed())
		}
		return waitForPhase(t, newKey(ns, name, user, never()), keymintv1alpha1.PhaseActive)
	}
	first, second := apply(asAlice, alice, "first"), apply(asAlice, alice, "second")
	dave := userIn(ns, "dave")
	bind(t, ns, "dave-keys", "keymint-user", userSubject(dave))
	held := apply(clientAs(t, dave), dave, "held")

	setFinalizers := func(list string) error {
		patch := []byte(`{"metadata":{"finalizers":` + list + `}}`)
		return asAlice.Patch(ctx, first.DeepCopy(), client.RawPatch("application/merge-patch+json", patch))
	}
	err := setFinalizers(`null`)
	g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "the owner removed keymint's finalizer: %v", err)
	g.Expect(err.Error()).To(ContainSubstring("metadata.finalizers: keymint.io/revoke is removed by keymint"))
	err = setFinalizers(`["keymint.io/revoke","evil/hold"]`)
	g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "the owner added a finalizer: %v", err)
	g.Expect(err.Error()).To(ContainSubstring("metadata.finalizers: only keymint.io/revoke may be added"))

	expectDeleted := func(key *keymintv1alpha1.APIKey) {
		g.Eventually(func(g Gomega) {
			records := recordsOf(g, trail, ns, key.Name, audit.ActionDeleted)
			g.Expect(records).To(HaveLen(1))
			g.Expect(records[0].KeyID).To(Equal(key.Status.KeyID))
			g.Expect(records[0].UID).To(Equal(string(key.UID)))
			g.Expect(records[0].User).To(Equal(alice))
			g.Expect(records[0].Message).To(HaveSuffix("revoked: APIKey deleted without keymint's finalizer"))
			err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: key.SecretNameOrDefault()}, &corev1.Secret{})
			g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "the Secret is gone")
		}).Should(Succeed())
	}
	deleteWithoutFinalizer(g, asCarol, first)
	expectDeleted(first)

	// While the manager is down: the record comes from the signed Secret.
	stop()
	deleteWithoutFinalizer(g, asCarol, second)
	// The restarted manager finds the Secret of an APIKey that is gone.
	startManager(t, opts)
	expectDeleted(second)
	for _, r := range append(recordsOf(g, trail, ns, "first", ""), recordsOf(g, trail, ns, "second", "")...) {
		g.Expect(strings.Contains(r.Message, "evil")).To(BeFalse())
	}

	// Held by an administrator's finalizer: revoked and recorded once,
	// however often it changes while it is held.
	hold := client.RawPatch("application/merge-patch+json", []byte(`{"metadata":{"finalizers":["keymint.io/revoke","example.com/hold"]}}`))
	g.Expect(asCarol.Patch(ctx, held.DeepCopy(), hold)).To(Succeed())
	release := client.RawPatch("application/merge-patch+json", []byte(`{"metadata":{"finalizers":null}}`))
	// Released whatever happens: a key held forever would be finalized
	// again by every later test's manager.
	t.Cleanup(func() { _ = asCarol.Patch(ctx, held.DeepCopy(), release) })
	g.Expect(asCarol.Delete(ctx, held.DeepCopy())).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(getKey(g, held).Finalizers).To(Equal([]string{"example.com/hold"}))
	}).Should(Succeed())
	for range 3 {
		pokeAndAwait(g, held)
	}
	g.Expect(recordsOf(g, trail, ns, "held", audit.ActionDeleted)).To(HaveLen(1))
	deletedEvents := 0
	for _, e := range eventsOf(g, ns, "held") {
		if e.Reason == keymintv1alpha1.ReasonDeleted {
			deletedEvents++
			g.Expect(e.Series).To(BeNil(), "the Deleted Event repeated while held")
		}
	}
	g.Expect(deletedEvents).To(Equal(1), "a Deleted Event for every change while held")
}
