package controllers

import (
	"context"
	"time"

	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/handler"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/metrics"
)

// keyPass is one reconcile's writes for a key, after decide: act carries
// out a Plan with the freshness checks and UID preconditions each write
// needs, and sets the status the writes earned. It never decides anew,
// except where a write finds the API server ahead of the cache (a slot
// taken, a Secret there), which it reports as the state it found.
type keyPass struct {
	*APIKeyReconciler
	key *keymintv1alpha1.APIKey
	now time.Time
	// fresh: the cached key was confirmed current with the API server in
	// this pass, so later writes need not ask again.
	fresh bool
	// again: the action goes on in a pass of its own, behind the work
	// already queued (see expire).
	again bool
}

// act carries out plan.
func (p *keyPass) act(ctx context.Context, plan Plan) error {
	if err := p.cap().Reclaim(ctx, plan.Reclaim); err != nil {
		return err
	}
	switch plan.Do {
	case ActStall:
		setStalled(p.key, p.now, plan.Reason, plan.Message)
	case ActFreeSlots:
		return p.cap().Release(ctx, p.key)
	case ActExpire:
		return p.expire(ctx)
	case ActDeny:
		return p.deny(ctx, plan)
	case ActConflict:
		return p.conflict(ctx)
	case ActWait:
		return p.wait(ctx, plan.Message)
	case ActClaim:
		return p.claim(ctx)
	case ActIssue:
		return p.issue(ctx)
	case ActRenew:
		return p.renew(ctx, plan)
	case ActBlockRotation:
		return p.blockRotation(ctx, plan.Message)
	case ActRetire:
		return p.retire(ctx)
	}
	return nil
}

// result is the requeue the pass leaves, counted from its start.
func (p *keyPass) result() ctrl.Result {
	if p.again {
		return ctrl.Result{RequeueAfter: time.Millisecond, Priority: ptr.To(handler.LowPriority)}
	}
	// The writes since now took time, under load a good part of a second,
	// which must not make an expiry late.
	return ctrl.Result{RequeueAfter: requeueFrom(requeueAfter(p.key, p.now, p.recheckLimit(), p.ExpiryWarning), p.Clock.Since(p.now))}
}

// expire deletes the key's Secret, frees its slot and records it Expired.
// The APIKey stays, as a record, until someone deletes it.
//
// The deletion is a pass of its own: when many keys expire at once, every
// Secret goes first, one request each, and the slots, Events and statuses
// follow at low priority, behind the deletions still queued.
func (p *keyPass) expire(ctx context.Context) error {
	expiresAt := p.key.KnownExpiry()
	deleted, err := p.deleteOwnedSecret(ctx, p.key)
	if err != nil {
		return err
	}
	if deleted {
		metrics.ExpiryLag.Observe(p.Clock.Since(*expiresAt).Seconds())
		p.again = true
		return nil
	}
	if err := p.cap().Release(ctx, p.key); err != nil {
		return err
	}
	setExpired(p.key, p.now, expiresAt, "key "+keyIDText(p.key)+" expired at "+expiresAt.UTC().Format(time.RFC3339))
	return nil
}

// deny takes away what a user without access holds: an issued key is
// Suspended (Secret deleted, slot freed); a key never issued stays Pending.
func (p *keyPass) deny(ctx context.Context, plan Plan) error {
	if err := p.revoke(ctx, p.key); err != nil {
		return err
	}
	if err := p.cap().Release(ctx, p.key); err != nil {
		return err
	}
	if plan.Reason == keymintv1alpha1.ReasonAccessRemoved {
		setSuspended(p.key, p.now, plan.Message)
		return nil
	}
	setStalled(p.key, p.now, plan.Reason, plan.Message)
	return nil
}

// conflict records that someone else's Secret blocks the key, which holds
// no slot while it waits; the slot may have been taken in this very pass.
func (p *keyPass) conflict(ctx context.Context) error {
	if err := p.cap().Release(ctx, p.key); err != nil {
		return err
	}
	setStalled(p.key, p.now, keymintv1alpha1.ReasonSecretConflict, conflictMessage(p.key))
	return nil
}

// wait records that the key waits for a slot. A key that lost its slot
// also loses its Secret: no key works without a slot.
func (p *keyPass) wait(ctx context.Context, message string) error {
	if p.key.Status.KeyID != "" {
		if err := p.revoke(ctx, p.key); err != nil {
			return err
		}
	}
	setWaiting(p.key, p.now, message)
	return nil
}

// claim takes a slot for the key, then issues it. What the key did last (a
// conflict, an expiry) must not be a stale copy, so the key is confirmed
// current first; the slots are listed from the API server.
func (p *keyPass) claim(ctx context.Context) error {
	if err := p.confirmFresh(ctx); err != nil {
		return err
	}
	c, err := p.cap().Claim(ctx, p.key, p.now)
	if err != nil {
		return err
	}
	if !c.Held {
		return p.wait(ctx, waitMessage(p.key.Spec.User, c.Holders, p.MaxKeysPerUser, nil))
	}
	return p.issue(ctx)
}

// issue makes sure the key, which holds a slot, has its Secret, and records
// it Active until it expires.
func (p *keyPass) issue(ctx context.Context) error {
	name := p.key.SecretNameOrDefault()
	in, owned, err := p.ownedSecret(ctx, name)
	if err != nil {
		return err
	}
	if !owned {
		return p.conflict(ctx)
	}
	if p.key.Status.KeyID != in.KeyID {
		// A reissue revokes the previous key with the current one.
		p.key.Status.PreviousKey = nil
	}
	setActive(p.key, p.now, name, in)
	setRotation(p.key, p.now)
	setExpiringSoon(p.key, p.now, p.ExpiryWarning)
	return nil
}
