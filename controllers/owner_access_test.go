package controllers_test

import (
	"testing"

	. "github.com/onsi/gomega"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

// expectNoOwnerAccess: no Role or RoleBinding grants key's owner its
// Secret, and the owner may not read it.
func expectNoOwnerAccess(g Gomega, key *keymintv1alpha1.APIKey) {
	g.Eventually(func(g Gomega) {
		name := client.ObjectKey{Namespace: key.Namespace, Name: controllers.OwnerAccessName(key.Name)}
		g.Expect(apierrors.IsNotFound(k8sClient.Get(ctx, name, &rbacv1.Role{}))).To(BeTrue(), "an owner Role exists")
		g.Expect(apierrors.IsNotFound(k8sClient.Get(ctx, name, &rbacv1.RoleBinding{}))).To(BeTrue(), "an owner RoleBinding exists")
		g.Expect(mayGetSecret(g, key.Spec.User, key.Namespace, key.SecretNameOrDefault())).To(BeFalse())
	}).Should(Succeed())
}

// TestNobodyReadsAKeysSecretDirectly: a user holding keymint-user, with an
// Active key, gets 403 reading its Secret, as do the others of the
// namespace: people see keys through keymint's API, which records it.
func TestNobodyReadsAKeysSecretDirectly(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	startManager(t, managerOptions{})
	ns := newRestrictedNamespace(t)
	alice, carol := userIn(ns, "alice"), userIn(ns, "carol")
	bind(t, ns, "alice-keys", "keymint-user", userSubject(alice))
	bind(t, ns, "admins", "keymint-admin", userSubject(carol))
	key := newKey(ns, "alice-key", alice, never())
	g.Expect(clientAs(t, alice).Create(ctx, key)).To(Succeed())
	waitForPhase(t, key, keymintv1alpha1.PhaseActive)
	for _, as := range []client.Client{clientAs(t, alice), clientAs(t, carol)} {
		err := as.Get(ctx, client.ObjectKey{Namespace: ns, Name: key.Name}, &corev1.Secret{})
		g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "a direct read of the Secret: %v", err)
	}
	expectNoOwnerAccess(g, key)
}

// TestGrantsOfEarlierVersionsAreRemoved: the Role and RoleBinding an
// earlier version granted a key's owner are deleted when a manager of this
// version leads; an object of that name the APIKey does not control stays.
func TestGrantsOfEarlierVersionsAreRemoved(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	ns := newRestrictedNamespace(t)
	alice := userIn(ns, "alice")
	key := newKey(ns, "old-key", alice, never())
	g.Expect(k8sClient.Create(ctx, key)).To(Succeed())
	other := newKey(ns, "other-key", alice, never())
	g.Expect(k8sClient.Create(ctx, other)).To(Succeed())
	meta := func(k *keymintv1alpha1.APIKey, controlled bool) metav1.ObjectMeta {
		m := metav1.ObjectMeta{Namespace: ns, Name: controllers.OwnerAccessName(k.Name),
			Labels: map[string]string{keymintv1alpha1.LabelManagedBy: keymintv1alpha1.ManagedBy, keymintv1alpha1.LabelAPIKey: k.Name}}
		if controlled {
			m.OwnerReferences = []metav1.OwnerReference{{APIVersion: keymintv1alpha1.GroupVersion.String(), Kind: "APIKey",
				Name: k.Name, UID: k.UID, Controller: new(true)}}
		}
		return m
	}
	rule := rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{key.Name}, Verbs: []string{"get"}}
	g.Expect(k8sClient.Create(ctx, &rbacv1.Role{ObjectMeta: meta(key, true), Rules: []rbacv1.PolicyRule{rule}})).To(Succeed())
	g.Expect(k8sClient.Create(ctx, &rbacv1.RoleBinding{ObjectMeta: meta(key, true),
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: controllers.OwnerAccessName(key.Name)},
		Subjects: []rbacv1.Subject{userSubject(alice)}})).To(Succeed())
	theirs := &rbacv1.Role{ObjectMeta: meta(other, false), Rules: []rbacv1.PolicyRule{rule}}
	g.Expect(k8sClient.Create(ctx, theirs)).To(Succeed())

	startManager(t, managerOptions{})
	expectNoOwnerAccess(g, key)
	g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(theirs), &rbacv1.Role{})).To(Succeed(), "a Role the APIKey does not control was deleted")
}
