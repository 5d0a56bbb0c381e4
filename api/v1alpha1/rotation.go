package v1alpha1

import (
	"fmt"
	"time"
)

// The rotation's fixed numbers, part of its contract.
const (
	// MinRenewBefore is the shortest spec.rotation.renewBefore.
	MinRenewBefore = time.Hour
	// DefaultRotateGrace is how long the previous key works after an
	// in-place rotation without keymint.io/rotate-grace.
	DefaultRotateGrace = time.Hour
	// PreviousKeyInUseAfter is how long after its successor was written a
	// use of the previous key makes PreviousKeyInUse True: the kubelet
	// refreshes a mounted Secret within about a minute, and a workload
	// that re-reads the file has moved by then.
	PreviousKeyInUseAfter = 2 * time.Minute
)

// RenewalAt is when the issued key renews itself: expiresAt minus
// spec.rotation.renewBefore (one third of the lifetime by default). It is
// nil for a key without rotation or expiry, and err says which limit an
// explicit renewBefore breaks: it must be at most half of the lifetime,
// which only the issue tells.
func (k *APIKey) RenewalAt() (*time.Time, error) {
	st := &k.Status
	if k.Spec.Rotation == nil || k.Spec.Expiration.Months == nil || st.IssuedAt == nil || st.ExpiresAt == nil {
		return nil, nil
	}
	lifetime := st.ExpiresAt.Sub(st.IssuedAt.Time)
	before := (lifetime / 3).Truncate(time.Second)
	if rb := k.Spec.Rotation.RenewBefore; rb != nil {
		before = rb.Duration
	}
	if before < MinRenewBefore || before > lifetime/2 {
		return nil, fmt.Errorf("spec.rotation.renewBefore %s is not between %s and half of key %s's lifetime (%s, from %s to %s): at most %s",
			before, MinRenewBefore, st.KeyID, lifetime, st.IssuedAt.UTC().Format(time.RFC3339), st.ExpiresAt.UTC().Format(time.RFC3339), lifetime/2)
	}
	at := st.ExpiresAt.Add(-before)
	return &at, nil
}

// PreviousValidAt reports whether the previous key still works at now.
func (k *APIKey) PreviousValidAt(now time.Time) bool {
	p := k.Status.PreviousKey
	return p != nil && now.Before(p.ExpiresAt.Time)
}
