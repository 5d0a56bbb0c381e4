package controllers

import (
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/keysecret"
	"github.com/keymint/keymint/internal/slots"
)

// TestDecideRotation is the renewal's part of the state machine, one row a
// branch, on a fake clock: a three-month key issued on 1 January expires
// on 1 April and, renewing 336h before, renews on 18 March at noon.
func TestDecideRotation(t *testing.T) {
	issued := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	expires := time.Date(2026, 4, 1, 12, 0, 0, 0, time.UTC)
	renewal := time.Date(2026, 3, 18, 12, 0, 0, 0, time.UTC)
	before := renewal.Add(-time.Second)
	mine, mine2, other := slotOf("k", "uid-k"), slotOf("k", "uid-k"), slotOf("a", "uid-a")
	mine2.Name, mine2.UID = "slot-k-2", "lease-uid-k-2"

	type key = keymintv1alpha1.APIKey
	issuedKey := func(k *key) {
		setActive(k, issued, "k", keysecret.Issue{KeyID: "kid_2", KeyHash: "sha256:02", Revision: 2, IssuedAt: issued, ExpiresAt: &expires})
	}
	rotating := func(k *key) {
		k.Spec.Rotation = &keymintv1alpha1.Rotation{RenewBefore: &metav1.Duration{Duration: 336 * time.Hour}}
		issuedKey(k)
	}
	successorExpires := time.Date(2026, 6, 18, 12, 0, 0, 0, time.UTC)
	overlap := func(until time.Time) func(k *key) {
		return func(k *key) {
			k.Spec.Rotation = &keymintv1alpha1.Rotation{RenewBefore: &metav1.Duration{Duration: 336 * time.Hour}}
			setActive(k, renewal, "k", keysecret.Issue{KeyID: "kid_3", KeyHash: "sha256:03", Revision: 3, IssuedAt: renewal, ExpiresAt: &successorExpires})
			k.Status.PreviousKey = &keymintv1alpha1.PreviousKey{KeyID: "kid_1", KeyHash: "sha256:01", ExpiresAt: metav1.NewTime(until)}
		}
	}
	requested := func(grace string, seen bool) func(k *key) {
		return func(k *key) {
			issuedKey(k)
			k.Annotations = map[string]string{keymintv1alpha1.AnnotationRotateRequestedAt: "2026-02-01T10:00:00Z"}
			if grace != "" {
				k.Annotations[keymintv1alpha1.AnnotationRotateGrace] = grace
			}
			if seen {
				k.Status.LastRotationRequest = "2026-02-01T10:00:00Z"
			}
		}
	}
	blocked := func(k *key) {
		rotating(k)
		setRotationBlocked(k, renewal, "m")
	}
	full := []coordinationv1.Lease{mine, other}
	blockedMsg := "the renewal of key kid_2 waits for a slot: user alice holds 2 of 2 (ns/a, ns/k), and the previous key needs one while it keeps working; " +
		"it renews as soon as one frees, before any new key, or expires at 2026-04-01T12:00:00Z"

	for _, tt := range []struct {
		name   string
		now    time.Time
		status func(*key)
		slots  []coordinationv1.Lease
		want   Plan
	}{
		{name: "a second before the renewal time", now: before, status: rotating, slots: full,
			want: Plan{Check: "ClaimMintOrAdopt", Do: ActIssue}},
		{name: "due and a slot free: the previous key works until its own expiry", now: renewal, status: rotating, slots: []coordinationv1.Lease{mine},
			want: Plan{Check: "RenewalDue", Do: ActRenew, Scheduled: true, Grace: expires.Sub(renewal)}},
		{name: "due and every slot held", now: renewal, status: rotating, slots: full,
			want: Plan{Check: "RenewalDue", Do: ActBlockRotation, Reason: keymintv1alpha1.ReasonKeyLimitReached, Message: blockedMsg}},
		{name: "blocked, then a slot freed", now: renewal.Add(time.Hour), status: blocked, slots: []coordinationv1.Lease{mine},
			want: Plan{Check: "RenewalDue", Do: ActRenew, Scheduled: true, Grace: expires.Sub(renewal.Add(time.Hour))}},
		{name: "due, holding both slots already (a renewal that stopped before it wrote)", now: renewal, status: rotating, slots: []coordinationv1.Lease{mine, mine2},
			want: Plan{Check: "RenewalDue", Do: ActRenew, Scheduled: true, Grace: expires.Sub(renewal)}},
		{name: "in-place request with a grace", now: before, status: requested("30m", false), slots: []coordinationv1.Lease{mine},
			want: Plan{Check: "RotationRequested", Do: ActRenew, Request: "2026-02-01T10:00:00Z", Grace: 30 * time.Minute}},
		{name: "in-place request without a grace annotation: 1h", now: before, status: requested("", false), slots: []coordinationv1.Lease{mine},
			want: Plan{Check: "RotationRequested", Do: ActRenew, Request: "2026-02-01T10:00:00Z", Grace: time.Hour}},
		{name: "in-place request with --grace 0s needs no second slot", now: before, status: requested("0s", false), slots: full,
			want: Plan{Check: "RotationRequested", Do: ActRenew, Request: "2026-02-01T10:00:00Z"}},
		{name: "in-place request with a grace, every slot held", now: before, status: requested("1h", false), slots: full,
			want: Plan{Check: "RotationRequested", Do: ActBlockRotation, Reason: keymintv1alpha1.ReasonKeyLimitReached,
				Message: blockedMsg}},
		{name: "a request seen twice is acted on once", now: before, status: requested("0s", true), slots: []coordinationv1.Lease{mine},
			want: Plan{Check: "ClaimMintOrAdopt", Do: ActIssue}},
		{name: "a malformed grace is no request", now: before, status: requested("-1h", false), slots: []coordinationv1.Lease{mine},
			want: Plan{Check: "ClaimMintOrAdopt", Do: ActIssue}},
		{name: "the previous key before its expiry", now: expires.Add(-time.Second), status: overlap(expires), slots: []coordinationv1.Lease{mine, mine2},
			want: Plan{Check: "ClaimMintOrAdopt", Do: ActIssue}},
		{name: "the previous key due for retirement", now: expires, status: overlap(expires), slots: []coordinationv1.Lease{mine, mine2},
			want: Plan{Check: "PreviousKeyDue", Do: ActRetire}},
		{name: "rotation removed from the spec during an overlap: the previous key still retires at its expiry", now: expires,
			status: func(k *key) { overlap(expires)(k); k.Spec.Rotation = nil }, slots: []coordinationv1.Lease{mine, mine2},
			want: Plan{Check: "PreviousKeyDue", Do: ActRetire}},
		{name: "rotation removed from the spec during an overlap: no renewal after it", now: expires.Add(-time.Second),
			status: func(k *key) { overlap(expires)(k); k.Spec.Rotation = nil }, slots: []coordinationv1.Lease{mine, mine2},
			want: Plan{Check: "ClaimMintOrAdopt", Do: ActIssue}},
		{name: "a second slot without a previous key is freed", now: before, status: rotating, slots: []coordinationv1.Lease{mine, mine2},
			want: Plan{Check: "SurplusSlots", Do: ActRetire}},
		{name: "renewBefore more than half the lifetime: no renewal", now: renewal.AddDate(0, -1, 0), status: func(k *key) {
			rotating(k)
			k.Spec.Rotation.RenewBefore.Duration = 1200 * time.Hour
		}, slots: []coordinationv1.Lease{mine}, want: Plan{Check: "ClaimMintOrAdopt", Do: ActIssue}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			k := keyWith(keymintv1alpha1.Expiration{Months: new(int32(3))}, keymintv1alpha1.APIKeyStatus{})
			k.Name, k.UID = "k", "uid-k"
			tt.status(k)
			in := Input{Key: k, Now: tt.now, MaxKeys: 2, Allowed: true, Slots: tt.slots}
			got := decide(&in)
			if got.Check != tt.want.Check || got.Do != tt.want.Do || got.Reason != tt.want.Reason || got.Message != tt.want.Message ||
				got.Grace != tt.want.Grace || got.Scheduled != tt.want.Scheduled || got.Request != tt.want.Request {
				t.Errorf("decide =\n  %+v\nwant\n  %+v", got, tt.want)
			}
		})
	}
}

// TestANewKeyWaitsBehindABlockedRenewal: a freed slot goes to the renewal
// first, however long the new key has waited.
func TestANewKeyWaitsBehindABlockedRenewal(t *testing.T) {
	now := time.Date(2026, 3, 18, 12, 0, 0, 0, time.UTC)
	k := keyWith(never(), keymintv1alpha1.APIKeyStatus{})
	k.Name, k.UID = "k", "uid-k"
	renewing := waiter("r", now)
	renewing.Renewal = true
	in := Input{Key: k, Now: now, MaxKeys: 2, Allowed: true, Slots: []coordinationv1.Lease{slotOf("r", "uid-r")},
		Waiting: []slots.Candidate{renewing, waiter("k", created)}}
	if got := decide(&in); got.Do != ActWait || !strings.Contains(got.Message, "ns/r") {
		t.Errorf("a new key with one slot free and a renewal waiting: %+v, want it to wait behind ns/r", got)
	}
}

// TestRotationStatus: the renewal time, RotationBlocked for a renewBefore
// only the issue rules out, and PreviousKeyInUse, on a fake clock.
func TestRotationStatus(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC))
	issued := time.Date(2026, 1, 31, 12, 0, 0, 0, time.UTC)
	expires := time.Date(2026, 2, 28, 12, 0, 0, 0, time.UTC) // clamped: 28 days
	k := keyWith(keymintv1alpha1.Expiration{Months: new(int32(1))}, keymintv1alpha1.APIKeyStatus{})
	k.Spec.Rotation = &keymintv1alpha1.Rotation{}
	setActive(k, issued, "k", keysecret.Issue{KeyID: "kid_2", IssuedAt: issued, ExpiresAt: &expires})

	setRotation(k, clk.Now())
	if want := expires.Add(-(28 * 24 * time.Hour / 3).Truncate(time.Second)); k.Status.RenewalTime == nil || !k.Status.RenewalTime.Time.Equal(want) {
		t.Errorf("default renewBefore: renewalTime = %v, want %v (a third of the lifetime before the expiry)", k.Status.RenewalTime, want)
	}

	// 15 days passes admission (15.5 a month) but is more than half of 28.
	k.Spec.Rotation.RenewBefore = &metav1.Duration{Duration: 360 * time.Hour}
	setRotation(k, clk.Now())
	c := apimeta.FindStatusCondition(k.Status.Conditions, keymintv1alpha1.ConditionRotationBlocked)
	if k.Status.RenewalTime != nil || c == nil || c.Reason != keymintv1alpha1.ReasonInvalidRenewBefore || !strings.Contains(c.Message, "at most 336h0m0s") {
		t.Fatalf("renewBefore over half the lifetime: renewalTime %v, condition %+v", k.Status.RenewalTime, c)
	}
	if k.Status.ReadyReason() != keymintv1alpha1.ReasonActive {
		t.Errorf("an invalid renewBefore made the key not Ready: %s", k.Status.ReadyReason())
	}
	k.Spec.Rotation.RenewBefore.Duration = 240 * time.Hour
	setRotation(k, clk.Now())
	if apimeta.FindStatusCondition(k.Status.Conditions, keymintv1alpha1.ConditionRotationBlocked) != nil || k.Status.RenewalTime == nil {
		t.Errorf("a valid renewBefore left RotationBlocked, or no renewal time")
	}

	k.Status.PreviousKey = &keymintv1alpha1.PreviousKey{KeyID: "kid_1", ExpiresAt: metav1.NewTime(issued.Add(240 * time.Hour)),
		LastUsedAt: &metav1.Time{Time: issued.Add(keymintv1alpha1.PreviousKeyInUseAfter)}}
	setRotation(k, clk.Now())
	if apimeta.FindStatusCondition(k.Status.Conditions, keymintv1alpha1.ConditionPreviousKeyInUse) != nil {
		t.Errorf("a use of the previous key within 2 minutes of its successor is in use")
	}
	k.Status.PreviousKey.LastUsedAt = &metav1.Time{Time: issued.Add(keymintv1alpha1.PreviousKeyInUseAfter + time.Second)}
	setRotation(k, clk.Now())
	if c := apimeta.FindStatusCondition(k.Status.Conditions, keymintv1alpha1.ConditionPreviousKeyInUse); c == nil || !strings.Contains(c.Message, "kid_1") {
		t.Errorf("a use of the previous key 2 minutes after its successor: PreviousKeyInUse %+v", c)
	}
	clk.SetTime(issued.Add(240 * time.Hour))
	setRotation(k, clk.Now())
	if k.Status.PreviousKey != nil || apimeta.FindStatusCondition(k.Status.Conditions, keymintv1alpha1.ConditionPreviousKeyInUse) != nil {
		t.Errorf("a previous key past its expiry is still in the status")
	}
}

// TestARotatingKeyLooksAgainAtItsRenewalAndItsPreviousKeysExpiry: the
// requeue wakes the key at its renewal time and at its previous key's
// expiry, whichever comes first.
func TestARotatingKeyLooksAgainAtItsRenewalAndItsPreviousKeysExpiry(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	k := keyWith(keymintv1alpha1.Expiration{Months: new(int32(3))}, keymintv1alpha1.APIKeyStatus{})
	exp := now.AddDate(0, 3, 0)
	setActive(k, now, "k", keysecret.Issue{KeyID: "kid", IssuedAt: now, ExpiresAt: &exp})
	k.Status.RenewalTime = &metav1.Time{Time: now.Add(90 * time.Minute)}
	if got := requeueAfter(k, now, 24*time.Hour, time.Hour); got != 90*time.Minute {
		t.Errorf("requeue %v, want the renewal time, 90m", got)
	}
	k.Status.PreviousKey = &keymintv1alpha1.PreviousKey{KeyID: "old", ExpiresAt: metav1.NewTime(now.Add(10 * time.Minute))}
	if got := requeueAfter(k, now, 24*time.Hour, time.Hour); got != 10*time.Minute {
		t.Errorf("requeue %v, want the previous key's expiry, 10m", got)
	}
}

// TestABlockedRenewalNoLongerWantedIsNotBlocked: RotationBlocked for want
// of a slot stays while the renewal is due or requested, and goes when it
// is neither (spec.rotation removed, no request).
func TestABlockedRenewalNoLongerWantedIsNotBlocked(t *testing.T) {
	issued := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	expires := time.Date(2026, 4, 1, 12, 0, 0, 0, time.UTC)
	now := time.Date(2026, 3, 20, 12, 0, 0, 0, time.UTC) // past a 336h renewal time
	k := keyWith(keymintv1alpha1.Expiration{Months: new(int32(3))}, keymintv1alpha1.APIKeyStatus{})
	k.Spec.Rotation = &keymintv1alpha1.Rotation{RenewBefore: &metav1.Duration{Duration: 336 * time.Hour}}
	setActive(k, issued, "k", keysecret.Issue{KeyID: "kid", IssuedAt: issued, ExpiresAt: &expires})
	setRotationBlocked(k, now, "m")
	setRotation(k, now)
	if !renewalWaiting(k) {
		t.Fatalf("a due renewal's RotationBlocked went away")
	}
	k.Spec.Rotation = nil
	setRotation(k, now)
	if apimeta.FindStatusCondition(k.Status.Conditions, keymintv1alpha1.ConditionRotationBlocked) != nil {
		t.Errorf("RotationBlocked stayed after spec.rotation was removed")
	}
}

// TestASuccessorsLifetime: a renewal's successor gets a new lifetime of
// months from its issue (clamped like a first issue), the same date for
// at, and none for never.
func TestASuccessorsLifetime(t *testing.T) {
	issued := time.Date(2026, 1, 31, 10, 0, 0, 0, time.UTC)
	date := time.Date(2027, 6, 30, 0, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name string
		exp  keymintv1alpha1.Expiration
		want *time.Time
	}{
		{"months, from the successor's issue, clamped", keymintv1alpha1.Expiration{Months: new(int32(1))}, new(time.Date(2026, 2, 28, 10, 0, 0, 0, time.UTC))},
		{"at: the same date", at(date), &date},
		{"never: never", never(), nil},
	} {
		got := lifetimeFrom(keyWith(tt.exp, keymintv1alpha1.APIKeyStatus{}), issued)
		if (got == nil) != (tt.want == nil) || got != nil && !got.Equal(*tt.want) {
			t.Errorf("%s: expires %v, want %v", tt.name, got, tt.want)
		}
	}
}
