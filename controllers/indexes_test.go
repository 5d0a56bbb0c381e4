package controllers

import (
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/slots"
)

// TestIndexWaitingUser: only keys that wait for a slot are indexed, by the
// hash their user's slots carry.
func TestIndexWaitingUser(t *testing.T) {
	aliceSlots := []string{slots.UserHash("alice")}
	for _, tt := range []struct {
		name string
		set  func(*keymintv1alpha1.APIKey)
		want []string
	}{
		{"new", func(*keymintv1alpha1.APIKey) {}, aliceSlots},
		{"waiting for a slot", func(k *keymintv1alpha1.APIKey) {
			setWaiting(k, created, "m")
		}, aliceSlots},
		{"active", func(k *keymintv1alpha1.APIKey) { setActive(k, created, "k", issueOf("kid_x")) }, nil},
		{"expired", func(k *keymintv1alpha1.APIKey) { setExpired(k, created, nil, "m") }, nil},
		{"stalled", func(k *keymintv1alpha1.APIKey) {
			setStalled(k, created, keymintv1alpha1.ReasonSecretConflict, "m")
		}, nil},
		{"being deleted", func(k *keymintv1alpha1.APIKey) { k.DeletionTimestamp = &metav1.Time{Time: created} }, nil},
	} {
		k := newKey("ns", "k", "alice", never())
		tt.set(k)
		if got := indexWaitingUser(k); !slices.Equal(got, tt.want) {
			t.Errorf("%s: indexed as %v, want %v", tt.name, got, tt.want)
		}
	}
}
