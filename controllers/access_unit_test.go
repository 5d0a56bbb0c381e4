package controllers

import (
	"slices"
	"testing"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
)

func TestAccessGroups(t *testing.T) {
	for _, tt := range []struct {
		name      string
		requester *keymintv1alpha1.Requester
		want      []string
	}{
		{"no record", nil, []string{"system:authenticated"}},
		{"created by the user: the recorded groups",
			&keymintv1alpha1.Requester{Username: "alice", Groups: []string{"team-a", "system:authenticated"}},
			[]string{"system:authenticated", "team-a"}},
		{"created by a delegate: not the delegate's groups",
			&keymintv1alpha1.Requester{Username: "admin", Groups: []string{"system:masters"}},
			[]string{"system:authenticated"}},
	} {
		k := newKey("ns", "k", "alice", never())
		k.Spec.Requester = tt.requester
		if got := accessGroups(k); !slices.Equal(got, tt.want) {
			t.Errorf("%s: accessGroups = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestSuspendedWaitsForAccessNotForASlot(t *testing.T) {
	k := keyWith(never(), keymintv1alpha1.APIKeyStatus{})
	setActive(k, created, "k", issueOf("kid_x"))
	setSuspended(k, created, "m")
	if k.Status.Phase != keymintv1alpha1.PhaseSuspended || readyReason(k) != keymintv1alpha1.ReasonAccessRemoved {
		t.Fatalf("phase %s, reason %s", k.Status.Phase, readyReason(k))
	}
	if isWaiting(k) {
		t.Fatal("a suspended key must wait for access, not for a slot")
	}
}
