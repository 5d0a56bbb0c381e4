package verify

import (
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
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
	for _, tt := range []struct {
		name     string
		key      *keymintv1alpha1.APIKey
		scope    []string
		inSecret bool
		want     Reason
	}{
		{"active, in its Secret", key(keymintv1alpha1.PhaseActive, nil), nil, true, ""},
		{"active, a second before its expiry", key(keymintv1alpha1.PhaseActive, new(now.Add(time.Second))), nil, true, ""},
		{"active at its expiry: the controller has not run yet", key(keymintv1alpha1.PhaseActive, new(now)), nil, true, ReasonExpired},
		{"expired, Secret gone", key(keymintv1alpha1.PhaseExpired, new(now.Add(-time.Hour))), nil, false, ReasonExpired},
		{"suspended", key(keymintv1alpha1.PhaseSuspended, nil), nil, false, ReasonSuspended},
		{"switched off, status not yet written", inactive(keymintv1alpha1.PhaseActive, nil), nil, true, ReasonInactive},
		{"inactive", inactive(keymintv1alpha1.PhaseInactive, nil), nil, true, ReasonInactive},
		{"inactive at its expiry: expired", inactive(keymintv1alpha1.PhaseInactive, new(now)), nil, true, ReasonExpired},
		{"switched on, status not yet written", reactivated, nil, true, ""},
		{"no APIKey has it (gone, or replaced by a reissue)", nil, nil, false, ReasonUnknown},
		{"its APIKey is being deleted", deleting, nil, true, ReasonUnknown},
		{"its Secret was deleted", key(keymintv1alpha1.PhaseActive, nil), nil, false, ReasonUnknown},
		{"it lost its slot", key(keymintv1alpha1.PhasePending, nil), nil, true, ReasonUnknown},
		{"in scope", key(keymintv1alpha1.PhaseActive, nil), []string{"team-b", "team-a"}, true, ""},
		{"out of scope", key(keymintv1alpha1.PhaseActive, nil), []string{"team-b"}, true, ReasonWrongNamespace},
		{"out of scope and expired: the scope is told first", key(keymintv1alpha1.PhaseExpired, new(now)), []string{"team-b"}, false, ReasonWrongNamespace},
		{"an empty scope accepts none", key(keymintv1alpha1.PhaseActive, nil), []string{}, true, ReasonWrongNamespace},
	} {
		if got := decide(now, tt.scope, tt.key, tt.inSecret); got != tt.want {
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
