package controllers_test

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/controllers"
	"github.com/keymint/keymint/internal/testenv"
)

// mayGetSecret asks the API server's RBAC whether user may get Secret
// name in ns.
func mayGetSecret(g Gomega, user, ns, name string) bool {
	review := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User:               user,
		Groups:             []string{"system:authenticated"},
		ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: ns, Verb: "get", Resource: "secrets", Name: name},
	}}
	g.Expect(k8sClient.Create(ctx, review)).To(Succeed())
	return review.Status.Allowed
}

// expectNoOwnerAccess: the Role and RoleBinding of key's owner are gone,
// and the owner may no longer read the Secret.
func expectNoOwnerAccess(g Gomega, key *keymintv1alpha1.APIKey) {
	g.Eventually(func(g Gomega) {
		name := client.ObjectKey{Namespace: key.Namespace, Name: controllers.OwnerAccessName(key.Name)}
		g.Expect(apierrors.IsNotFound(k8sClient.Get(ctx, name, &rbacv1.Role{}))).To(BeTrue(), "the Role is gone")
		g.Expect(apierrors.IsNotFound(k8sClient.Get(ctx, name, &rbacv1.RoleBinding{}))).To(BeTrue(), "the RoleBinding is gone")
		g.Expect(mayGetSecret(g, key.Spec.User, key.Namespace, key.SecretNameOrDefault())).To(BeFalse())
	}).Should(Succeed())
}

// TestOwnerReadsOnlyTheirKey: a user holding only keymint-user reads the
// Secret of their Active key, and nobody else's; others in the namespace,
// keymint-user or keymint-admin, get 403 on it. The grant is there when the
// key is reported Active and goes when it is deleted, expires or is
// suspended.
func TestOwnerReadsOnlyTheirKey(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	clk := clocktesting.NewFakeClock(time.Now())
	startManager(t, managerOptions{clock: clk})
	ns := newRestrictedNamespace(t)
	alice, bob, carol := userIn(ns, "alice"), userIn(ns, "bob"), userIn(ns, "carol")
	bind(t, ns, "alice-keys", "keymint-user", userSubject(alice))
	grant := bind(t, ns, "bob-keys", "keymint-user", userSubject(bob))
	bind(t, ns, "admins", "keymint-admin", userSubject(carol))
	asAlice, asBob, asCarol := clientAs(t, alice), clientAs(t, bob), clientAs(t, carol)

	key := newKey(ns, "alice-key", alice, months(1))
	g.Expect(asAlice.Create(ctx, key)).To(Succeed())
	bobs := newKey(ns, "bob-key", bob, never())
	g.Expect(asBob.Create(ctx, bobs)).To(Succeed())
	active := waitForPhase(t, key, keymintv1alpha1.PhaseActive)
	waitForPhase(t, bobs, keymintv1alpha1.PhaseActive)

	// Read as soon as it is Active, as `create --wait` then `reveal` does.
	secret := &corev1.Secret{}
	g.Expect(asAlice.Get(ctx, client.ObjectKey{Namespace: ns, Name: key.SecretNameOrDefault()}, secret)).To(Succeed())
	g.Expect(secret.Data["key-id"]).To(BeEquivalentTo(active.Status.KeyID))
	for who, c := range map[string]client.Client{"bob": asBob, "carol": asCarol} {
		err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: key.SecretNameOrDefault()}, &corev1.Secret{})
		g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "%s reads alice's key: %v", who, err)
	}
	err := asAlice.Get(ctx, client.ObjectKey{Namespace: ns, Name: bobs.SecretNameOrDefault()}, &corev1.Secret{})
	g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "alice reads bob's key: %v", err)
	err = asAlice.List(ctx, &corev1.SecretList{}, client.InNamespace(ns))
	g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "alice lists Secrets: %v", err)
	binding := &rbacv1.RoleBinding{}
	g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: controllers.OwnerAccessName(key.Name)}, binding)).To(Succeed())
	g.Expect(binding.Subjects).To(Equal([]rbacv1.Subject{userSubject(alice)}), "no other subject")

	// Expiry takes the grant away.
	clk.Step(32 * 24 * time.Hour)
	poke(g, key) // the workqueue waits by the real clock
	waitForPhase(t, key, keymintv1alpha1.PhaseExpired)
	expectNoOwnerAccess(g, key)

	// So do deletion and suspension.
	again := newKey(ns, "alice-again", alice, never())
	g.Expect(asAlice.Create(ctx, again)).To(Succeed())
	waitForPhase(t, again, keymintv1alpha1.PhaseActive)
	g.Expect(mayGetSecret(g, alice, ns, again.SecretNameOrDefault())).To(BeTrue())
	g.Expect(asAlice.Delete(ctx, again)).To(Succeed())
	expectNoOwnerAccess(g, again)

	g.Expect(mayGetSecret(g, bob, ns, bobs.SecretNameOrDefault())).To(BeTrue())
	g.Expect(k8sClient.Delete(ctx, grant)).To(Succeed())
	waitForPhase(t, bobs, keymintv1alpha1.PhaseSuspended)
	expectNoOwnerAccess(g, bobs)
}

// TestSomeoneElsesRoleIsNeverBound: a Role named like the owner's grant
// that the APIKey does not control (it could grant anything) is neither
// changed nor bound; the key waits and says why.
func TestSomeoneElsesRoleIsNeverBound(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	startManager(t, managerOptions{})
	ns := newNamespace(t)
	key := newKey(ns, "squatted", userIn(ns, "dave"), never())
	theirs := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: controllers.OwnerAccessName(key.Name)},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "list"}}},
	}
	g.Expect(k8sClient.Create(ctx, theirs)).To(Succeed())
	g.Expect(k8sClient.Create(ctx, key)).To(Succeed())
	g.Eventually(func(g Gomega) {
		got := getKey(g, key)
		g.Expect(got.Status.Phase).NotTo(Equal(keymintv1alpha1.PhaseActive))
		g.Expect(apimeta.FindStatusCondition(got.Status.Conditions, keymintv1alpha1.ConditionReconciling)).NotTo(BeNil())
		g.Expect(apimeta.FindStatusCondition(got.Status.Conditions, keymintv1alpha1.ConditionReconciling).Message).To(ContainSubstring(
			"Role " + ns + "/" + controllers.OwnerAccessName(key.Name) + " exists and is not this APIKey's"))
	}).Should(Succeed())
	err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: controllers.OwnerAccessName(key.Name)}, &rbacv1.RoleBinding{})
	g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "their Role was bound")
	kept := &rbacv1.Role{}
	g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(theirs), kept)).To(Succeed())
	g.Expect(kept.Rules).To(Equal(theirs.Rules), "their Role was changed")
}
