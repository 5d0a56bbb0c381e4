package verify_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/audit"
	"github.com/keymint/keymint/internal/slots"
	"github.com/keymint/keymint/internal/testenv"
	"github.com/keymint/keymint/internal/verify"
)

// TestARenewalKeepsBothKeysWorkingUntilThePreviousExpires, on the
// stepped clock: a three-month key with renewBefore 336h renews into the
// same Secret (same UID, new resourceVersion, revision 2, new signature);
// the verifier accepts both keys, naming each in X-Keymint-Key-Id; the
// previous key is refused at its expiresAt before the controller runs,
// and retired, its slot freed, when it does. Then an in-place rotation
// with --grace 0s refuses the renewed key within a second.
func TestARenewalKeepsBothKeysWorkingUntilThePreviousExpires(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	ns := namespace(t, true)
	user := "rita@" + ns
	key := &keymintv1alpha1.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "renewing"},
		Spec: keymintv1alpha1.APIKeySpec{User: user, Expiration: keymintv1alpha1.Expiration{Months: new(int32(3))},
			Rotation: &keymintv1alpha1.Rotation{RenewBefore: &metav1.Duration{Duration: 336 * time.Hour}}}}
	g.Expect(env.Client.Create(ctx, key)).To(Succeed())
	first := waitFor(g, key, func(k *keymintv1alpha1.APIKey) bool { return k.Status.Phase == keymintv1alpha1.PhaseActive })
	g.Expect(first.Status.Revision).To(Equal(int64(1)))
	g.Expect(first.Status.RenewalTime).NotTo(BeNil())
	g.Expect(first.Status.RenewalTime.Time).To(BeTemporally("==", first.Status.ExpiresAt.Add(-336*time.Hour)))
	before := secretIn(g, ns)
	g.Expect(before.Immutable).To(HaveValue(BeFalse()), "the Secret of a rotating key must be mutable, or the kubelet never refreshes it")
	oldValue := string(before.Data[keymintv1alpha1.DataKey])
	presented.Store(oldValue, true)

	// The renewal time: the controller renews when it looks (a poke
	// stands for the requeue the real clock would fire).
	clk.SetTime(first.Status.RenewalTime.Time)
	poke(g, key)
	renewed := waitFor(g, key, func(k *keymintv1alpha1.APIKey) bool { return k.Status.Revision == 2 })
	after := secretIn(g, ns)
	newValue := string(after.Data[keymintv1alpha1.DataKey])
	presented.Store(newValue, true)
	g.Expect(after.UID).To(Equal(before.UID), "the renewal must update the same Secret")
	g.Expect(after.ResourceVersion).NotTo(Equal(before.ResourceVersion))
	g.Expect(after.Annotations[keymintv1alpha1.AnnotationRevision]).To(Equal("2"))
	g.Expect(after.Annotations["keymint.io/signature"]).NotTo(Equal(before.Annotations["keymint.io/signature"]))
	g.Expect(newValue).NotTo(Equal(oldValue))
	g.Expect(string(after.Data[keymintv1alpha1.DataKeyID])).To(Equal(renewed.Status.KeyID))
	g.Expect(renewed.Status.PreviousKey).NotTo(BeNil())
	g.Expect(renewed.Status.PreviousKey.KeyID).To(Equal(first.Status.KeyID))
	g.Expect(renewed.Status.PreviousKey.ExpiresAt.Time).To(BeTemporally("==", first.Status.ExpiresAt.Time))
	g.Expect(renewed.Status.IssuedAt.Time).To(BeTemporally("==", first.Status.RenewalTime.Time))
	g.Expect(renewed.Status.ExpiresAt.Time).To(BeTemporally("==", first.Status.RenewalTime.AddDate(0, 3, 0)))
	g.Expect(renewed.Status.Ready().Status).To(Equal(metav1.ConditionTrue))
	g.Expect(slotsOf(g, user)).To(Equal(2), "the previous key is a live credential: it holds a slot")
	expectNoKeyIn(g, renewed, oldValue, newValue)

	for value, id := range map[string]string{oldValue: first.Status.KeyID, newValue: renewed.Status.KeyID} {
		code, reason, h := ask(g, verifyURL+"/verify", "X-API-Key", value)
		g.Expect(code).To(Equal(http.StatusOK), reason)
		g.Expect(h.Get(verify.HeaderKeyID)).To(Equal(id))
	}

	// The previous key, used 3 minutes after its successor was written:
	// a workload has not moved.
	clk.SetTime(renewed.Status.IssuedAt.Add(3 * time.Minute))
	code, _, _ := ask(g, verifyURL+"/verify", "X-API-Key", oldValue)
	g.Expect(code).To(Equal(http.StatusOK))
	inUse := waitFor(g, key, func(k *keymintv1alpha1.APIKey) bool {
		return apimeta.IsStatusConditionTrue(k.Status.Conditions, keymintv1alpha1.ConditionPreviousKeyInUse)
	})
	g.Expect(inUse.Status.PreviousKey.LastUsedAt).NotTo(BeNil())
	g.Expect(apimeta.FindStatusCondition(inUse.Status.Conditions, keymintv1alpha1.ConditionPreviousKeyInUse).Message).To(ContainSubstring(first.Status.KeyID))

	// At the previous key's expiresAt the verifier refuses it at once, on
	// its own clock, while the controller has not run.
	clk.SetTime(first.Status.ExpiresAt.Time)
	code, reason, _ := ask(g, verifyURL+"/verify", "X-API-Key", oldValue)
	g.Expect(code).To(Equal(http.StatusUnauthorized))
	g.Expect(reason).To(Equal("expired"))
	code, _, _ = ask(g, verifyURL+"/verify", "X-API-Key", newValue)
	g.Expect(code).To(Equal(http.StatusOK))
	poke(g, key)
	retired := waitFor(g, key, func(k *keymintv1alpha1.APIKey) bool { return k.Status.PreviousKey == nil })
	g.Expect(apimeta.FindStatusCondition(retired.Status.Conditions, keymintv1alpha1.ConditionPreviousKeyInUse)).To(BeNil())
	g.Eventually(func(g Gomega) { g.Expect(slotsOf(g, user)).To(Equal(1)) }).Should(Succeed())
	// One record each (a retried pass writes the same ID, which the
	// audit log keeps once).
	for _, action := range []string{keymintv1alpha1.ReasonRenewed, keymintv1alpha1.ReasonPreviousKeyRetired, keymintv1alpha1.ReasonPreviousKeyInUse} {
		g.Eventually(func() int { return len(recordIDs(action, "renewing")) }).Should(Equal(1), action)
	}

	// A compromised key: rotated in place with no grace, refused within a
	// second of the request.
	start := time.Now()
	requested := clk.Now().UTC().Format(time.RFC3339)
	patch := []byte(`{"metadata":{"annotations":{"keymint.io/rotate-requested-at":"` + requested + `","keymint.io/rotate-grace":"0s"}}}`)
	g.Expect(env.Client.Patch(ctx, key.DeepCopy(), client.RawPatch("application/merge-patch+json", patch))).To(Succeed())
	g.Eventually(func(g Gomega) {
		code, _, _ := ask(g, verifyURL+"/verify", "X-API-Key", newValue)
		g.Expect(code).To(Equal(http.StatusUnauthorized))
	}).WithPolling(5 * time.Millisecond).Should(Succeed())
	g.Expect(time.Since(start)).To(BeNumerically("<=", time.Second))
	t.Logf("in-place rotation with --grace 0s: the old key refused %v after the request", time.Since(start))
	third := waitFor(g, key, func(k *keymintv1alpha1.APIKey) bool { return k.Status.LastRotationRequest == requested })
	g.Expect(third.Status.Revision).To(Equal(int64(3)))
	g.Expect(third.Status.PreviousKey).To(BeNil())
	g.Expect(secretIn(g, ns).UID).To(Equal(before.UID))
	thirdValue := string(secretIn(g, ns).Data[keymintv1alpha1.DataKey])
	presented.Store(thirdValue, true)
	code, _, _ = ask(g, verifyURL+"/verify", "X-API-Key", thirdValue)
	g.Expect(code).To(Equal(http.StatusOK))
	g.Expect(slotsOf(g, user)).To(Equal(1))
}

// recordIDs are the distinct IDs of the trail's records of action about
// the APIKey name.
func recordIDs(action, name string) map[string]bool {
	ids := map[string]bool{}
	for _, r := range trail.Of(audit.Action(action), name) {
		ids[r.ID] = true
	}
	return ids
}

// waitFor polls key until ok holds, and returns it.
func waitFor(g Gomega, key *keymintv1alpha1.APIKey, ok func(*keymintv1alpha1.APIKey) bool) *keymintv1alpha1.APIKey {
	got := &keymintv1alpha1.APIKey{}
	g.Eventually(func(g Gomega) {
		g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(key), got)).To(Succeed())
		g.Expect(ok(got)).To(BeTrue(), "%+v %+v", got.Status, got.Status.PreviousKey)
	}).Should(Succeed())
	return got
}

// poke changes key's annotations, which makes the controller look at it.
func poke(g Gomega, key *keymintv1alpha1.APIKey) {
	patch := []byte(`{"metadata":{"annotations":{"test.keymint.io/poke":"` + time.Now().Format(time.RFC3339Nano) + `"}}}`)
	g.Expect(env.Client.Patch(ctx, key.DeepCopy(), client.RawPatch("application/merge-patch+json", patch))).To(Succeed())
}

// secretIn is the Secret of the APIKey "renewing" in ns.
func secretIn(g Gomega, ns string) *corev1.Secret {
	s := &corev1.Secret{}
	g.Expect(env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "renewing"}, s)).To(Succeed())
	return s
}

// slotsOf counts the slot Leases of user.
func slotsOf(g Gomega, user string) int {
	list := &coordinationv1.LeaseList{}
	g.Expect(env.Client.List(ctx, list, client.InNamespace(testenv.SlotNamespace), client.MatchingLabels{slots.LabelUserHash: slots.UserHash(user)})).To(Succeed())
	return len(list.Items)
}

// expectNoKeyIn checks that neither key is in key's status or annotations.
func expectNoKeyIn(g Gomega, key *keymintv1alpha1.APIKey, values ...string) {
	raw, err := json.Marshal(key)
	g.Expect(err).NotTo(HaveOccurred())
	for _, v := range values {
		g.Expect(string(raw)).NotTo(ContainSubstring(v))
	}
}
