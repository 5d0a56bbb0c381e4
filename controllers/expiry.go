package controllers

import (
	"time"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/expiry"
)

// Expiry's decisions and requeue math. internal/expiry holds the calendar
// arithmetic; this file decides with it. Every function takes now.

// conflictRetry is how often a key blocked by someone else's Secret looks
// again: that Secret is not in the cache, so no event says it went away.
const conflictRetry = time.Minute

// issuance is the issue time and expiry of a key minted at now. A reissue
// keeps the first issue's times: it never extends a key's life.
func issuance(key *keymintv1alpha1.APIKey, now time.Time) (issuedAt time.Time, expiresAt *time.Time) {
	if key.Status.IssuedAt != nil {
		return key.Status.IssuedAt.Time, key.KnownExpiry()
	}
	// Status and Secret hold seconds; so does the expiry computed here.
	issuedAt = now.UTC().Truncate(time.Second)
	return issuedAt, lifetimeFrom(key, issuedAt)
}

// lifetimeFrom is the expiry of a key of key's spec issued at issuedAt: a
// first issue's, or a renewal's successor's (a new lifetime of months; the
// same date; never).
func lifetimeFrom(key *keymintv1alpha1.APIKey, issuedAt time.Time) *time.Time {
	exp := key.Spec.Expiration
	switch {
	case exp.Months != nil:
		t := expiry.AddMonths(issuedAt, int(*exp.Months))
		return &t
	case exp.At != nil:
		t := exp.At.UTC()
		return &t
	}
	return nil
}

// DefaultExpiryWarning is --expiry-warning's default: a key is
// ExpiringSoon from 14 days before its expiry.
const DefaultExpiryWarning = 14 * 24 * time.Hour

// requeueAfter is the last step of the chain: when to look at key again,
// from the state a pass left it in. A key that may still expire, or whose
// access may change, is looked at by its expiry, by the opening of its
// warning window, and by limit at the latest; one blocked by someone
// else's Secret every conflictRetry; an Expired key or an invalid spec
// never by the clock.
func requeueAfter(key *keymintv1alpha1.APIKey, now time.Time, limit, warning time.Duration) time.Duration {
	switch key.Status.ReadyReason() {
	case keymintv1alpha1.ReasonExpired, keymintv1alpha1.ReasonInvalidExpiration:
		return 0
	case keymintv1alpha1.ReasonSecretConflict:
		return conflictRetry
	}
	exp := key.KnownExpiry()
	if exp != nil && key.Status.Phase.Issued() {
		if opens := exp.Add(-warning); now.Before(opens) {
			exp = &opens
		}
	}
	// A rotating key looks again at its renewal time, and a renewed one
	// when its previous key is due for retirement.
	for _, t := range rotationTimes(key) {
		if now.Before(t) && (exp == nil || t.Before(*exp)) {
			exp = &t
		}
	}
	if d := expiry.RequeueAfter(now, exp, limit); d > 0 {
		return d
	}
	return limit
}

// rotationTimes are the times the rotation of an issued key acts at.
func rotationTimes(key *keymintv1alpha1.APIKey) []time.Time {
	if !key.Status.Phase.Issued() {
		return nil
	}
	var out []time.Time
	if t := key.Status.RenewalTime; t != nil {
		out = append(out, t.Time)
	}
	if p := key.Status.PreviousKey; p != nil {
		out = append(out, p.ExpiresAt.Time)
	}
	return out
}

// recheckLimit bounds every wait: by then a key's expiry and access are
// looked at again even if no event came.
func (r *APIKeyReconciler) recheckLimit() time.Duration {
	return min(r.MaxRequeue, r.AccessRecheck)
}

// requeueFrom is a requeue after d counted from a moment that is elapsed
// ago: what remains of d, but at least a millisecond, since no wait means
// no requeue.
func requeueFrom(d, elapsed time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	return max(d-elapsed, time.Millisecond)
}
