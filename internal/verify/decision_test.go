package verify

import (
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/keysecret"
)

// TestDecide: the verdict on a found key, with a fake clock: expiry is
// exact at the door, whatever the phase says.
func TestDecide(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	now := clk.Now()
	key := func(phase keymintv1alpha1.Phase, expires *time.Time) *keymintv1alpha1.APIKey {
		k := &keymintv1alpha1.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "k"},
			Status: keymintv1alpha1.APIKeyStatus{Phase: phase}}
		if expires != nil {
			k.Status.ExpiresAt = &metav1.Time{Time: *expires}
		}
		return k
	}
	inactive := func(phase keymintv1alpha1.Phase, expires *time.Time) *keymintv1alpha1.APIKey {
		k := key(phase, expires)
		k.Spec.State = keymintv1alpha1.StateInactive
		return k
	}
	reactivated := key(keymintv1alpha1.PhaseInactive, nil) // spec Active, status not yet written
	deleting := key(keymintv1alpha1.PhaseActive, nil)
	deleting.DeletionTimestamp = &metav1.Time{Time: now}
	renewed := func(prevExpires time.Time) *keymintv1alpha1.APIKey {
		k := key(keymintv1alpha1.PhaseActive, new(now.AddDate(0, 3, 0)))
		k.Status.PreviousKey = &keymintv1alpha1.PreviousKey{KeyID: "old", KeyHash: "sha256:00", ExpiresAt: metav1.NewTime(prevExpires)}
		return k
	}
	for _, tt := range []struct {
		name     string
		key      *keymintv1alpha1.APIKey
		scope    []string
		previous bool
		inSecret bool
		want     Reason
	}{
		{"a previous key before its expiry", renewed(now.Add(time.Second)), nil, true, true, ""},
		{"a previous key at its expiry: the controller has not retired it yet", renewed(now), nil, true, true, ReasonExpired},
		{"the current key while the previous one is retired", renewed(now), nil, false, true, ""},
		{"a previous key whose Secret no longer vouches for it", renewed(now.Add(time.Hour)), nil, true, false, ReasonUnknown},
		{"active, in its Secret", key(keymintv1alpha1.PhaseActive, nil), nil, false, true, ""},
		{"active, a second before its expiry", key(keymintv1alpha1.PhaseActive, new(now.Add(time.Second))), nil, false, true, ""},
		{"active at its expiry: the controller has not run yet", key(keymintv1alpha1.PhaseActive, new(now)), nil, false, true, ReasonExpired},
		{"expired, Secret gone", key(keymintv1alpha1.PhaseExpired, new(now.Add(-time.Hour))), nil, false, false, ReasonExpired},
		{"suspended", key(keymintv1alpha1.PhaseSuspended, nil), nil, false, false, ReasonSuspended},
		{"switched off, status not yet written", inactive(keymintv1alpha1.PhaseActive, nil), nil, false, true, ReasonInactive},
		{"inactive", inactive(keymintv1alpha1.PhaseInactive, nil), nil, false, true, ReasonInactive},
		{"inactive at its expiry: expired", inactive(keymintv1alpha1.PhaseInactive, new(now)), nil, false, true, ReasonExpired},
		{"switched on, status not yet written", reactivated, nil, false, true, ""},
		{"no APIKey has it (gone, or replaced by a reissue)", nil, nil, false, false, ReasonUnknown},
		{"its APIKey is being deleted", deleting, nil, false, true, ReasonUnknown},
		{"its Secret was deleted", key(keymintv1alpha1.PhaseActive, nil), nil, false, false, ReasonUnknown},
		{"it lost its slot", key(keymintv1alpha1.PhasePending, nil), nil, false, true, ReasonUnknown},
		{"in scope", key(keymintv1alpha1.PhaseActive, nil), []string{"team-b", "team-a"}, false, true, ""},
		{"out of scope", key(keymintv1alpha1.PhaseActive, nil), []string{"team-b"}, false, true, ReasonWrongNamespace},
		{"out of scope and expired: the scope is told first", key(keymintv1alpha1.PhaseExpired, new(now)), []string{"team-b"}, false, false, ReasonWrongNamespace},
		{"an empty scope accepts none", key(keymintv1alpha1.PhaseActive, nil), []string{}, false, true, ReasonWrongNamespace},
	} {
		if got := decide(now, tt.scope, tt.key, tt.previous, tt.inSecret); got != tt.want {
			t.Errorf("%s: decide = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestParseScope(t *testing.T) {
	for path, want := range map[string][]string{
		"/verify":                         nil,
		"/verify/":                        nil,
		"/verify/all":                     nil,
		"/verify/all/api/v1/things":       nil,
		"/verify/ns/team-a":               {"team-a"},
		"/verify/ns/team-a,team-b":        {"team-a", "team-b"},
		"/verify/ns/team-a/ns/other/x":    {"team-a"}, // Envoy appends the client's path: it never widens
		"/verify/ns/team-a,team-b/api/v1": {"team-a", "team-b"},
	} {
		got, ok := ParseScope(path)
		if !ok || (got == nil) != (want == nil) || !slices.Equal(got, want) {
			t.Errorf("ParseScope(%q) = %#v, %v, want %#v", path, got, ok, want)
		}
	}
	// Typos and look-alikes are refused, never read as every namespace.
	for _, path := range []string{
		"/verify/NS/default", "/verify/namespaces/default", "/verify/nsteam-b", "/verify/ns", "/verify/ns/",
		"/verify/ns/team-a,,team-b", "/verify/ns/Team-A", "/verify/original/path", "/verify/nsx/a", "/verify/allx", "/verifyx",
	} {
		if got, ok := ParseScope(path); ok {
			t.Errorf("ParseScope(%q) = %#v, accepted", path, got)
		}
	}
}

func TestPresentedKey(t *testing.T) {
	for _, tt := range []struct{ authorization, apiKey, want string }{
		{"Bearer kmk_a", "", "kmk_a"},
		{"bearer  kmk_a ", "", "kmk_a"},
		{"", "kmk_b", "kmk_b"},
		{"Basic dXNlcjpwYXNz", "kmk_b", "kmk_b"},
		{"Bearer kmk_a", "kmk_b", "kmk_a"},
		{"", "", ""},
	} {
		if got := presentedKey(tt.authorization, tt.apiKey); got != tt.want {
			t.Errorf("presentedKey(%q, %q) = %q, want %q", tt.authorization, tt.apiKey, got, tt.want)
		}
	}
}

// TestASecretVouchesForTheKeyItHoldsAndItsSignedPredecessor: a renewed
// Secret (revision 3, holding C, succeeding B) vouches for B as the
// status's previous key, and, before the status catches up (revision 2),
// as its current one; never for a key it does not name, nor for a previous
// key of another revision (a reissue revokes it).
func TestASecretVouchesForTheKeyItHoldsAndItsSignedPredecessor(t *testing.T) {
	renewed := keysecret.Issue{Revision: 3, KeyHash: "C", PreviousKeyHash: "B"}
	reissued := keysecret.Issue{Revision: 3, KeyHash: "C"}
	for _, tt := range []struct {
		name     string
		in       keysecret.Issue
		revision int64
		hash     string
		previous bool
		want     bool
	}{
		{"the key it holds", renewed, 3, "C", false, true},
		{"its predecessor, as the status's previous key", renewed, 3, "B", true, true},
		{"its predecessor, still the status's current key", renewed, 2, "B", false, true},
		{"its predecessor, with the status two revisions behind", renewed, 1, "B", false, false},
		{"a previous key of an earlier revision", renewed, 4, "B", true, false},
		{"a key it does not name", renewed, 3, "A", true, false},
		{"the key a reissue replaced", reissued, 2, "B", false, false},
		{"a previous key after a reissue", reissued, 3, "B", true, false},
	} {
		if got := vouches(tt.in, tt.revision, tt.hash, tt.previous); got != tt.want {
			t.Errorf("%s: vouches = %v, want %v", tt.name, got, tt.want)
		}
	}
}
