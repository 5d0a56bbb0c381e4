package controllers

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/keysecret"
	"github.com/keymint/keymint/internal/slots"
)

var created = time.Date(2026, 1, 31, 9, 0, 0, 0, time.UTC)

func keyWith(exp keymintv1alpha1.Expiration, st keymintv1alpha1.APIKeyStatus) *keymintv1alpha1.APIKey {
	k := newKey("ns", "k", "alice", exp)
	k.CreationTimestamp = metav1.NewTime(created)
	k.Status = st
	return k
}

func mtime(t time.Time) *metav1.Time { m := metav1.NewTime(t); return &m }

func TestInvalidAt(t *testing.T) {
	for _, tt := range []struct {
		name string
		exp  keymintv1alpha1.Expiration
		want bool
	}{
		{"before creation", at(created.Add(-time.Second)), true},
		{"at creation", at(created), true},
		{"after creation", at(created.Add(time.Second)), false},
		{"months", months(1), false},
		{"never", never(), false},
	} {
		if got := invalidAt(keyWith(tt.exp, keymintv1alpha1.APIKeyStatus{})); got != tt.want {
			t.Errorf("%s: invalidAt = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestIssuance(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(time.Date(2026, 1, 31, 10, 0, 0, 999, time.UTC))
	firstIssue := time.Date(2026, 1, 31, 10, 0, 0, 0, time.UTC)
	recorded := time.Date(2026, 2, 28, 10, 0, 0, 0, time.UTC)
	atTime := time.Date(2027, 6, 1, 0, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name       string
		key        *keymintv1alpha1.APIKey
		wantIssued time.Time
		wantExpiry *time.Time
	}{
		{"first issue, months: from now, clamped, in seconds", keyWith(months(1), keymintv1alpha1.APIKeyStatus{}), firstIssue, &recorded},
		{"first issue, at", keyWith(at(atTime), keymintv1alpha1.APIKeyStatus{}), firstIssue, &atTime},
		{"first issue, never", keyWith(never(), keymintv1alpha1.APIKeyStatus{}), firstIssue, nil},
		{"reissue keeps the first issue's times", keyWith(months(1), keymintv1alpha1.APIKeyStatus{
			IssuedAt: mtime(firstIssue.Add(-24 * time.Hour)), ExpiresAt: mtime(recorded),
		}), firstIssue.Add(-24 * time.Hour), &recorded},
		{"reissue of a never-expiring key", keyWith(never(), keymintv1alpha1.APIKeyStatus{IssuedAt: mtime(firstIssue)}), firstIssue, nil},
	} {
		issued, exp := issuance(tt.key, clk.Now())
		if !issued.Equal(tt.wantIssued) {
			t.Errorf("%s: issuedAt = %s, want %s", tt.name, issued, tt.wantIssued)
		}
		if (exp == nil) != (tt.wantExpiry == nil) || (exp != nil && !exp.Equal(*tt.wantExpiry)) {
			t.Errorf("%s: expiresAt = %v, want %v", tt.name, exp, tt.wantExpiry)
		}
	}
}

func TestIssueEvent(t *testing.T) {
	for _, tt := range []struct{ prev, now, want string }{
		{"", "kid_a", keymintv1alpha1.ReasonIssued},        // first issue, or adopting after a crash before status
		{"kid_a", "kid_a", ""},                             // nothing changed: no Event
		{"kid_a", "kid_b", keymintv1alpha1.ReasonReissued}, // the Secret was deleted and minted again
	} {
		if got := issueEvent(tt.prev, tt.now); got != tt.want {
			t.Errorf("issueEvent(%q, %q) = %q, want %q", tt.prev, tt.now, got, tt.want)
		}
	}
}

func TestWaitMessage(t *testing.T) {
	if got, want := waitMessage("bob", []string{"a/x", "b/y"}, 2, nil),
		"user bob already holds 2 active keys (a/x, b/y); this key is issued when one of them is deleted or expires"; got != want {
		t.Errorf("full: %q", got)
	}
	ahead := []slots.Candidate{waiter("w1", created), waiter("w2", created.Add(time.Minute))}
	if got, want := waitMessage("bob", []string{"a/x"}, 2, ahead[:1]),
		"user bob holds 1 of 2 active keys (a/x); older keys of the user wait ahead of this one: ns/w1"; got != want {
		t.Errorf("queue: %q", got)
	}
	// The demo's first message once named nothing: it names the keys ahead.
	if got, want := waitMessage("alice", nil, 2, ahead),
		"user alice holds 0 of 2 active keys (none); older keys of the user wait ahead of this one: ns/w1, ns/w2"; got != want {
		t.Errorf("queue behind two: %q", got)
	}
}

// TestStatusSettersAsKstatusReadsThem pins what GitOps tools see of each state.
func TestStatusSettersAsKstatusReadsThem(t *testing.T) {
	now := created.Add(time.Hour)
	exp := now.Add(time.Hour)
	for _, tt := range []struct {
		name string
		set  func(*keymintv1alpha1.APIKey)
		want status.Status
	}{
		{"active", func(k *keymintv1alpha1.APIKey) {
			setActive(k, now, "k", keysecret.Issue{KeyID: "kid_x", IssuedAt: now})
		}, status.CurrentStatus},
		{"waiting for a slot", func(k *keymintv1alpha1.APIKey) { setWaiting(k, now, "m") }, status.InProgressStatus},
		{"invalid expiration", func(k *keymintv1alpha1.APIKey) { setStalled(k, now, keymintv1alpha1.ReasonInvalidExpiration, "m") }, status.FailedStatus},
		{"secret conflict", func(k *keymintv1alpha1.APIKey) { setStalled(k, now, keymintv1alpha1.ReasonSecretConflict, "m") }, status.FailedStatus},
		{"expired", func(k *keymintv1alpha1.APIKey) { setExpired(k, now, &exp, "m") }, status.FailedStatus},
		{"suspended", func(k *keymintv1alpha1.APIKey) { setSuspended(k, now, "m") }, status.FailedStatus},
		{"access denied", func(k *keymintv1alpha1.APIKey) { setStalled(k, now, keymintv1alpha1.ReasonAccessDenied, "m") }, status.FailedStatus},
		{"retrying before issue", func(k *keymintv1alpha1.APIKey) { setRetrying(k, now, "timeout") }, status.InProgressStatus},
		{"waiting, then active", func(k *keymintv1alpha1.APIKey) {
			setWaiting(k, now, "m")
			setActive(k, now, "k", keysecret.Issue{KeyID: "kid_x", IssuedAt: now})
		}, status.CurrentStatus},
		{"active and expiring soon: still Current", func(k *keymintv1alpha1.APIKey) {
			setActive(k, now, "k", keysecret.Issue{KeyID: "kid_x", IssuedAt: now, ExpiresAt: &now})
			setExpiringSoon(k, now, time.Hour)
		}, status.CurrentStatus},
		{"inactive: deliberate, so Current", func(k *keymintv1alpha1.APIKey) {
			k.Spec.State = keymintv1alpha1.StateInactive
			setActive(k, now, "k", keysecret.Issue{KeyID: "kid_x", IssuedAt: now})
		}, status.CurrentStatus},
		{"inactive, then an error: still Current", func(k *keymintv1alpha1.APIKey) {
			k.Spec.State = keymintv1alpha1.StateInactive
			setActive(k, now, "k", keysecret.Issue{KeyID: "kid_x", IssuedAt: now})
			setRetrying(k, now, "timeout")
		}, status.CurrentStatus},
		{"active, then an error: still Current", func(k *keymintv1alpha1.APIKey) {
			setActive(k, now, "k", keysecret.Issue{KeyID: "kid_x", IssuedAt: now})
			setRetrying(k, now, "timeout")
		}, status.CurrentStatus},
	} {
		k := keyWith(never(), keymintv1alpha1.APIKeyStatus{})
		k.Generation = 1
		tt.set(k)
		k.Status.ObservedGeneration = 1
		raw, err := runtime.DefaultUnstructuredConverter.ToUnstructured(k)
		if err != nil {
			t.Fatal(err)
		}
		res, err := status.Compute(&unstructured.Unstructured{Object: raw})
		if err != nil {
			t.Fatal(err)
		}
		if res.Status != tt.want {
			t.Errorf("%s: kstatus %s, want %s", tt.name, res.Status, tt.want)
		}
	}
}

func issueOf(id string) keysecret.Issue { return keysecret.Issue{KeyID: id, IssuedAt: created} }

func TestRecordIDs(t *testing.T) {
	k := keyWith(never(), keymintv1alpha1.APIKeyStatus{KeyID: "kid_a"})
	k.UID, k.ResourceVersion = "uid-1", "42"
	for reason, want := range map[string]string{
		keymintv1alpha1.ReasonIssued:    "keymint/uid-1/Issued/kid_a",
		keymintv1alpha1.ReasonReissued:  "keymint/uid-1/Reissued/kid_a",
		keymintv1alpha1.ReasonSuspended: "keymint/uid-1/Suspended/kid_a",
		keymintv1alpha1.ReasonExpired:   "keymint/uid-1/Expired",
		keymintv1alpha1.ReasonDeleted:   "keymint/uid-1/Deleted",
		// Can recur: once per version of the APIKey it was seen on.
		keymintv1alpha1.ReasonKeyLimitReached: "keymint/uid-1/KeyLimitReached/rv42",
		keymintv1alpha1.ReasonAccessDenied:    "keymint/uid-1/AccessDenied/rv42",
		keymintv1alpha1.ReasonUntrustedSecret: "keymint/uid-1/UntrustedSecret/rv42",
	} {
		if got := recordID(k, reason, ""); got != want {
			t.Errorf("recordID(%s) = %q, want %q", reason, got, want)
		}
	}
	// Once per object it is about: each planted Secret is a record.
	if got, want := recordID(k, keymintv1alpha1.ReasonUntrustedSecret, "secret-uid"), "keymint/uid-1/UntrustedSecret/secret-uid"; got != want {
		t.Errorf("recordID about an object = %q, want %q", got, want)
	}
}

func TestExpiresShown(t *testing.T) {
	issued := keyWith(months(1), keymintv1alpha1.APIKeyStatus{ExpiresAt: &metav1.Time{Time: time.Date(2027, 2, 28, 10, 0, 0, 0, time.UTC)}})
	for name, tc := range map[string]struct {
		key  *keymintv1alpha1.APIKey
		want string
	}{
		"issued":                 {issued, "2027-02-28T10:00:00Z"},
		"never":                  {keyWith(never(), keymintv1alpha1.APIKeyStatus{}), "never"},
		"months, not yet issued": {keyWith(months(3), keymintv1alpha1.APIKeyStatus{}), ""},
	} {
		if got := expiresShown(tc.key); got != tc.want {
			t.Errorf("%s: expiresShown = %q, want %q", name, got, tc.want)
		}
	}
}
