package controllers_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/testenv"
)

// clientAs is a client authenticated to the API server as user, in groups.
func clientAs(t *testing.T, user string, groups ...string) client.WithWatch {
	t.Helper()
	u, err := testEnv.AddUser(envtest.User{Name: user, Groups: groups}, restConfig)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.NewWithWatch(u.Config(), client.Options{Scheme: testScheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func userSubject(name string) rbacv1.Subject {
	return rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: name}
}

// TestSelfServiceIsEnforcedByTheAPIServer: a keymint-user acts on its own
// keys only, the requester is recorded as the API server saw it, and a
// delegate holder creates keys for others.
func TestSelfServiceIsEnforcedByTheAPIServer(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	ns := newRestrictedNamespace(t)
	alice, bob, admin := userIn(ns, "alice"), userIn(ns, "bob"), userIn(ns, "admin")
	bind(t, ns, "alice-keys", "keymint-user", userSubject(alice))
	bind(t, ns, "admin-keys", "keymint-admin", userSubject(admin))
	asAlice := clientAs(t, alice, "team-a")
	asAdmin := clientAs(t, admin)

	err := asAlice.Create(ctx, newKey(ns, "for-bob", bob, never()))
	g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "want Forbidden, got %v", err)
	g.Expect(err.Error()).To(ContainSubstring("spec.user is " + bob + ", not you (" + alice + ")"))
	g.Expect(err.Error()).To(ContainSubstring("needs the delegate verb on apikeys"))

	// A requester written by the client is replaced by the real one.
	own := newKey(ns, "alice-own", alice, months(1))
	own.Spec.Requester = &keymintv1alpha1.Requester{Username: bob, Groups: []string{"system:masters"}}
	g.Expect(asAlice.Create(ctx, own)).To(Succeed())
	g.Expect(own.Spec.Requester.Username).To(Equal(alice))
	g.Expect(own.Spec.Requester.Groups).To(ConsistOf("team-a", "system:authenticated"))

	// The record is immutable, even to its owner.
	changed := own.DeepCopy()
	changed.Spec.Requester.Groups = []string{"system:masters"}
	err = asAlice.Patch(ctx, changed, client.MergeFrom(own))
	g.Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want Invalid, got %v", err)
	g.Expect(err.Error()).To(ContainSubstring("requester is immutable"))

	// Alice may not delete bob's key; a delegate holder creates and deletes it.
	forBob := newKey(ns, "for-bob", bob, never())
	g.Expect(asAdmin.Create(ctx, forBob)).To(Succeed())
	g.Expect(forBob.Spec.Requester.Username).To(Equal(admin))
	err = asAlice.Delete(ctx, forBob)
	g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "want Forbidden, got %v", err)
	g.Expect(asAdmin.Delete(ctx, forBob)).To(Succeed())

	// Without any grant, nothing: RBAC refuses before the policy runs.
	err = clientAs(t, userIn(ns, "stranger")).Create(ctx, newKey(ns, "stranger", userIn(ns, "stranger"), never()))
	g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "want Forbidden, got %v", err)
}

// TestANamespaceBeingDeletedTakesItsKeys: the namespace controller, which
// holds no delegate verb, deletes the APIKeys of a namespace being deleted
// (make e2e found namespaces stuck in Terminating before the policy let it);
// before the namespace is deleted, the same identity may not.
func TestANamespaceBeingDeletedTakesItsKeys(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	ns := newRestrictedNamespace(t)
	alice := userIn(ns, "alice")
	bind(t, ns, "alice-keys", "keymint-user", userSubject(alice))
	key := newKey(ns, "alice-key", alice, never())
	g.Expect(clientAs(t, alice).Create(ctx, key)).To(Succeed())
	// Its bootstrap ClusterRole lets it delete everything in a namespace.
	nsController := clientAs(t, "system:serviceaccount:kube-system:namespace-controller")
	err := nsController.Delete(ctx, key)
	g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "want Forbidden, got %v", err)

	g.Expect(k8sClient.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
	g.Eventually(func() error { return nsController.Delete(ctx, key) }).WithTimeout(10 * time.Second).Should(Succeed())
}

// TestAdministratorsNeverReadKeys: an identity bound only to keymint-admin
// lists, reads and deletes every APIKey and sees keyID and keyHash, but
// every read of Secrets is forbidden and nothing it can read holds a key.
func TestAdministratorsNeverReadKeys(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	startManager(t, managerOptions{})
	ns := newRestrictedNamespace(t)
	alice, admin := userIn(ns, "alice"), userIn(ns, "admin")
	bind(t, ns, "alice-keys", "keymint-user", userSubject(alice))
	bind(t, ns, "admin-keys", "keymint-admin", userSubject(admin))
	asAlice, asAdmin := clientAs(t, alice), clientAs(t, admin)

	key := newKey(ns, "alice-key", alice, never())
	g.Expect(asAlice.Create(ctx, key)).To(Succeed())
	active := waitForPhase(t, key, keymintv1alpha1.PhaseActive)
	value := keyValue(secretOf(g, key))

	list := &keymintv1alpha1.APIKeyList{}
	g.Expect(asAdmin.List(ctx, list, client.InNamespace(ns))).To(Succeed())
	g.Expect(list.Items).To(HaveLen(1))
	g.Expect(list.Items[0].Status.KeyID).To(Equal(active.Status.KeyID))
	g.Expect(list.Items[0].Status.KeyHash).To(Equal(active.Status.KeyHash))
	allNamespaces := &keymintv1alpha1.APIKeyList{}
	g.Expect(asAdmin.List(ctx, allNamespaces)).NotTo(Succeed(), "a RoleBinding grants one namespace only")

	err := asAdmin.Get(ctx, client.ObjectKey{Namespace: ns, Name: key.SecretNameOrDefault()}, &corev1.Secret{})
	g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "get Secret: %v", err)
	err = asAdmin.List(ctx, &corev1.SecretList{}, client.InNamespace(ns))
	g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "list Secrets: %v", err)
	_, err = asAdmin.Watch(ctx, &corev1.SecretList{}, client.InNamespace(ns))
	g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "watch Secrets: %v", err)

	// What the administrator can read holds no key. (Events are read with
	// the suite's client: keymint-admin grants nothing on Events.)
	raw, err := json.Marshal(list)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(strings.Contains(string(raw), value)).To(BeFalse(), "the key appears in what an administrator reads")
	expectNoPlaintext(g, key, value)

	g.Expect(asAdmin.Delete(ctx, &list.Items[0])).To(Succeed())
	g.Eventually(func() bool {
		return apierrors.IsNotFound(k8sClient.Get(ctx, client.ObjectKeyFromObject(key), &keymintv1alpha1.APIKey{}))
	}).Should(BeTrue())
}

// TestAccessRemovedSuspendsAndRestoredReissues: removing a user's binding
// suspends every key of the user within 10 seconds; restoring it issues
// fresh keys, and the cap still holds.
func TestAccessRemovedSuspendsAndRestoredReissues(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	startManager(t, managerOptions{})
	ns := newRestrictedNamespace(t)
	alice := userIn(ns, "alice")
	grant := bind(t, ns, "alice-keys", "keymint-user", userSubject(alice))
	asAlice := clientAs(t, alice)

	var keys []*keymintv1alpha1.APIKey
	for _, name := range []string{"k1", "k2", "k3"} {
		k := newKey(ns, name, alice, months(12))
		g.Expect(asAlice.Create(ctx, k)).To(Succeed())
		keys = append(keys, k)
	}
	before := map[string]string{}
	for _, k := range keys[:2] {
		before[k.Name] = waitForPhase(t, k, keymintv1alpha1.PhaseActive).Status.KeyID
	}
	g.Eventually(func(g Gomega) {
		g.Expect(getKey(g, keys[2]).Status.ReadyReason()).To(Equal(keymintv1alpha1.ReasonKeyLimitReached))
	}).Should(Succeed())

	removed := time.Now()
	g.Expect(k8sClient.Delete(ctx, grant)).To(Succeed())
	g.Eventually(func(g Gomega) {
		for _, k := range keys[:2] {
			got := getKey(g, k)
			g.Expect(got.Status.Phase).To(Equal(keymintv1alpha1.PhaseSuspended))
			g.Expect(got.Status.ReadyReason()).To(Equal(keymintv1alpha1.ReasonAccessRemoved))
			g.Expect(kstatusOf(g, got)).To(Equal(status.FailedStatus))
			err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: k.Name}, &corev1.Secret{})
			g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "the Secret of %s is gone", k.Name)
		}
		waiting := getKey(g, keys[2])
		g.Expect(waiting.Status.Phase).To(Equal(keymintv1alpha1.PhasePending))
		g.Expect(waiting.Status.ReadyReason()).To(Equal(keymintv1alpha1.ReasonAccessDenied))
		g.Expect(userSlotCount(g, alice)).To(BeZero(), "suspended keys hold no slot")
	}).WithTimeout(10 * time.Second).Should(Succeed())
	t.Logf("suspended %s after the binding was removed", time.Since(removed).Round(100*time.Millisecond))
	g.Eventually(func(g Gomega) {
		e := eventWith(g, ns, "k1", keymintv1alpha1.ReasonSuspended)
		g.Expect(e).NotTo(BeNil())
		g.Expect(e.Type).To(Equal(corev1.EventTypeWarning))
	}).Should(Succeed())

	bind(t, ns, "alice-keys", "keymint-user", userSubject(alice))
	g.Eventually(func(g Gomega) {
		list := &keymintv1alpha1.APIKeyList{}
		g.Expect(k8sClient.List(ctx, list, client.InNamespace(ns))).To(Succeed())
		byPhase := phases(list)
		g.Expect(byPhase[keymintv1alpha1.PhaseActive]).To(HaveLen(2), "the cap still holds")
		g.Expect(byPhase[keymintv1alpha1.PhasePending]).To(HaveLen(1))
		for _, k := range list.Items {
			if k.Status.Phase == keymintv1alpha1.PhaseActive && before[k.Name] != "" {
				g.Expect(k.Status.KeyID).NotTo(Equal(before[k.Name]), "a fresh key for %s", k.Name)
			}
		}
	}).WithTimeout(10 * time.Second).Should(Succeed())
	g.Expect(userSlotCount(g, alice)).To(Equal(2))
}

// TestUserWithoutUseGetsNoKey: a key for a user without "use" stays
// Pending with reason AccessDenied.
func TestUserWithoutUseGetsNoKey(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	startManager(t, managerOptions{})
	ns := newRestrictedNamespace(t)
	admin := userIn(ns, "admin")
	bind(t, ns, "admin-keys", "keymint-admin", userSubject(admin))
	key := newKey(ns, "for-carol", userIn(ns, "carol"), never())
	g.Expect(clientAs(t, admin).Create(ctx, key)).To(Succeed())
	g.Eventually(func(g Gomega) {
		got := getKey(g, key)
		g.Expect(got.Status.Phase).To(Equal(keymintv1alpha1.PhasePending))
		g.Expect(got.Status.ReadyReason()).To(Equal(keymintv1alpha1.ReasonAccessDenied))
		g.Expect(got.Status.KeyID).To(BeEmpty())
		e := eventWith(g, ns, "for-carol", keymintv1alpha1.ReasonAccessDenied)
		g.Expect(e).NotTo(BeNil())
	}).Should(Succeed())
	err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "for-carol"}, &corev1.Secret{})
	g.Expect(apierrors.IsNotFound(err)).To(BeTrue())
	g.Expect(userSlotCount(g, userIn(ns, "carol"))).To(BeZero())
}

// TestAdminRoleGrantsItsVerbsAndNotUse asks the API server's RBAC what
// keymint-admin grants: every verb that manages APIKeys, delegate included,
// and not use, which holding keys takes.
func TestAdminRoleGrantsItsVerbsAndNotUse(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	ns := newRestrictedNamespace(t)
	admin := userIn(ns, "admin")
	bind(t, ns, "admin-keys", "keymint-admin", userSubject(admin))
	allowed := func(verb string) bool {
		review := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: admin,
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: ns, Verb: verb, Group: keymintv1alpha1.GroupVersion.Group, Resource: "apikeys",
			},
		}}
		g.Expect(k8sClient.Create(ctx, review)).To(Succeed())
		return review.Status.Allowed
	}
	// The API server's authorizer learns of the new binding from its own
	// watch, a moment later under load.
	for _, verb := range []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection", "delegate"} {
		g.Eventually(func() bool { return allowed(verb) }).Should(BeTrue(), "keymint-admin lacks %s", verb)
	}
	for _, verb := range []string{keymintv1alpha1.VerbUse, "escalate", "impersonate"} {
		g.Expect(allowed(verb)).To(BeFalse(), "keymint-admin grants %s", verb)
	}
}

// TestAdministratorsGrantAndRemoveAccess: a user holding only keymint-admin
// grants a user access (a RoleBinding of keymint-user, created as that
// administrator) and removes it, and can bind no other role it does not
// fully hold.
func TestAdministratorsGrantAndRemoveAccess(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	startManager(t, managerOptions{})
	ns := newRestrictedNamespace(t)
	carol, alice := userIn(ns, "carol"), userIn(ns, "alice")
	bind(t, ns, "carol-admin", "keymint-admin", userSubject(carol))
	asCarol := clientAs(t, carol)
	grant := func(name, role string) *rbacv1.RoleBinding {
		return &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
			Subjects:   []rbacv1.Subject{userSubject(alice)},
		}
	}
	access := grant("alice-keys", "keymint-user")
	g.Expect(asCarol.Create(ctx, access)).To(Succeed(), "keymint-admin grants access")
	key := newKey(ns, "alice-key", alice, never())
	g.Expect(clientAs(t, alice).Create(ctx, key)).To(Succeed())
	waitForPhase(t, key, keymintv1alpha1.PhaseActive)
	// (envtest runs no aggregation controller, so edit and admin are
	// empty there: cluster-admin and a Role that reads Secrets stand in.)
	reader := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "secret-reader"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}}}}
	g.Expect(k8sClient.Create(ctx, reader)).To(Succeed())
	readers := grant("alice-reads-secrets", "")
	readers.RoleRef = rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: reader.Name}
	for _, rb := range []*rbacv1.RoleBinding{grant("alice-cluster-admin", "cluster-admin"), readers} {
		err := asCarol.Create(ctx, rb)
		g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "keymint-admin bound %s: %v", rb.RoleRef.Name, err)
	}
	err := asCarol.Get(ctx, client.ObjectKey{Namespace: ns, Name: key.SecretNameOrDefault()}, &corev1.Secret{})
	g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "keymint-admin reads a key: %v", err)
	g.Expect(asCarol.Delete(ctx, access)).To(Succeed(), "keymint-admin removes access")
	waitForPhase(t, key, keymintv1alpha1.PhaseSuspended)
}
