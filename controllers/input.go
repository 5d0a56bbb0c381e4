package controllers

import (
	"context"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/keysecret"
	"github.com/keymint/keymint/internal/slots"
)

// Input is everything decide reads, gathered once per reconcile.
type Input struct {
	Key     *keymintv1alpha1.APIKey
	Now     time.Time
	MaxKeys int
	// SlotNamespace is keymint's own namespace, where no key is issued.
	SlotNamespace string
	// Slots are the user's slot Leases, from the cache.
	Slots []coordinationv1.Lease
	// Allowed: the user may "use" apikeys in the key's namespace.
	Allowed bool
	// SecretConflict: the API server holds someone else's Secret of the
	// key's Secret name. Looked up only for a key that stalled on one:
	// someone else's Secret is not in the cache.
	SecretConflict bool
	// Stale are the Slots whose holder is gone; looked for only when the
	// user's slots are all taken and the key holds none.
	Stale []coordinationv1.Lease
	// Waiting are the user's keys waiting for a slot, from the cache.
	Waiting []slots.Candidate
}

// gather reads what decide needs for key at now, and nothing a check
// before it makes moot: a due key reads nothing, an Expired one no access
// review, a key without access no slot lookups.
func (r *APIKeyReconciler) gather(ctx context.Context, key *keymintv1alpha1.APIKey, now time.Time) (*Input, error) {
	in := &Input{Key: key, Now: now, MaxKeys: r.MaxKeysPerUser, SlotNamespace: r.SlotNamespace}
	// A key in keymint's own namespace is denied whatever it holds, and a
	// key at its expiry needs nothing else: when a thousand keys expire in
	// one second, each pass is one request and nothing more.
	if key.Namespace == r.SlotNamespace || key.Status.Phase != keymintv1alpha1.PhaseExpired && !invalidAt(key) && key.DueAt(now) {
		return in, nil
	}
	var err error
	if in.Slots, err = r.cap().Taken(ctx, key.Spec.User); err != nil {
		return nil, err
	}
	if invalidAt(key) || key.Status.Phase == keymintv1alpha1.PhaseExpired {
		return in, nil
	}
	if in.Allowed, err = r.hasAccess(ctx, key); err != nil || !in.Allowed {
		return in, err
	}
	if key.Status.ReadyReason() == keymintv1alpha1.ReasonSecretConflict {
		if in.SecretConflict, err = r.secretConflict(ctx, key); err != nil || in.SecretConflict {
			return in, err
		}
	}
	if slots.HeldBy(in.Slots, key) {
		return in, nil
	}
	if len(in.Slots) >= r.MaxKeysPerUser {
		if in.Stale, err = r.cap().Stale(ctx, in.Slots); err != nil {
			return nil, err
		}
	}
	in.Waiting, err = r.waitingKeys(ctx, key.Spec.User, in.Slots)
	return in, err
}

// secretConflict reports whether key's Secret exists on the API server and
// belongs to someone else.
func (r *APIKeyReconciler) secretConflict(ctx context.Context, key *keymintv1alpha1.APIKey) (bool, error) {
	secret := &corev1.Secret{}
	err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: key.Namespace, Name: key.SecretNameOrDefault()}, secret)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	return err == nil && !keysecret.OwnedBy(secret, key), err
}

// waitingKeys lists the keys of user that wait for a slot. A key that
// holds one of the taken slots does not wait, whatever its cached status
// says, unless it waits to renew.
func (r *APIKeyReconciler) waitingKeys(ctx context.Context, user string, taken []coordinationv1.Lease) ([]slots.Candidate, error) {
	list := &keymintv1alpha1.APIKeyList{}
	if err := r.List(ctx, list, client.MatchingFields{IndexWaitingUser: slots.UserHash(user)}); err != nil {
		return nil, err
	}
	var out []slots.Candidate
	for i := range list.Items {
		k := &list.Items[i]
		// A renewal waits while holding its key's slot.
		if k.Spec.User == user && (!slots.HeldBy(taken, k) || renewalWaiting(k)) {
			out = append(out, candidate(k))
		}
	}
	return out, nil
}
