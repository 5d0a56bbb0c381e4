package controllers

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/handler"

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
//
// The deletion is a pass of its own: when many keys expire at once, every
// Secret goes first, one request each, and the slots, Events and statuses
// follow at low priority, behind the deletions still queued.
func (r *APIKeyReconciler) expire(ctx context.Context, key *keymintv1alpha1.APIKey) (ctrl.Result, error) {
	expiresAt := knownExpiry(key)
	deleted, err := r.deleteOwnedSecret(ctx, key)
	if err != nil {
		return ctrl.Result{}, err
	}
	if deleted {
		metrics.ExpiryLag.Observe(r.Clock.Since(*expiresAt).Seconds())
		return ctrl.Result{RequeueAfter: time.Millisecond, Priority: ptr.To(handler.LowPriority)}, nil
	}
	if err := r.revokeOwnerAccess(ctx, key); err != nil {
		return ctrl.Result{}, err
	}
	// An Active key took its slot long before it expires: the cache has it.
	if err := r.releaseSlots(ctx, key, r.Client); err != nil {
		return ctrl.Result{}, err
	}
	keyID := keyIDText(key)
	if err := r.record(ctx, key, corev1.EventTypeNormal, keymintv1alpha1.ReasonExpired, "key %s of user %s expired at %s",
		keyID, key.Spec.User, expiresAt.UTC().Format(time.RFC3339)); err != nil {
		return ctrl.Result{}, err
	}
	now := r.Clock.Now()
	setExpired(key, now, expiresAt, "key "+keyID+" expired at "+expiresAt.UTC().Format(time.RFC3339))
	return ctrl.Result{}, nil
}
