package controllers

import (
	"slices"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/keysecret"
	"github.com/keymint/keymint/internal/slots"
)

// slotOf is a slot Lease of alice held by the APIKey ns/name with uid.
func slotOf(name, uid string) coordinationv1.Lease {
	return coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: "slot-" + name, UID: types.UID("lease-" + uid), Labels: map[string]string{
			slots.LabelHolderNamespace: "ns", slots.LabelHolderName: name,
		}},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: new(uid)},
	}
}

func waiter(name string, created time.Time) slots.Candidate {
	return slots.Candidate{Key: types.NamespacedName{Namespace: "ns", Name: name}, Created: created}
}

// TestDecide is the key's state machine, one row a branch, with a fake
// clock: rows marked "race" are reached only through a stale cache or
// concurrent reconciles in envtest.
func TestDecide(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	now := clk.Now()
	past, future := now.Add(-time.Minute), now.Add(time.Hour)
	active := func(k *keymintv1alpha1.APIKey) {
		setActive(k, past, "k", keysecret.Issue{KeyID: "kid_1", IssuedAt: past, ExpiresAt: &future})
	}
	expired := func(k *keymintv1alpha1.APIKey) { setExpired(k, past, &past, "m") }
	conflicted := func(k *keymintv1alpha1.APIKey) {
		setStalled(k, past, keymintv1alpha1.ReasonSecretConflict, "m")
	}
	mine, other, older := slotOf("k", "uid-k"), slotOf("a", "uid-a"), slotOf("b", "uid-b")

	for _, tt := range []struct {
		name   string
		exp    keymintv1alpha1.Expiration
		status func(*keymintv1alpha1.APIKey)
		in     Input
		want   Plan
	}{
		{name: "in keymint's own namespace, even with access and a slot", exp: never(), status: active,
			in: Input{SlotNamespace: "ns", Allowed: true, Slots: []coordinationv1.Lease{mine}},
			want: Plan{Check: "ReservedNamespace", Do: ActDeny, Reason: keymintv1alpha1.ReasonReservedNamespace,
				Message: "namespace ns is keymint's own (it holds the signing key and the slots): create APIKeys in another namespace"}},
		{name: "at not after creation", exp: at(created),
			want: Plan{Check: "InvalidExpiration", Do: ActStall, Reason: keymintv1alpha1.ReasonInvalidExpiration,
				Message: "spec.expiration.at 2026-01-31T09:00:00Z is not after the APIKey's creation 2026-01-31T09:00:00Z"}},
		{name: "expired, still holding its slot (race: killed before the release)", exp: never(), status: expired,
			in: Input{Slots: []coordinationv1.Lease{mine}}, want: Plan{Check: "ExpiredOrDue", Do: ActFreeSlots}},
		{name: "expired, nothing held", exp: never(), status: expired,
			want: Plan{Check: "ExpiredOrDue", Do: ActSettled}},
		{name: "active and due at this very second", exp: at(now), status: func(k *keymintv1alpha1.APIKey) {
			setActive(k, past, "k", keysecret.Issue{KeyID: "kid_1", IssuedAt: past, ExpiresAt: &now})
		}, in: Input{Allowed: true, Slots: []coordinationv1.Lease{mine}}, want: Plan{Check: "ExpiredOrDue", Do: ActExpire}},
		{name: "waited past its at, never issued", exp: at(past),
			in: Input{Allowed: true}, want: Plan{Check: "ExpiredOrDue", Do: ActExpire}},
		{name: "no access, never issued", exp: never(),
			want: Plan{Check: "AccessDeniedOrRemoved", Do: ActDeny, Reason: keymintv1alpha1.ReasonAccessDenied,
				Message: `user alice is not authorised for "use" on apikeys in namespace ns; an administrator grants it by binding the keymint-user ClusterRole`}},
		{name: "access removed from an active key", exp: never(), status: active,
			in: Input{Slots: []coordinationv1.Lease{mine}},
			want: Plan{Check: "AccessDeniedOrRemoved", Do: ActDeny, Reason: keymintv1alpha1.ReasonAccessRemoved,
				Message: `key kid_1 is suspended: user alice is no longer authorised for "use" on apikeys; a fresh key is issued when access is granted again`}},
		{name: "someone else's Secret is still there", exp: never(), status: conflicted,
			in: Input{Allowed: true, SecretConflict: true},
			want: Plan{Check: "SecretConflict", Do: ActConflict, Reason: keymintv1alpha1.ReasonSecretConflict,
				Message: "Secret ns/k exists and does not belong to this APIKey; delete it or choose another spec.secretName"}},
		{name: "holding a slot: mint or adopt", exp: never(),
			in:   Input{Allowed: true, Slots: []coordinationv1.Lease{other, mine}},
			want: Plan{Check: "ClaimMintOrAdopt", Do: ActIssue}},
		{name: "every slot held by a live key", exp: never(),
			in: Input{Allowed: true, Slots: []coordinationv1.Lease{other, older}},
			want: Plan{Check: "NoSlotOrNotYourTurn", Do: ActWait, Reason: keymintv1alpha1.ReasonKeyLimitReached,
				Message: "user alice already holds 2 active keys (ns/a, ns/b); this key is issued when one of them is deleted or expires"}},
		{name: "active, but its slot was deleted and taken (race)", exp: never(), status: active,
			in: Input{Allowed: true, Slots: []coordinationv1.Lease{other, older}},
			want: Plan{Check: "NoSlotOrNotYourTurn", Do: ActWait, Reason: keymintv1alpha1.ReasonKeyLimitReached,
				Message: "user alice already holds 2 active keys (ns/a, ns/b); this key is issued when one of them is deleted or expires"}},
		{name: "every slot taken, one by a key that is gone", exp: never(),
			in:   Input{Allowed: true, Slots: []coordinationv1.Lease{other, older}, Stale: []coordinationv1.Lease{older}},
			want: Plan{Check: "ClaimMintOrAdopt", Do: ActClaim, Reclaim: []coordinationv1.Lease{older}}},
		{name: "a slot free, an older key of the user waits ahead", exp: never(),
			in: Input{Allowed: true, Slots: []coordinationv1.Lease{other}, Waiting: []slots.Candidate{waiter("w", created.Add(-time.Hour))}},
			want: Plan{Check: "NoSlotOrNotYourTurn", Do: ActWait, Reason: keymintv1alpha1.ReasonKeyLimitReached,
				Message: "user alice holds 1 of 2 active keys (ns/a); older keys of the user wait ahead of this one: ns/w"}},
		{name: "a slot free, this key waited longest", exp: never(),
			in:   Input{Allowed: true, Slots: []coordinationv1.Lease{other}, Waiting: []slots.Candidate{waiter("w", created.Add(time.Hour)), waiter("k", created)}},
			want: Plan{Check: "ClaimMintOrAdopt", Do: ActClaim}},
		{name: "a waiting key whose conflict is gone claims", exp: never(), status: conflicted,
			in: Input{Allowed: true}, want: Plan{Check: "ClaimMintOrAdopt", Do: ActClaim}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			k := keyWith(tt.exp, keymintv1alpha1.APIKeyStatus{})
			k.Name, k.UID = "k", "uid-k"
			if tt.status != nil {
				tt.status(k)
			}
			in := tt.in
			in.Key, in.Now, in.MaxKeys = k, now, 2
			got := decide(&in)
			if got.Check != tt.want.Check || got.Do != tt.want.Do || got.Reason != tt.want.Reason || got.Message != tt.want.Message ||
				!slices.EqualFunc(got.Reclaim, tt.want.Reclaim, func(a, b coordinationv1.Lease) bool { return a.UID == b.UID }) {
				t.Errorf("decide =\n  %+v\nwant\n  %+v", got, tt.want)
			}
		})
	}
}

// TestRequeueAfter is the chain's last step, on the state a pass leaves.
func TestRequeueAfter(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	in := func(d time.Duration) *time.Time { t := now.Add(d); return &t }
	const limit = time.Hour
	for _, tt := range []struct {
		name string
		exp  keymintv1alpha1.Expiration
		set  func(*keymintv1alpha1.APIKey)
		want time.Duration
	}{
		{"active, expiring before the limit", never(), func(k *keymintv1alpha1.APIKey) {
			setActive(k, now, "k", keysecret.Issue{KeyID: "kid", ExpiresAt: in(10 * time.Minute)})
		}, 10 * time.Minute},
		{"active, expiring after the limit", never(), func(k *keymintv1alpha1.APIKey) {
			setActive(k, now, "k", keysecret.Issue{KeyID: "kid", ExpiresAt: in(48 * time.Hour)})
		}, limit},
		{"active, never expiring: its access is looked at again", never(), func(k *keymintv1alpha1.APIKey) {
			setActive(k, now, "k", keysecret.Issue{KeyID: "kid"})
		}, limit},
		{"waiting with an at expiry: expires unissued", at(now.Add(5 * time.Minute)), func(k *keymintv1alpha1.APIKey) {
			setWaiting(k, now, "m")
		}, 5 * time.Minute},
		{"suspended", never(), func(k *keymintv1alpha1.APIKey) { setSuspended(k, now, "m") }, limit},
		{"access denied", never(), func(k *keymintv1alpha1.APIKey) {
			setStalled(k, now, keymintv1alpha1.ReasonAccessDenied, "m")
		}, limit},
		{"someone else's Secret", never(), func(k *keymintv1alpha1.APIKey) {
			setStalled(k, now, keymintv1alpha1.ReasonSecretConflict, "m")
		}, conflictRetry},
		{"invalid expiration", never(), func(k *keymintv1alpha1.APIKey) {
			setStalled(k, now, keymintv1alpha1.ReasonInvalidExpiration, "m")
		}, 0},
		{"expired", never(), func(k *keymintv1alpha1.APIKey) { setExpired(k, now, &now, "m") }, 0},
	} {
		k := keyWith(tt.exp, keymintv1alpha1.APIKeyStatus{})
		tt.set(k)
		if got := requeueAfter(k, now, limit, 0); got != tt.want {
			t.Errorf("%s: requeueAfter = %v, want %v", tt.name, got, tt.want)
		}
	}

	// The warning window's opening is a moment to look again, too.
	const warning = 14 * 24 * time.Hour
	for _, tt := range []struct {
		name    string
		expires time.Duration
		want    time.Duration
	}{
		{"window opens in 30 minutes", warning + 30*time.Minute, 30 * time.Minute},
		{"window open: the expiry", 10 * time.Minute, 10 * time.Minute},
		{"window far off: the limit", warning + 5*time.Hour, limit},
	} {
		k := keyWith(never(), keymintv1alpha1.APIKeyStatus{})
		setActive(k, now, "k", keysecret.Issue{KeyID: "kid", ExpiresAt: in(tt.expires)})
		if got := requeueAfter(k, now, limit, warning); got != tt.want {
			t.Errorf("%s: requeueAfter = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestExpiringSoon: the condition is True from the window's opening, once,
// for Active keys only, and says when the key expires.
func TestExpiringSoon(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	const window = 14 * 24 * time.Hour
	for _, tt := range []struct {
		name    string
		expires *time.Time
		want    bool
	}{
		{"a second before the window", new(now.Add(window + time.Second)), false},
		{"as the window opens", new(now.Add(window)), true},
		{"never expires", nil, false},
	} {
		k := keyWith(never(), keymintv1alpha1.APIKeyStatus{})
		setActive(k, now, "k", keysecret.Issue{KeyID: "kid_1", ExpiresAt: tt.expires})
		setExpiringSoon(k, now, window)
		c := apimeta.FindStatusCondition(k.Status.Conditions, keymintv1alpha1.ConditionExpiringSoon)
		if (c != nil) != tt.want {
			t.Fatalf("%s: ExpiringSoon %+v, want present %v", tt.name, c, tt.want)
		}
		if c != nil && c.Message != "key kid_1 of user alice expires at 2026-03-15T12:00:00Z, within 14 days; create its successor and switch to it before then" {
			t.Errorf("%s: message %q", tt.name, c.Message)
		}
	}
}

// TestTransitions: the Events and records a change of state is worth,
// with their exact text, and none for a state kept.
func TestTransitions(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	exp := now.Add(30 * 24 * time.Hour)
	issued := func(id string) func(*keymintv1alpha1.APIKey) {
		return func(k *keymintv1alpha1.APIKey) {
			setActive(k, now, "k", keysecret.Issue{KeyID: id, IssuedAt: now, ExpiresAt: &exp})
		}
	}
	waiting := func(k *keymintv1alpha1.APIKey) { setWaiting(k, now, "user alice already holds 2 active keys") }
	// switchedTo sets spec.state as the policy stamps it, then then.
	switchedTo := func(state keymintv1alpha1.KeyState, by, reason string, then func(*keymintv1alpha1.APIKey)) func(*keymintv1alpha1.APIKey) {
		return func(k *keymintv1alpha1.APIKey) {
			k.Spec.State, k.Spec.StateChangedBy, k.Spec.StateReason = state, by, reason
			then(k)
		}
	}
	for _, tt := range []struct {
		name          string
		before, after func(*keymintv1alpha1.APIKey)
		want          []transition
	}{
		{"first issue", nil, issued("kid_1"), []transition{{eventType: corev1.EventTypeNormal, reason: keymintv1alpha1.ReasonIssued, note: "key kid_1 issued for user alice in Secret k, expires 2026-03-31T12:00:00Z"}}},
		{"reissue", issued("kid_1"), issued("kid_2"), []transition{{eventType: corev1.EventTypeNormal, reason: keymintv1alpha1.ReasonReissued, note: "key kid_2 issued for user alice in Secret k, expires 2026-03-31T12:00:00Z; Pods that mount the Secret keep the previous key until they are replaced"}}},
		{"still active", issued("kid_1"), issued("kid_1"), nil},
		{"expired", issued("kid_1"), func(k *keymintv1alpha1.APIKey) { setExpired(k, now, &now, "m") },
			[]transition{{eventType: corev1.EventTypeNormal, reason: keymintv1alpha1.ReasonExpired, note: "key kid_1 of user alice expired at 2026-03-01T12:00:00Z"}}},
		{"suspended", issued("kid_1"), func(k *keymintv1alpha1.APIKey) { setSuspended(k, now, "m") },
			[]transition{{eventType: corev1.EventTypeWarning, reason: keymintv1alpha1.ReasonSuspended, note: "key kid_1 of user alice suspended: the user lost access to API keys; its Secret is deleted"}}},
		{"suspended still", func(k *keymintv1alpha1.APIKey) { setSuspended(k, now, "m") },
			func(k *keymintv1alpha1.APIKey) { setSuspended(k, now, "m") }, nil},
		{"starts waiting", nil, waiting, []transition{{eventType: corev1.EventTypeWarning, reason: keymintv1alpha1.ReasonKeyLimitReached, note: "user alice already holds 2 active keys"}}},
		{"waits still", waiting, waiting, nil},
		{"a retry is no Event", nil, func(k *keymintv1alpha1.APIKey) { setRetrying(k, now, "timeout") }, nil},
		{"the warning window opens", issued("kid_1"), func(k *keymintv1alpha1.APIKey) { setExpiringSoon(k, exp, 14*24*time.Hour) },
			[]transition{{eventType: corev1.EventTypeWarning, reason: keymintv1alpha1.ReasonExpiringSoon, note: "key kid_1 of user alice expires at 2026-03-31T12:00:00Z, within 14 days; create its successor and switch to it before then"}}},
		{"deactivated", issued("kid_1"), switchedTo(keymintv1alpha1.StateInactive, "carol", "leaked", issued("kid_1")),
			[]transition{{eventType: corev1.EventTypeNormal, reason: keymintv1alpha1.ReasonDeactivated,
				note: "key kid_1 of user alice deactivated by carol: leaked", actor: "carol"}}},
		{"still inactive", switchedTo(keymintv1alpha1.StateInactive, "carol", "leaked", issued("kid_1")),
			switchedTo(keymintv1alpha1.StateInactive, "carol", "leaked", issued("kid_1")), nil},
		{"reactivated", switchedTo(keymintv1alpha1.StateInactive, "carol", "leaked", issued("kid_1")),
			switchedTo(keymintv1alpha1.StateActive, "alice", "", issued("kid_1")),
			[]transition{{eventType: corev1.EventTypeNormal, reason: keymintv1alpha1.ReasonReactivated,
				note: "key kid_1 of user alice reactivated by alice", actor: "alice"}}},
		{"issued inactive", nil, switchedTo(keymintv1alpha1.StateInactive, "alice", "", issued("kid_1")),
			[]transition{{eventType: corev1.EventTypeNormal, reason: keymintv1alpha1.ReasonIssued,
				note: "key kid_1 issued for user alice in Secret k, expires 2026-03-31T12:00:00Z; it is inactive (spec.state) until switched on"}}},
		{"the window stays open", func(k *keymintv1alpha1.APIKey) {
			issued("kid_1")(k)
			setExpiringSoon(k, exp, 14*24*time.Hour)
		}, func(k *keymintv1alpha1.APIKey) { setExpiringSoon(k, exp, 14*24*time.Hour) }, nil},
	} {
		before := keyWith(never(), keymintv1alpha1.APIKeyStatus{})
		if tt.before != nil {
			tt.before(before)
		}
		after := before.DeepCopy()
		tt.after(after)
		if got := transitions(&before.Status, after); !slices.Equal(got, tt.want) {
			t.Errorf("%s: transitions = %+v, want %+v", tt.name, got, tt.want)
		}
	}
}
