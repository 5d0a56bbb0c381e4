package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/keysecret"
	"github.com/keymint/keymint/internal/metrics"
)

// conflictRetry is how often a key blocked by someone else's Secret looks
// again: that Secret is not in the cache, so no event says it went away.
const conflictRetry = time.Minute

// issue makes sure the key, which holds a slot, has its Secret, and records
// it Active until it expires. fresh says the cached key was already
// confirmed current in this reconcile, which began at start: the requeue at
// its expiry counts from there.
func (r *APIKeyReconciler) issue(ctx context.Context, key *keymintv1alpha1.APIKey, fresh bool, start time.Time) (ctrl.Result, error) {
	name := key.SecretNameOrDefault()
	secret, err := r.ownedSecret(ctx, key, name, fresh)
	if err != nil {
		return ctrl.Result{}, err
	}
	if secret == nil {
		return r.stallOnConflict(ctx, key, nil)
	}
	in, err := keysecret.Read(secret)
	if err != nil {
		return ctrl.Result{}, err
	}
	now := r.Clock.Now()
	reason := issueEvent(key.Status.KeyID, in.KeyID)
	setActive(key, now, name, in)
	if reason != "" {
		r.record(ctx, key, corev1.EventTypeNormal, reason, "key %s issued for user %s in Secret %s, %s",
			in.KeyID, key.Spec.User, name, expiryText(in.ExpiresAt))
		if reason == keymintv1alpha1.ReasonIssued {
			metrics.IssueLatency.Observe(now.Sub(key.CreationTimestamp.Time).Seconds())
		}
	}
	return ctrl.Result{RequeueAfter: r.nextCheck(start, in.ExpiresAt)}, nil
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

// stallOnConflict records that someone else's Secret blocks key, and frees
// its slot: it holds none while it waits. The slot may have been taken in
// this very reconcile, so the API server, not the cache, lists it.
func (r *APIKeyReconciler) stallOnConflict(ctx context.Context, key *keymintv1alpha1.APIKey, err error) (ctrl.Result, error) {
	if err != nil {
		return ctrl.Result{}, err
	}
	if err := r.releaseSlots(ctx, key, r.APIReader); err != nil {
		return ctrl.Result{}, err
	}
	return r.stall(ctx, key, keymintv1alpha1.ReasonSecretConflict,
		fmt.Sprintf("Secret %s/%s exists and does not belong to this APIKey; delete it or choose another spec.secretName",
			key.Namespace, key.SecretNameOrDefault()))
}

// ownedSecret returns key's Secret, minting it when there is none, or nil
// when a Secret of that name belongs to someone else. A Secret is created
// only if absent and never replaced, so however often this runs, with
// whatever cache, an APIKey's key changes only when its Secret is deleted.
func (r *APIKeyReconciler) ownedSecret(ctx context.Context, key *keymintv1alpha1.APIKey, name string, fresh bool) (*corev1.Secret, error) {
	ref := types.NamespacedName{Namespace: key.Namespace, Name: name}
	secret := &corev1.Secret{}
	err := r.Get(ctx, ref, secret)
	if err == nil {
		return ownedOrNil(secret, key), nil
	}
	if !apierrors.IsNotFound(err) {
		return nil, err
	}

	// The status decides whether this is a first issue or a reissue and
	// what expiry the key gets, so it must not be a stale copy.
	if !fresh {
		if err := r.confirmFresh(ctx, key); err != nil {
			return nil, err
		}
	}
	minted, err := r.Mint()
	if err != nil {
		return nil, err
	}
	issuedAt, expiresAt := issuance(key, r.Clock.Now())
	secret = keysecret.Build(key, minted, issuedAt, expiresAt)
	err = r.Create(ctx, secret)
	if err == nil {
		return secret, nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("creating Secret %s: %w", ref, apiErrorWithoutObject(err))
	}
	// Created by an earlier reconcile the cache has not seen, or by someone else.
	secret = &corev1.Secret{}
	if err := r.APIReader.Get(ctx, ref, secret); err != nil {
		return nil, err
	}
	return ownedOrNil(secret, key), nil
}

// confirmFresh fails with errCacheStale when the API server holds a newer
// APIKey than the cached key: a decision that takes a slot or mints a key
// waits for the cache to catch up.
func (r *APIKeyReconciler) confirmFresh(ctx context.Context, key *keymintv1alpha1.APIKey) error {
	live := &keymintv1alpha1.APIKey{}
	if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(key), live); err != nil {
		return err
	}
	if live.ResourceVersion != key.ResourceVersion {
		return errCacheStale
	}
	return nil
}

func ownedOrNil(secret *corev1.Secret, key *keymintv1alpha1.APIKey) *corev1.Secret {
	if keysecret.OwnedBy(secret, key) {
		return secret
	}
	return nil
}

// apiErrorWithoutObject keeps an API error's reason and drops anything else,
// so no error message can carry the Secret that was sent.
func apiErrorWithoutObject(err error) error {
	if status, ok := err.(apierrors.APIStatus); ok {
		return fmt.Errorf("%s (%d)", apierrors.ReasonForError(err), status.Status().Code)
	}
	return err
}

// deleteOwnedSecret deletes key's Secret if it is key's. It deletes that
// very object (UID precondition), so a stale cache can never make it delete
// someone else's Secret or a newer one; a Secret the cache has not seen yet
// is looked up on the API server, so none is missed. Reading the cache
// first keeps an expiry to one request before the Secret is gone.
func (r *APIKeyReconciler) deleteOwnedSecret(ctx context.Context, key *keymintv1alpha1.APIKey) (deleted bool, err error) {
	name := key.Status.SecretName
	if name == "" {
		name = key.SecretNameOrDefault()
	}
	ref := types.NamespacedName{Namespace: key.Namespace, Name: name}
	secret := &corev1.Secret{}
	err = r.Get(ctx, ref, secret)
	if apierrors.IsNotFound(err) {
		err = r.APIReader.Get(ctx, ref, secret)
	}
	if err != nil {
		return false, client.IgnoreNotFound(err)
	}
	if !keysecret.OwnedBy(secret, key) {
		return false, nil
	}
	if err := r.Delete(ctx, secret, client.Preconditions{UID: &secret.UID}); err != nil {
		return false, client.IgnoreNotFound(err)
	}
	return true, nil
}

// stall records a key that needs a person's change.
func (r *APIKeyReconciler) stall(ctx context.Context, key *keymintv1alpha1.APIKey, reason, msg string) (ctrl.Result, error) {
	if readyReason(key) != reason {
		r.record(ctx, key, corev1.EventTypeWarning, reason, "%s", msg)
	}
	setStalled(key, r.Clock.Now(), reason, msg)
	if reason == keymintv1alpha1.ReasonSecretConflict {
		return ctrl.Result{RequeueAfter: conflictRetry}, nil
	}
	return ctrl.Result{}, nil
}
