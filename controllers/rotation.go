package controllers

import (
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/slots"
)

// Rotation's checks and status, pure: they read the Input or the key and
// take now. renew.go carries them out.
//
// A renewed key's previous key is a live credential until its expiresAt,
// so while it works the APIKey holds two of its user's slots: the cap
// counts credentials, not APIKeys.

// previousKeyDue: a previous key at its expiry is retired and its slot
// freed; the verifier refuses it from that instant on its own clock.
func previousKeyDue(in *Input) (Plan, bool) {
	if in.Key.Status.PreviousKey == nil || in.Key.PreviousValidAt(in.Now) {
		return Plan{}, false
	}
	return Plan{Do: ActRetire}, true
}

// rotationRequested: an in-place rotation request not acted on yet renews
// the key at once, whatever its expiration. With a grace the previous key
// works on and needs a second slot; with none it is revoked at once.
func rotationRequested(in *Input) (Plan, bool) {
	req, ok := pendingRequest(in.Key)
	if !ok || !in.Key.Status.Phase.Issued() {
		return Plan{}, false
	}
	return renewOrBlock(in, Plan{Do: ActRenew, Request: req.at, Grace: req.grace})
}

// renewalDue: a key with spec.rotation renews at its renewal time, once
// the previous key of its last renewal is retired (a valid renewBefore is
// at most half the lifetime, so that is before).
func renewalDue(in *Input) (Plan, bool) {
	k := in.Key
	at, err := k.RenewalAt()
	if err != nil || at == nil || in.Now.Before(*at) || !k.Status.Phase.Issued() || k.PreviousValidAt(in.Now) {
		return Plan{}, false
	}
	return renewOrBlock(in, Plan{Do: ActRenew, Grace: k.Status.ExpiresAt.Sub(in.Now), Scheduled: true})
}

// renewOrBlock renews when the successor's previous key (kept for the
// grace) has a slot: one the key holds already, or a free one of its
// user's, which a renewal takes before any key waiting for its first issue.
func renewOrBlock(in *Input, renew Plan) (Plan, bool) {
	held := heldSlots(in)
	if renew.Grace <= 0 || slots.HeldCount(held, in.Key) >= 2 || len(held) < in.MaxKeys {
		return renew, true
	}
	return Plan{Do: ActBlockRotation, Reason: keymintv1alpha1.ReasonKeyLimitReached,
		Message: blockedMessage(in.Key, slots.HolderNames(held), in.MaxKeys)}, true
}

// surplusSlots: a key holds one slot, and a second while its previous key
// works; one more (a renewal that stopped before it wrote) is freed.
func surplusSlots(in *Input) (Plan, bool) {
	if slots.HeldCount(in.Slots, in.Key) <= slotsNeeded(in.Key, in.Now) {
		return Plan{}, false
	}
	return Plan{Do: ActRetire}, true
}

// slotsNeeded is how many slots an issued key holds at now.
func slotsNeeded(key *keymintv1alpha1.APIKey, now time.Time) int {
	if key.PreviousValidAt(now) {
		return 2
	}
	return 1
}

// request is an in-place rotation request read from the APIKey's
// annotations.
type request struct {
	at    string
	grace time.Duration
}

// pendingRequest returns the rotation request not acted on yet, if any.
// A malformed one (the keymint-self-service policy refuses them) is not a
// request.
func pendingRequest(key *keymintv1alpha1.APIKey) (request, bool) {
	at := key.Annotations[keymintv1alpha1.AnnotationRotateRequestedAt]
	if at == "" || at == key.Status.LastRotationRequest {
		return request{}, false
	}
	if _, err := time.Parse(time.RFC3339, at); err != nil {
		return request{}, false
	}
	req := request{at: at, grace: keymintv1alpha1.DefaultRotateGrace}
	if raw, ok := key.Annotations[keymintv1alpha1.AnnotationRotateGrace]; ok {
		d, err := time.ParseDuration(raw)
		if err != nil || d < 0 {
			return request{}, false
		}
		req.grace = d
	}
	return req, true
}

// setRotation sets the rotation status of an issued key at now: its
// renewal time, RotationBlocked for an invalid renewBefore, and
// PreviousKeyInUse. A blocked renewal for want of a slot is set by the
// pass that found it (setRotationBlocked) and kept until it renews.
func setRotation(key *keymintv1alpha1.APIKey, now time.Time) {
	st := &key.Status
	at, err := key.RenewalAt()
	st.RenewalTime = ptrTime(at)
	blocked := apimeta.FindStatusCondition(st.Conditions, keymintv1alpha1.ConditionRotationBlocked)
	switch {
	case err != nil:
		if blocked == nil || blocked.Reason != keymintv1alpha1.ReasonInvalidRenewBefore || blocked.Message != err.Error() {
			setCondition(key, now, keymintv1alpha1.ConditionRotationBlocked, metav1.ConditionTrue, keymintv1alpha1.ReasonInvalidRenewBefore, err.Error())
		}
	case blocked != nil && (blocked.Reason != keymintv1alpha1.ReasonKeyLimitReached || !renewalWanted(key, at, now)):
		apimeta.RemoveStatusCondition(&st.Conditions, keymintv1alpha1.ConditionRotationBlocked)
	}
	if !key.PreviousValidAt(now) {
		st.PreviousKey = nil
	}
	setPreviousKeyInUse(key, now)
}

// renewalWanted reports whether the key still wants a renewal at now: a
// request not acted on, or a renewal time (at) reached. A blocked renewal
// no longer wanted, such as one whose spec.rotation was removed, is not
// blocked any more.
func renewalWanted(key *keymintv1alpha1.APIKey, at *time.Time, now time.Time) bool {
	if _, ok := pendingRequest(key); ok {
		return true
	}
	return at != nil && !now.Before(*at)
}

// setRotationBlocked records a renewal that waits for a slot.
func setRotationBlocked(key *keymintv1alpha1.APIKey, now time.Time, message string) {
	c := apimeta.FindStatusCondition(key.Status.Conditions, keymintv1alpha1.ConditionRotationBlocked)
	if c != nil && c.Reason == keymintv1alpha1.ReasonKeyLimitReached && c.Message == message {
		return
	}
	setCondition(key, now, keymintv1alpha1.ConditionRotationBlocked, metav1.ConditionTrue, keymintv1alpha1.ReasonKeyLimitReached, message)
}

// setPreviousKeyInUse makes PreviousKeyInUse True while the previous key
// works and was used more than PreviousKeyInUseAfter after its successor
// was written (status.issuedAt); absent otherwise.
func setPreviousKeyInUse(key *keymintv1alpha1.APIKey, now time.Time) {
	st := &key.Status
	p := st.PreviousKey
	if p == nil || p.LastUsedAt == nil || st.IssuedAt == nil || !p.LastUsedAt.After(st.IssuedAt.Add(keymintv1alpha1.PreviousKeyInUseAfter)) {
		apimeta.RemoveStatusCondition(&st.Conditions, keymintv1alpha1.ConditionPreviousKeyInUse)
		return
	}
	if apimeta.IsStatusConditionTrue(st.Conditions, keymintv1alpha1.ConditionPreviousKeyInUse) {
		return
	}
	setCondition(key, now, keymintv1alpha1.ConditionPreviousKeyInUse, metav1.ConditionTrue, keymintv1alpha1.ReasonPreviousKeyInUse,
		fmt.Sprintf("previous key %s was last used at %s, after its successor %s was written to Secret %s at %s: a workload has not picked up the new key; the previous key stops working at %s",
			p.KeyID, p.LastUsedAt.UTC().Format(time.RFC3339), st.KeyID, st.SecretName, st.IssuedAt.UTC().Format(time.RFC3339), p.ExpiresAt.UTC().Format(time.RFC3339)))
}

// blockedMessage says why a renewal waits: the keys that hold the user's
// slots.
func blockedMessage(key *keymintv1alpha1.APIKey, holders []string, maxKeys int) string {
	return fmt.Sprintf("the renewal of key %s waits for a slot: user %s holds %d of %d (%s), and the previous key needs one while it keeps working; "+
		"it renews as soon as one frees, before any new key, or expires at %s", keyIDText(key), key.Spec.User, len(holders), maxKeys,
		strings.Join(holders, ", "), expiresShown(key))
}

// renewalWaiting reports whether key is issued and waits for a slot to
// renew: such a key is queued with the waiting keys, ahead of them.
func renewalWaiting(key *keymintv1alpha1.APIKey) bool {
	c := apimeta.FindStatusCondition(key.Status.Conditions, keymintv1alpha1.ConditionRotationBlocked)
	return key.Status.Phase.Issued() && c != nil && c.Status == metav1.ConditionTrue && c.Reason == keymintv1alpha1.ReasonKeyLimitReached
}

// previousOf is the previous key the renewal plan leaves when its
// successor is issued: the current key, working until its own expiry (a
// scheduled renewal) or for the grace from the successor's issue, never
// past its own expiry; nil for no grace.
func previousOf(key *keymintv1alpha1.APIKey, successorIssued time.Time, plan Plan) *keymintv1alpha1.PreviousKey {
	if plan.Grace <= 0 {
		return nil
	}
	exp := key.Status.ExpiresAt
	var until time.Time
	switch {
	case plan.Scheduled:
		until = exp.Time
	case exp != nil && exp.Time.Before(successorIssued.Add(plan.Grace)):
		until = exp.Time
	default:
		until = successorIssued.Add(plan.Grace)
	}
	return &keymintv1alpha1.PreviousKey{KeyID: key.Status.KeyID, KeyHash: key.Status.KeyHash,
		ExpiresAt: metav1.NewTime(until.UTC()), LastUsedAt: key.Status.LastUsedAt}
}

// renewed reports whether the key of after succeeded the key of before by
// a renewal (on schedule or on request), not a reissue: the request was
// acted on, or the previous key is before's.
func renewed(before, after *keymintv1alpha1.APIKeyStatus) bool {
	return after.LastRotationRequest != before.LastRotationRequest ||
		after.PreviousKey != nil && after.PreviousKey.KeyID == before.KeyID
}

// renewal is the transition of a key renewed into its Secret.
func renewal(before *keymintv1alpha1.APIKeyStatus, after *keymintv1alpha1.APIKey) transition {
	st := &after.Status
	prev := fmt.Sprintf("previous key %s was revoked at once", before.KeyID)
	if p := st.PreviousKey; p != nil {
		prev = fmt.Sprintf("previous key %s keeps working until %s", p.KeyID, p.ExpiresAt.UTC().Format(time.RFC3339))
	}
	how := "on schedule"
	if st.LastRotationRequest != before.LastRotationRequest {
		how = "on the rotation request of " + st.LastRotationRequest
	}
	return transition{eventType: corev1.EventTypeNormal, reason: keymintv1alpha1.ReasonRenewed,
		note: fmt.Sprintf("key %s of user %s renewed %s as key %s (revision %d) in Secret %s, %s; %s",
			before.KeyID, after.Spec.User, how, st.KeyID, st.Revision, st.SecretName, expiryText(after.KnownExpiry()), prev)}
}

// rotationTransitions are the rotation's Events and records beside an
// issue's: a previous key retired, a renewal blocked, a previous key still
// in use. Each is emitted on the change, never again while it holds.
func rotationTransitions(before *keymintv1alpha1.APIKeyStatus, after *keymintv1alpha1.APIKey) []transition {
	st := &after.Status
	var out []transition
	if p := before.PreviousKey; p != nil && (st.PreviousKey == nil || st.PreviousKey.KeyID != p.KeyID) {
		out = append(out, transition{eventType: corev1.EventTypeNormal, reason: keymintv1alpha1.ReasonPreviousKeyRetired,
			note: fmt.Sprintf("previous key %s of user %s retired (it was to work until %s): the verifier refuses it; the current key is %s",
				p.KeyID, after.Spec.User, p.ExpiresAt.UTC().Format(time.RFC3339), keyIDText(after))})
	}
	for _, c := range []struct{ typ, reason string }{
		{keymintv1alpha1.ConditionRotationBlocked, keymintv1alpha1.ReasonRotationBlocked},
		{keymintv1alpha1.ConditionPreviousKeyInUse, keymintv1alpha1.ReasonPreviousKeyInUse},
	} {
		now := apimeta.FindStatusCondition(st.Conditions, c.typ)
		was := apimeta.FindStatusCondition(before.Conditions, c.typ)
		if now != nil && now.Status == metav1.ConditionTrue && (was == nil || was.Status != metav1.ConditionTrue || was.Reason != now.Reason) {
			out = append(out, transition{eventType: corev1.EventTypeWarning, reason: c.reason, note: now.Message})
		}
	}
	return out
}
