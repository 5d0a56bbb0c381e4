package controllers_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/audit"
	"github.com/keymint/keymint/internal/keys"
	"github.com/keymint/keymint/internal/slots"
	"github.com/keymint/keymint/internal/testenv"
)

var ctx = context.Background()

func TestIssue(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	now := time.Date(2026, 1, 31, 10, 20, 30, 0, time.UTC)
	startManager(t, managerOptions{clock: clocktesting.NewFakeClock(now)})
	ns := newNamespace(t)

	key := newKey(ns, "ci-key", userIn(ns, "alice"), months(1))
	key.Spec.Description = "for the CI pipeline"
	g.Expect(k8sClient.Create(ctx, key)).To(Succeed())
	got := waitForPhase(t, key, keymintv1alpha1.PhaseActive)

	secret := secretOf(g, key)
	value := keyValue(secret)
	g.Expect(keys.Validate(value)).To(Succeed(), "the Secret holds a well-formed key")

	// Status: public identity and times, from the injected clock.
	g.Expect(got.Status.KeyID).To(HavePrefix(keys.IDPrefix))
	g.Expect(got.Status.KeyHash).To(Equal(keys.Hash(value)))
	g.Expect(got.Status.SecretName).To(Equal("ci-key"))
	g.Expect(got.Status.IssuedAt.Time).To(BeTemporally("==", now))
	g.Expect(got.Status.ExpiresAt.Time).To(BeTemporally("==", time.Date(2026, 2, 28, 10, 20, 30, 0, time.UTC)))
	g.Expect(got.Finalizers).To(ContainElement(keymintv1alpha1.Finalizer))
	ready := got.Status.Ready()
	g.Expect(ready.Status).To(Equal(metav1.ConditionTrue))
	g.Expect(kstatusOf(g, got)).To(Equal(status.CurrentStatus))

	// The Secret, exactly as the contract says.
	g.Expect(secret.Type).To(Equal(corev1.SecretType("keymint.io/api-key")))
	g.Expect(secret.Immutable).To(Equal(new(true)))
	g.Expect(secret.Labels).To(HaveKeyWithValue("app.kubernetes.io/managed-by", "keymint"))
	g.Expect(secret.Labels).To(HaveKeyWithValue("keymint.io/apikey", "ci-key"))
	g.Expect(string(secret.Data["key-id"])).To(Equal(got.Status.KeyID))
	g.Expect(string(secret.Data["user"])).To(Equal(userIn(ns, "alice")))
	g.Expect(string(secret.Data["expires-at"])).To(Equal("2026-02-28T10:20:30Z"))
	g.Expect(secret.Data).To(HaveLen(4))
	owner := metav1.GetControllerOf(secret)
	g.Expect(owner).NotTo(BeNil())
	g.Expect(owner.UID).To(Equal(got.UID))
	g.Expect(owner.Kind).To(Equal("APIKey"))

	// One Event, naming key ID, user and expiry.
	g.Eventually(func(g Gomega) {
		e := eventWith(g, ns, "ci-key", keymintv1alpha1.ReasonIssued)
		g.Expect(e).NotTo(BeNil())
		g.Expect(e.Type).To(Equal(corev1.EventTypeNormal))
		g.Expect(e.Note).To(Equal("key " + got.Status.KeyID + " issued for user " + userIn(ns, "alice") + " in Secret ci-key, expires 2026-02-28T10:20:30Z"))
	}).Should(Succeed())
	expectNoPlaintext(g, key, value)

	// Quiet: a further reconcile neither changes the key nor writes status.
	poked := pokeAndAwait(g, key)
	again := getKey(g, key)
	g.Expect(again.ResourceVersion).To(Equal(poked), "the pass after the poke wrote the APIKey")
	g.Expect(again.Status).To(Equal(got.Status))
	g.Expect(secretOf(g, key).UID).To(Equal(secret.UID))
}

func TestNeverExpiringKeyAndCustomSecretName(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	startManager(t, managerOptions{})
	ns := newNamespace(t)
	key := newKey(ns, "forever", userIn(ns, "bob"), never())
	key.Spec.SecretName = "bob-api-key"
	g.Expect(k8sClient.Create(ctx, key)).To(Succeed())
	got := waitForPhase(t, key, keymintv1alpha1.PhaseActive)
	g.Expect(got.Status.ExpiresAt).To(BeNil())
	g.Expect(got.Status.Expires).To(Equal("never"), "the Expires column says never")
	g.Expect(got.Status.SecretName).To(Equal("bob-api-key"))
	secret := secretOf(g, key)
	g.Expect(string(secret.Data["expires-at"])).To(Equal("never"))
	g.Expect(secret.Name).To(Equal("bob-api-key"))
}

func TestInvalidExpirationIssuesNothing(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	startManager(t, managerOptions{})
	ns := newNamespace(t)
	key := newKey(ns, "backdated", userIn(ns, "carol"), at(time.Now().Add(-time.Hour)))
	g.Expect(k8sClient.Create(ctx, key)).To(Succeed())

	g.Eventually(func(g Gomega) {
		got := getKey(g, key)
		ready := got.Status.Ready()
		g.Expect(ready).NotTo(BeNil())
		g.Expect(ready.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(ready.Reason).To(Equal(keymintv1alpha1.ReasonInvalidExpiration))
		g.Expect(ready.Message).To(ContainSubstring("spec.expiration.at"))
		g.Expect(got.Status.Phase).To(Equal(keymintv1alpha1.PhasePending))
		g.Expect(kstatusOf(g, got)).To(Equal(status.FailedStatus))
		e := eventWith(g, ns, "backdated", keymintv1alpha1.ReasonInvalidExpiration)
		g.Expect(e).NotTo(BeNil())
		g.Expect(e.Type).To(Equal(corev1.EventTypeWarning))
	}).Should(Succeed())
	err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "backdated"}, &corev1.Secret{})
	g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "no Secret is minted")
	g.Expect(userSlotCount(g, userIn(ns, "carol"))).To(BeZero(), "no slot is held")
}

func TestSecretConflictLeavesTheSecretAlone(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	startManager(t, managerOptions{})
	ns := newNamespace(t)
	theirs := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "taken"},
		StringData: map[string]string{"password": "hunter2"},
	}
	g.Expect(k8sClient.Create(ctx, theirs)).To(Succeed())
	key := newKey(ns, "wants-taken", userIn(ns, "dave"), never())
	key.Spec.SecretName = "taken"
	g.Expect(k8sClient.Create(ctx, key)).To(Succeed())

	g.Eventually(func(g Gomega) {
		got := getKey(g, key)
		g.Expect(got.Status.ReadyReason()).To(Equal(keymintv1alpha1.ReasonSecretConflict))
		g.Expect(kstatusOf(g, got)).To(Equal(status.FailedStatus))
		g.Expect(got.Status.KeyID).To(BeEmpty())
	}).Should(Succeed())
	pokeAndAwait(g, key)
	g.Expect(userSlotCount(g, userIn(ns, "dave"))).To(BeZero(), "a conflicting key holds no slot")
	after := &corev1.Secret{}
	g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(theirs), after)).To(Succeed())
	g.Expect(after.ResourceVersion).To(Equal(theirs.ResourceVersion), "their Secret is untouched")
	g.Expect(after.OwnerReferences).To(BeEmpty())

	// Deleting the APIKey leaves their Secret too.
	g.Expect(k8sClient.Delete(ctx, key)).To(Succeed())
	g.Eventually(func() bool {
		return apierrors.IsNotFound(k8sClient.Get(ctx, client.ObjectKeyFromObject(key), &keymintv1alpha1.APIKey{}))
	}).Should(BeTrue())
	g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(theirs), after)).To(Succeed())
}

func TestDeleteRevokes(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	trail := openTrail(t)
	startManager(t, managerOptions{audit: trail})
	ns := newNamespace(t)
	key := newKey(ns, "leaked", userIn(ns, "erin"), months(5))
	g.Expect(k8sClient.Create(ctx, key)).To(Succeed())
	got := waitForPhase(t, key, keymintv1alpha1.PhaseActive)
	value := keyValue(secretOf(g, key))
	g.Expect(userSlotCount(g, userIn(ns, "erin"))).To(Equal(1))

	g.Expect(k8sClient.Delete(ctx, key)).To(Succeed())
	g.Eventually(func(g Gomega) {
		err := k8sClient.Get(ctx, client.ObjectKeyFromObject(key), &keymintv1alpha1.APIKey{})
		g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "the APIKey is gone")
		err = k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "leaked"}, &corev1.Secret{})
		g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "the Secret is gone without a garbage collector")
		g.Expect(userSlotCount(g, userIn(ns, "erin"))).To(BeZero(), "the slot is free")
		e := eventWith(g, ns, "leaked", keymintv1alpha1.ReasonDeleted)
		g.Expect(e).NotTo(BeNil())
		g.Expect(e.Note).To(Equal("key " + got.Status.KeyID + " of user " + userIn(ns, "erin") + " revoked: APIKey deleted"))
	}).Should(Succeed())

	// The audit trail holds both, durably, with the key ID and no key.
	var records []audit.Record
	g.Expect(trail.Each(audit.Filter{Namespace: ns, Name: "leaked"}, func(r audit.Record) error {
		records = append(records, r)
		return nil
	})).To(Succeed())
	g.Expect(records).To(HaveLen(2))
	g.Expect(records[0].Action).To(Equal(audit.ActionIssued))
	g.Expect(records[1].Action).To(Equal(audit.ActionDeleted))
	for _, r := range records {
		g.Expect(r.KeyID).To(Equal(got.Status.KeyID))
		g.Expect(r.User).To(Equal(userIn(ns, "erin")))
		g.Expect(r.UID).To(Equal(string(got.UID)))
		g.Expect(r.Actor.Username).To(Equal(audit.UnknownActor))
	}
	raw, err := os.ReadFile(trail.Path)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(strings.Contains(string(raw), value)).To(BeFalse(), "the key appears in the audit log")
}

func TestDeleteNeverHangsWhenTheSecretIsGone(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	stop := startManager(t, managerOptions{})
	ns := newNamespace(t)
	key := newKey(ns, "orphan", userIn(ns, "frank"), never())
	g.Expect(k8sClient.Create(ctx, key)).To(Succeed())
	waitForPhase(t, key, keymintv1alpha1.PhaseActive)
	// With no manager running, the Secret goes and the namespace starts terminating.
	stop()
	g.Expect(k8sClient.Delete(ctx, secretOf(g, key))).To(Succeed())
	g.Expect(k8sClient.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
	// envtest runs no namespace controller; in a cluster it deletes the APIKey.
	g.Expect(k8sClient.Delete(ctx, key)).To(Succeed())
	startManager(t, managerOptions{})
	g.Eventually(func() bool {
		return apierrors.IsNotFound(k8sClient.Get(ctx, client.ObjectKeyFromObject(key), &keymintv1alpha1.APIKey{}))
	}).WithTimeout(20 * time.Second).Should(BeTrue())
	g.Eventually(func(g Gomega) { g.Expect(userSlotCount(g, userIn(ns, "frank"))).To(BeZero()) }).Should(Succeed())
}

func TestSecretDeletedIsReissued(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	clk := clocktesting.NewFakeClock(time.Date(2026, 3, 31, 12, 0, 0, 0, time.UTC))
	startManager(t, managerOptions{clock: clk})
	ns := newNamespace(t)
	key := newKey(ns, "rotated-by-force", userIn(ns, "grace"), months(1))
	g.Expect(k8sClient.Create(ctx, key)).To(Succeed())
	first := waitForPhase(t, key, keymintv1alpha1.PhaseActive)
	firstSecret := secretOf(g, key)

	clk.Step(24 * time.Hour) // a reissue a day later must not extend the key's life
	g.Expect(k8sClient.Delete(ctx, firstSecret)).To(Succeed())

	var second *keymintv1alpha1.APIKey
	g.Eventually(func(g Gomega) {
		second = getKey(g, key)
		g.Expect(second.Status.KeyID).NotTo(Equal(first.Status.KeyID))
		g.Expect(second.Status.Phase).To(Equal(keymintv1alpha1.PhaseActive))
	}).Should(Succeed())
	secondSecret := secretOf(g, key)
	g.Expect(secondSecret.UID).NotTo(Equal(firstSecret.UID))
	g.Expect(keyValue(secondSecret)).NotTo(Equal(keyValue(firstSecret)), "a fresh key is minted")
	g.Expect(second.Status.KeyHash).To(Equal(keys.Hash(keyValue(secondSecret))))
	g.Expect(second.Status.ExpiresAt.Time).To(BeTemporally("==", first.Status.ExpiresAt.Time))
	g.Expect(second.Status.ExpiresAt.Time).To(BeTemporally("==", time.Date(2026, 4, 30, 12, 0, 0, 0, time.UTC)))
	g.Expect(string(secondSecret.Data["expires-at"])).To(Equal("2026-04-30T12:00:00Z"))
	g.Eventually(func(g Gomega) {
		e := eventWith(g, ns, key.Name, keymintv1alpha1.ReasonReissued)
		g.Expect(e).NotTo(BeNil())
		g.Expect(e.Note).To(ContainSubstring(second.Status.KeyID))
	}).Should(Succeed())
	expectNoPlaintext(g, key, keyValue(firstSecret))
	expectNoPlaintext(g, key, keyValue(secondSecret))
}

// TestRestartMidIssue stops a manager right after it created a key's Secret
// and before it wrote status, as a crash there would; the next manager
// adopts that Secret and mints no second key.
func TestRestartMidIssue(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	failStatus := &interceptorFuncs{failStatusWrites: true}
	stop := startManager(t, managerOptions{intercept: failStatus.funcs()})
	ns := newNamespace(t)
	key := newKey(ns, "interrupted", userIn(ns, "heidi"), months(18))
	g.Expect(k8sClient.Create(ctx, key)).To(Succeed())

	var minted *corev1.Secret
	g.Eventually(func(g Gomega) { minted = secretOf(g, key) }).Should(Succeed())
	// Several reconciles run and fail to write status; none mints again.
	g.Eventually(failStatus.failures).Should(BeNumerically(">=", 3))
	stop()
	g.Expect(getKey(g, key).Status.KeyID).To(BeEmpty(), "no status was written")
	g.Expect(secretOf(g, key).UID).To(Equal(minted.UID))

	startManager(t, managerOptions{})
	got := waitForPhase(t, key, keymintv1alpha1.PhaseActive)
	after := secretOf(g, key)
	g.Expect(after.UID).To(Equal(minted.UID), "the Secret was not replaced")
	g.Expect(got.Status.KeyID).To(Equal(string(minted.Data["key-id"])))
	g.Expect(got.Status.KeyHash).To(Equal(keys.Hash(keyValue(minted))))
	g.Expect(userSlotCount(g, userIn(ns, "heidi"))).To(Equal(1))
	secrets := &corev1.SecretList{}
	g.Expect(k8sClient.List(ctx, secrets, client.InNamespace(ns), client.MatchingLabels{keymintv1alpha1.LabelManagedBy: keymintv1alpha1.ManagedBy})).To(Succeed())
	g.Expect(secrets.Items).To(HaveLen(1))
}

// userSlotCount is the number of slot Leases held for user.
func userSlotCount(g Gomega, user string) int {
	list := &coordinationv1.LeaseList{}
	g.Expect(k8sClient.List(ctx, list, client.InNamespace(slotNamespace), client.MatchingLabels{slots.LabelUserHash: slots.UserHash(user)})).To(Succeed())
	return len(list.Items)
}

// poke changes an annotation, which makes the manager reconcile the key.
func poke(g Gomega, key *keymintv1alpha1.APIKey) {
	patch := []byte(`{"metadata":{"annotations":{"test.keymint.io/poke":"` + time.Now().Format(time.RFC3339Nano) + `"}}}`)
	g.Expect(k8sClient.Patch(ctx, key.DeepCopy(), client.RawPatch("application/merge-patch+json", patch))).To(Succeed())
}
