package controllers_test

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/audit"
	"github.com/keymint/keymint/internal/expiry"
	"github.com/keymint/keymint/internal/keys"
	"github.com/keymint/keymint/internal/keysecret"
	"github.com/keymint/keymint/internal/testenv"
)

// planter is a client of a user who may only create Secrets in ns (and,
// like everyone with the built-in view role, read APIKeys).
func planter(t *testing.T, ns string) client.Client {
	t.Helper()
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "secret-creator"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"create"}}},
	}
	if err := k8sClient.Create(ctx, role); err != nil {
		t.Fatal(err)
	}
	mallory := userIn(ns, "mallory")
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "secret-creator"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
		Subjects:   []rbacv1.Subject{userSubject(mallory)},
	}
	if err := k8sClient.Create(ctx, rb); err != nil {
		t.Fatal(err)
	}
	bind(t, ns, "mallory-views", "keymint-viewer", userSubject(mallory))
	return clientAs(t, mallory)
}

// plant creates, as the planter, a Secret for key that looks minted in
// every way anyone can write: type, labels, a controller reference with the
// APIKey's UID, a key of the planter's choosing with its hash, an issue in
// the past and no expiry. It returns the planted key's hash.
func plant(g Gomega, as client.Client, key *keymintv1alpha1.APIKey) string {
	live := getKey(g, key)
	k, err := keys.Mint()
	g.Expect(err).NotTo(HaveOccurred())
	s := keysecret.Build(live, k, keysecret.Issue{Revision: live.Status.Revision + 1, IssuedAt: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)})
	s.Annotations[keysecret.AnnotationSignature] = "forged"
	g.Eventually(func() error { return as.Create(ctx, s.DeepCopy()) }).Should(Succeed())
	return keys.Hash(k.Value)
}

// TestPlantedSecretIsNeverAdopted plants a forged Secret while a key has
// none, in every state where that happens, and then lets the key be issued:
// keymint deletes the planted Secret, mints its own key and says so.
func TestPlantedSecretIsNeverAdopted(t *testing.T) {
	testenv.RequireControlPlane(t)
	type scene struct {
		ns     string
		user   string
		key    *keymintv1alpha1.APIKey
		grant  *rbacv1.RoleBinding
		stop   func()
		opts   managerOptions
		reissu bool
	}
	grantUser := func(t *testing.T, s *scene) {
		s.grant = bind(t, s.ns, "user-keys", "keymint-user", userSubject(s.user))
	}
	for _, tc := range []struct {
		name string
		// before brings the key to the state in which the Secret is planted;
		// after lets it be issued.
		before, after func(t *testing.T, g Gomega, s *scene)
	}{{
		name: "waiting for a slot",
		before: func(t *testing.T, g Gomega, s *scene) {
			grantUser(t, s)
			first := newKey(s.ns, "first", s.user, never())
			g.Expect(k8sClient.Create(ctx, first)).To(Succeed())
			waitForPhase(t, first, keymintv1alpha1.PhaseActive)
			g.Expect(k8sClient.Create(ctx, s.key)).To(Succeed())
			g.Eventually(func(g Gomega) {
				g.Expect(getKey(g, s.key).Status.ReadyReason()).To(Equal(keymintv1alpha1.ReasonKeyLimitReached))
			}).Should(Succeed())
		},
		after: func(t *testing.T, g Gomega, s *scene) {
			g.Expect(k8sClient.Delete(ctx, newKey(s.ns, "first", s.user, never()))).To(Succeed())
		},
	}, {
		name: "blocked by someone else's Secret",
		before: func(t *testing.T, g Gomega, s *scene) {
			grantUser(t, s)
			theirs := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: s.ns, Name: s.key.Name}, StringData: map[string]string{"x": "y"}}
			g.Expect(k8sClient.Create(ctx, theirs)).To(Succeed())
			g.Expect(k8sClient.Create(ctx, s.key)).To(Succeed())
			g.Eventually(func(g Gomega) {
				g.Expect(getKey(g, s.key).Status.ReadyReason()).To(Equal(keymintv1alpha1.ReasonSecretConflict))
			}).Should(Succeed())
			// The slot the conflict freed calls the key in once more, which
			// would issue it before the plant if the manager ran on.
			s.stop()
			g.Expect(k8sClient.Delete(ctx, theirs)).To(Succeed())
		},
		after: func(t *testing.T, g Gomega, s *scene) { s.stop = startManager(t, s.opts) },
	}, {
		name: "access denied",
		before: func(t *testing.T, g Gomega, s *scene) {
			g.Expect(k8sClient.Create(ctx, s.key)).To(Succeed())
			g.Eventually(func(g Gomega) {
				g.Expect(getKey(g, s.key).Status.ReadyReason()).To(Equal(keymintv1alpha1.ReasonAccessDenied))
			}).Should(Succeed())
		},
		after: func(t *testing.T, g Gomega, s *scene) { grantUser(t, s) },
	}, {
		name: "suspended",
		before: func(t *testing.T, g Gomega, s *scene) {
			grantUser(t, s)
			g.Expect(k8sClient.Create(ctx, s.key)).To(Succeed())
			waitForPhase(t, s.key, keymintv1alpha1.PhaseActive)
			g.Expect(k8sClient.Delete(ctx, s.grant)).To(Succeed())
			waitForPhase(t, s.key, keymintv1alpha1.PhaseSuspended)
			s.reissu = true
		},
		after: func(t *testing.T, g Gomega, s *scene) { grantUser(t, s) },
	}, {
		name: "Secret deleted while the manager is down",
		before: func(t *testing.T, g Gomega, s *scene) {
			grantUser(t, s)
			g.Expect(k8sClient.Create(ctx, s.key)).To(Succeed())
			waitForPhase(t, s.key, keymintv1alpha1.PhaseActive)
			s.stop()
			g.Expect(k8sClient.Delete(ctx, secretOf(g, s.key))).To(Succeed())
			s.reissu = true
		},
		after: func(t *testing.T, g Gomega, s *scene) { s.stop = startManager(t, s.opts) },
	}} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			trail := openTrail(t)
			s := &scene{ns: newRestrictedNamespace(t), opts: managerOptions{maxKeys: 1, audit: trail}}
			s.user = userIn(s.ns, "bob")
			s.key = newKey(s.ns, "bob-later", s.user, months(1))
			s.stop = startManager(t, s.opts)
			as := planter(t, s.ns)

			tc.before(t, g, s)
			before := getKey(g, s.key)
			plantedHash := plant(g, as, s.key)
			tc.after(t, g, s)

			var got *keymintv1alpha1.APIKey
			g.Eventually(func(g Gomega) {
				got = getKey(g, s.key)
				g.Expect(got.Status.Phase).To(Equal(keymintv1alpha1.PhaseActive))
				g.Expect(got.Status.KeyID).NotTo(Equal(before.Status.KeyID))
				g.Expect(got.Status.KeyHash).To(Equal(keys.Hash(keyValue(secretOf(g, s.key)))), "the Secret holds the status's key")
			}).Should(Succeed())
			g.Expect(got.Status.KeyHash).NotTo(Equal(plantedHash), "the planted key became the APIKey's key")
			g.Expect(got.Status.IssuedAt.Year()).NotTo(Equal(2020), "the planted issue time reached the status")
			g.Expect(got.Status.ExpiresAt).NotTo(BeNil(), "the planted expiry (never) reached the status")
			g.Expect(got.Status.ExpiresAt.Time).To(BeTemporally("==", expiry.AddMonths(got.Status.IssuedAt.Time, 1)))
			if s.reissu {
				g.Expect(got.Status.ExpiresAt.Time).To(BeTemporally("==", before.Status.ExpiresAt.Time), "a reissue keeps the expiry")
			}
			want := "Secret " + s.ns + "/bob-later claimed this APIKey but keymint did not mint it; it was deleted and its key is not this APIKey's"
			g.Eventually(func(g Gomega) {
				e := eventWith(g, s.ns, s.key.Name, keymintv1alpha1.ReasonUntrustedSecret)
				g.Expect(e).NotTo(BeNil())
				g.Expect(e.Type).To(Equal(corev1.EventTypeWarning))
				g.Expect(e.Note).To(Equal(want))
			}).Should(Succeed())
			records := recordsOf(g, trail, s.ns, s.key.Name, audit.ActionUntrustedSecret)
			g.Expect(records).To(HaveLen(1))
			g.Expect(records[0].Message).To(Equal(want))
		})
	}
}
