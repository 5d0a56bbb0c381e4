package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/keys"
	"github.com/keymint/keymint/internal/keysecret"
	"github.com/keymint/keymint/internal/metrics"
)

// Renewal's writes, in the order that keeps the cap at every instant:
// the previous key's slot is claimed before its successor exists, the
// successor is written into the Secret, then the status records both; a
// slot is freed only once the key it held no longer works. A pass that
// stops at any line leaves at most the successor in the Secret, which the
// retry adopts (its revision is the status's next), so one renewal makes
// one successor.

// renew mints the key's successor into its Secret, keeping the current
// key working for the plan's grace in a second slot.
func (p *keyPass) renew(ctx context.Context, plan Plan) error {
	// The status decides the successor's revision and what it succeeds.
	if err := p.confirmFresh(ctx); err != nil {
		return err
	}
	want := 1
	if plan.Grace > 0 {
		want = 2
	}
	c, err := p.cap().ClaimUpTo(ctx, p.key, p.now, want)
	if err != nil {
		return err
	}
	if !c.Held {
		return p.blockRotation(ctx, blockedMessage(p.key, c.Holders, p.MaxKeysPerUser))
	}
	key := p.key
	due, _ := key.RenewalAt()
	in, err := p.writeSuccessor(ctx, plan)
	if err != nil {
		if !errors.Is(err, errCacheStale) { // a stale read is a quiet retry, not a failure
			metrics.Renewals.WithLabelValues(metrics.RenewalFailed).Inc()
		}
		return err
	}
	if plan.Scheduled && due != nil {
		metrics.RenewalLag.Observe(p.Clock.Since(*due).Seconds())
	}
	var prev *keymintv1alpha1.PreviousKey
	if in.PreviousKeyHash != "" && in.PreviousKeyHash == key.Status.KeyHash {
		prev = previousOf(key, in.IssuedAt, plan)
	}
	setActive(key, p.now, key.Status.SecretName, in)
	key.Status.PreviousKey = prev
	key.Status.LastUsedAt = nil
	if plan.Request != "" {
		key.Status.LastRotationRequest = plan.Request
	}
	apimeta.RemoveStatusCondition(&key.Status.Conditions, keymintv1alpha1.ConditionRotationBlocked)
	setRotation(key, p.now)
	setExpiringSoon(key, p.now, p.ExpiryWarning)
	metrics.Renewals.WithLabelValues(metrics.RenewalRenewed).Inc()
	if want == 1 {
		// A successor without a previous key (no grace) leaves the key
		// one slot; with one, it holds the two it claimed.
		return p.cap().ReleaseSurplus(ctx, key, slotsNeeded(key, p.now))
	}
	return nil
}

// blockRotation records a renewal that waits for a slot; the key stays
// issued, and a freed slot calls it in ahead of new keys.
func (p *keyPass) blockRotation(ctx context.Context, message string) error {
	if err := p.issue(ctx); err != nil {
		return err
	}
	if !renewalWaiting(p.key) {
		metrics.Renewals.WithLabelValues(metrics.RenewalBlocked).Inc()
	}
	setRotationBlocked(p.key, p.now, message)
	return nil
}

// retire frees the slots the key holds beyond what it needs at now: the
// previous key's once it stopped working. The verifier refuses that key
// from its expiresAt on its own clock, so the slot is free to go.
func (p *keyPass) retire(ctx context.Context) error {
	if err := p.confirmFresh(ctx); err != nil {
		return err
	}
	if err := p.cap().ReleaseSurplus(ctx, p.key, slotsNeeded(p.key, p.now)); err != nil {
		return err
	}
	return p.issue(ctx)
}

// writeSuccessor writes the successor of the status's key into the
// Secret and returns what it holds: in place when the Secret is mutable
// (same object, new resourceVersion), replaced (same name, new UID) when
// it is immutable or gone. A successor a stopped pass wrote is adopted.
func (p *keyPass) writeSuccessor(ctx context.Context, plan Plan) (keysecret.Issue, error) {
	key := p.key
	ref := types.NamespacedName{Namespace: key.Namespace, Name: key.Status.SecretName}
	// From the cache: a stale copy only makes the write conflict (the
	// update carries its resourceVersion, the delete its UID and
	// resourceVersion), and the retry reads again.
	old := &corev1.Secret{}
	err := p.Get(ctx, ref, old)
	if err != nil && !apierrors.IsNotFound(err) {
		return keysecret.Issue{}, err
	}
	exists := err == nil
	if exists {
		if !keysecret.OwnedBy(old, key) {
			return keysecret.Issue{}, fmt.Errorf("the Secret %s is not this APIKey's: the key is not renewed", ref)
		}
		in, err := p.Signer.Verify(old, key)
		if err != nil {
			// Planted: deleted and recorded; the retry mints into its place.
			if _, _, err := p.trustedSecret(ctx, key, old); err != nil {
				return keysecret.Issue{}, err
			}
			return keysecret.Issue{}, fmt.Errorf("the Secret %s was not minted by keymint for this APIKey: it is deleted, and the successor is minted once it is gone", ref)
		}
		if in.Revision == key.Status.Revision+1 {
			return in, nil
		}
	}
	minted, err := p.Mint()
	if err != nil {
		return keysecret.Issue{}, err
	}
	issuedAt := p.now.UTC().Truncate(time.Second)
	next := keysecret.Issue{KeyID: minted.ID, KeyHash: keys.Hash(minted.Value), Revision: key.Status.Revision + 1,
		IssuedAt: issuedAt, ExpiresAt: lifetimeFrom(key, issuedAt)}
	if plan.Grace > 0 {
		next.PreviousKeyHash = key.Status.KeyHash
	}
	secret := keysecret.Build(key, minted, next)
	if err := p.Signer.Sign(secret, key); err != nil {
		return keysecret.Issue{}, err
	}
	switch {
	case exists && !ptr.Deref(old.Immutable, false):
		keepForeign(secret, old)
		secret.ResourceVersion = old.ResourceVersion
		err = p.Update(ctx, secret)
	case exists:
		// The kubelet does not refresh an immutable Secret, and it cannot
		// be updated: the same name, a new object.
		keepForeign(secret, old)
		err = p.Delete(ctx, old, client.Preconditions{UID: &old.UID, ResourceVersion: &old.ResourceVersion})
		if err == nil || apierrors.IsNotFound(err) {
			err = p.Create(ctx, secret)
		}
	default:
		err = p.Create(ctx, secret)
	}
	if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
		return keysecret.Issue{}, errCacheStale // changed since read: the retry reads it again
	}
	if err != nil {
		return keysecret.Issue{}, fmt.Errorf("writing the successor into Secret %s: %w", ref, apiErrorWithoutObject(err))
	}
	return next, nil
}

// keepForeign keeps on the successor's Secret the labels and annotations
// others set on its predecessor (a reloader's, a backup tool's); keymint's
// own are the successor's.
func keepForeign(secret, old *corev1.Secret) {
	for k, v := range old.Labels {
		if _, ours := secret.Labels[k]; !ours && !strings.HasPrefix(k, "keymint.io/") {
			secret.Labels[k] = v
		}
	}
	for k, v := range old.Annotations {
		if _, ours := secret.Annotations[k]; !ours && !strings.HasPrefix(k, "keymint.io/") {
			secret.Annotations[k] = v
		}
	}
}
