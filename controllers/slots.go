package controllers

import (
	"context"
	"fmt"
	"slices"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/slots"
)

// slotClaim is what claimSlot found.
type slotClaim struct {
	// held: the key holds a slot.
	held bool
	// fresh: this reconcile confirmed with the API server that the cached
	// APIKey is current, so a later step need not ask again.
	fresh bool
	// holders names the keys holding the user's slots when key holds none.
	holders []string
}

// claimSlot makes sure key holds one of its user's slots. Only a successful
// create of a slot Lease takes a slot, so the cap holds however stale the
// cache; the cache only decides whose turn it is.
func (r *APIKeyReconciler) claimSlot(ctx context.Context, key *keymintv1alpha1.APIKey) (slotClaim, error) {
	taken, err := r.userSlots(ctx, key.Spec.User, r.Client)
	if err != nil {
		return slotClaim{}, err
	}
	if slices.ContainsFunc(taken, func(l coordinationv1.Lease) bool { return holds(&l, key) }) {
		return slotClaim{held: true}, nil
	}
	if len(taken) >= r.MaxKeysPerUser {
		if taken, err = r.reclaimStaleSlots(ctx, taken); err != nil || len(taken) >= r.MaxKeysPerUser {
			return slotClaim{holders: holderNames(taken)}, err
		}
	}
	free := r.MaxKeysPerUser - len(taken)
	waiting, err := r.waitingKeys(ctx, key.Spec.User, taken)
	if err != nil {
		return slotClaim{}, err
	}
	if !slots.Eligible(candidate(key), waiting, free) {
		return slotClaim{holders: holderNames(taken)}, nil
	}

	// What the key did last (a conflict, an expiry) must not be a stale copy.
	if err := r.confirmFresh(ctx, key); err != nil {
		return slotClaim{}, err
	}
	// Nor the slots: a slot this key claimed a moment ago, not yet in the
	// cache, would otherwise make it claim a second one, and keep another
	// key of the user waiting.
	if taken, err = r.userSlots(ctx, key.Spec.User, r.APIReader); err != nil {
		return slotClaim{}, err
	}
	if slices.ContainsFunc(taken, func(l coordinationv1.Lease) bool { return holds(&l, key) }) {
		return slotClaim{held: true, fresh: true}, nil
	}
	if len(taken) >= r.MaxKeysPerUser {
		return slotClaim{fresh: true, holders: holderNames(taken)}, nil
	}
	names := map[string]bool{}
	for _, l := range taken {
		names[l.Name] = true
	}
	for i := range r.MaxKeysPerUser {
		name := slots.Name(key.Spec.User, i)
		if names[name] {
			continue
		}
		err := r.Create(ctx, r.slotLease(key, name))
		if err == nil {
			return slotClaim{held: true, fresh: true}, nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return slotClaim{}, fmt.Errorf("claiming slot %s: %w", name, err)
		}
		// The cache had not seen this slot. It may even be ours, from a
		// reconcile that stopped before it wrote status.
		existing := &coordinationv1.Lease{}
		if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: r.SlotNamespace, Name: name}, existing); err != nil {
			if apierrors.IsNotFound(err) {
				return slotClaim{}, errCacheStale
			}
			return slotClaim{}, err
		}
		if holds(existing, key) {
			return slotClaim{held: true, fresh: true}, nil
		}
		taken = append(taken, *existing)
	}
	return slotClaim{fresh: true, holders: holderNames(taken)}, nil
}

// slotLease is the Lease that makes key the holder of slot name.
func (r *APIKeyReconciler) slotLease(key *keymintv1alpha1.APIKey, name string) *coordinationv1.Lease {
	now := metav1.NewMicroTime(r.Clock.Now())
	return &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{
			Name:      name,
			Namespace: r.SlotNamespace,
			Labels: map[string]string{
				keymintv1alpha1.LabelManagedBy: keymintv1alpha1.ManagedBy,
				slots.LabelUserHash:            slots.UserHash(key.Spec.User),
				slots.LabelHolderNamespace:     key.Namespace,
				slots.LabelHolderName:          key.Name,
			},
			Annotations: map[string]string{slots.AnnotationUser: key.Spec.User},
		},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity: new(string(key.UID)),
			AcquireTime:    &now,
		},
	}
}

// holds reports whether lease is held by key, by UID: an earlier APIKey of
// the same name does not count.
func holds(lease *coordinationv1.Lease, key *keymintv1alpha1.APIKey) bool {
	return ptr.Deref(lease.Spec.HolderIdentity, "") == string(key.UID)
}

func holderRef(lease *coordinationv1.Lease) types.NamespacedName {
	return types.NamespacedName{Namespace: lease.Labels[slots.LabelHolderNamespace], Name: lease.Labels[slots.LabelHolderName]}
}

func holderNames(leases []coordinationv1.Lease) []string {
	names := make([]string, 0, len(leases))
	for i := range leases {
		names = append(names, holderRef(&leases[i]).String())
	}
	slices.Sort(names)
	return names
}

// userSlots lists the slots of user.
func (r *APIKeyReconciler) userSlots(ctx context.Context, user string, reader client.Reader) ([]coordinationv1.Lease, error) {
	list := &coordinationv1.LeaseList{}
	err := reader.List(ctx, list, client.InNamespace(r.SlotNamespace),
		client.MatchingLabels{slots.LabelUserHash: slots.UserHash(user)})
	return list.Items, err
}

// waitingKeys lists the keys of user that wait for a slot. A key that
// holds one of the taken slots does not wait, whatever its cached status says.
func (r *APIKeyReconciler) waitingKeys(ctx context.Context, user string, taken []coordinationv1.Lease) ([]slots.Candidate, error) {
	list := &keymintv1alpha1.APIKeyList{}
	if err := r.List(ctx, list, client.MatchingFields{IndexWaitingUser: slots.UserHash(user)}); err != nil {
		return nil, err
	}
	var out []slots.Candidate
	for i := range list.Items {
		k := &list.Items[i]
		if k.Spec.User == user && !slices.ContainsFunc(taken, func(l coordinationv1.Lease) bool { return holds(&l, k) }) {
			out = append(out, candidate(k))
		}
	}
	return out, nil
}

// isWaiting reports whether key has no key yet and will get one when a
// slot frees.
func isWaiting(key *keymintv1alpha1.APIKey) bool {
	return key.DeletionTimestamp.IsZero() &&
		key.Status.Phase != keymintv1alpha1.PhaseActive &&
		key.Status.Phase != keymintv1alpha1.PhaseExpired &&
		!apimeta.IsStatusConditionTrue(key.Status.Conditions, keymintv1alpha1.ConditionStalled)
}

func candidate(key *keymintv1alpha1.APIKey) slots.Candidate {
	return slots.Candidate{Key: client.ObjectKeyFromObject(key), Created: key.CreationTimestamp.Time}
}

// reclaimStaleSlots frees slots whose holder no longer exists, such as one
// whose finalizer was removed by hand, and returns the slots still held. It
// trusts the cache only to say a holder exists; absence is confirmed with
// the API server before a slot is deleted.
func (r *APIKeyReconciler) reclaimStaleSlots(ctx context.Context, leases []coordinationv1.Lease) ([]coordinationv1.Lease, error) {
	var held []coordinationv1.Lease
	for i := range leases {
		lease := &leases[i]
		holder := &keymintv1alpha1.APIKey{}
		if err := r.Get(ctx, holderRef(lease), holder); err == nil && holds(lease, holder) {
			held = append(held, *lease)
			continue
		}
		err := r.APIReader.Get(ctx, holderRef(lease), holder)
		if err == nil && holds(lease, holder) {
			held = append(held, *lease)
			continue
		}
		if err != nil && !apierrors.IsNotFound(err) {
			return leases, err
		}
		if err := r.deleteSlot(ctx, lease); err != nil {
			return leases, err
		}
	}
	return held, nil
}

// releaseSlots frees every slot key holds. Listing through reader lets the
// callers that must not miss a slot just taken read the API server.
func (r *APIKeyReconciler) releaseSlots(ctx context.Context, key *keymintv1alpha1.APIKey, reader client.Reader) error {
	return r.releaseSlotsOf(ctx, client.ObjectKeyFromObject(key), reader, func(l *coordinationv1.Lease) bool { return holds(l, key) })
}

func (r *APIKeyReconciler) releaseSlotsOf(ctx context.Context, name types.NamespacedName, reader client.Reader, release func(*coordinationv1.Lease) bool) error {
	list := &coordinationv1.LeaseList{}
	if err := reader.List(ctx, list, client.InNamespace(r.SlotNamespace), client.MatchingLabels{
		slots.LabelHolderNamespace: name.Namespace,
		slots.LabelHolderName:      name.Name,
	}); err != nil {
		return err
	}
	for i := range list.Items {
		if release(&list.Items[i]) {
			if err := r.deleteSlot(ctx, &list.Items[i]); err != nil {
				return err
			}
		}
	}
	return nil
}

// deleteSlot deletes lease, and only that Lease: the UID precondition keeps
// a slot claimed again since it was read.
func (r *APIKeyReconciler) deleteSlot(ctx context.Context, lease *coordinationv1.Lease) error {
	err := r.Delete(ctx, lease, client.Preconditions{UID: &lease.UID})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// awaitSlot records that key waits for a slot. A key that lost its slot
// also loses its Secret: no key works without a slot.
func (r *APIKeyReconciler) awaitSlot(ctx context.Context, key *keymintv1alpha1.APIKey, holders []string) error {
	if key.Status.KeyID != "" {
		if _, err := r.deleteOwnedSecret(ctx, key); err != nil {
			return err
		}
		if err := r.revokeOwnerAccess(ctx, key); err != nil {
			return err
		}
	}
	msg := waitMessage(key.Spec.User, holders, r.MaxKeysPerUser)
	if readyReason(key) != keymintv1alpha1.ReasonKeyLimitReached {
		if err := r.record(ctx, key, corev1.EventTypeWarning, keymintv1alpha1.ReasonKeyLimitReached, "%s", msg); err != nil {
			return err
		}
	}
	setWaiting(key, r.Clock.Now(), msg)
	return nil
}
