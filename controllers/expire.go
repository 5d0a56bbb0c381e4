package controllers

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/expiry"
	"github.com/keymint/keymint/internal/metrics"
)

// isDue reports whether key has reached its expiry at now.
func (r *APIKeyReconciler) isDue(key *keymintv1alpha1.APIKey, now time.Time) bool {
	return expiry.Due(now, knownExpiry(key))
}

// expire deletes the key's Secret, frees its slot and records it Expired.
// The APIKey stays, as a record, until someone deletes it.
func (r *APIKeyReconciler) expire(ctx context.Context, key *keymintv1alpha1.APIKey) error {
	if err := r.deleteOwnedSecret(ctx, key); err != nil {
		return err
	}
	// An Active key took its slot long before it expires: the cache has it.
	if err := r.releaseSlots(ctx, key, r.Client); err != nil {
		return err
	}
	expiresAt := knownExpiry(key)
	keyID := keyIDText(key)
	r.record(ctx, key, corev1.EventTypeNormal, keymintv1alpha1.ReasonExpired, "key %s of user %s expired at %s",
		keyID, key.Spec.User, expiresAt.UTC().Format(time.RFC3339))
	now := r.Clock.Now()
	metrics.ExpiryLag.Observe(now.Sub(*expiresAt).Seconds())
	setExpired(key, now, expiresAt, "key "+keyID+" expired at "+expiresAt.UTC().Format(time.RFC3339))
	return nil
}
