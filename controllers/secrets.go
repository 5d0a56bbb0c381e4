package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/keysecret"
)

// ownedSecret returns what key's Secret says, minting the Secret when
// there is none; owned is false when a Secret of that name belongs to
// someone else. A Secret is created only if absent and never replaced, so
// however often this runs, with whatever cache, an APIKey's key changes
// only when its Secret is deleted. A Secret that claims the APIKey but that
// keymint did not sign is deleted, never adopted.
func (p *keyPass) ownedSecret(ctx context.Context, name string) (in keysecret.Issue, owned bool, err error) {
	key := p.key
	ref := types.NamespacedName{Namespace: key.Namespace, Name: name}
	secret := &corev1.Secret{}
	err = p.Get(ctx, ref, secret)
	if err != nil && !apierrors.IsNotFound(err) {
		return in, false, err
	}
	if err == nil {
		if in, found, err := p.trustedSecret(ctx, key, secret); err != nil || found != secretDiscarded {
			return in, found == secretOurs, err
		}
	}

	// The status decides whether this is a first issue or a reissue and
	// what expiry the key gets, so it must not be a stale copy.
	if err := p.confirmFresh(ctx); err != nil {
		return in, false, err
	}
	minted, err := p.Mint()
	if err != nil {
		return in, false, err
	}
	issuedAt, expiresAt := issuance(key, p.now)
	secret = keysecret.Build(key, minted, keysecret.Issue{Revision: key.Status.Revision + 1, IssuedAt: issuedAt, ExpiresAt: expiresAt})
	if err := p.Signer.Sign(secret, key); err != nil {
		return in, false, err
	}
	err = p.Create(ctx, secret)
	if err == nil {
		in, err := keysecret.Read(secret)
		return in, true, err
	}
	if !apierrors.IsAlreadyExists(err) {
		return in, false, fmt.Errorf("creating Secret %s: %w", ref, apiErrorWithoutObject(err))
	}
	// Created by an earlier reconcile the cache has not seen, or by someone else.
	secret = &corev1.Secret{}
	if err := p.APIReader.Get(ctx, ref, secret); err != nil {
		return in, false, err
	}
	in, found, err := p.trustedSecret(ctx, key, secret)
	if err == nil && found == secretDiscarded {
		err = fmt.Errorf("the Secret %s was not minted by keymint and is being deleted; a key is minted once it is gone", ref)
	}
	return in, found == secretOurs, err
}

// secretFound is what a Secret named like an APIKey's turned out to be.
type secretFound int

const (
	// secretOthers belongs to someone else: it is left alone.
	secretOthers secretFound = iota
	// secretOurs was minted by keymint for the APIKey.
	secretOurs
	// secretDiscarded claimed the APIKey without keymint's signature and
	// was deleted.
	secretDiscarded
)

// trustedSecret tells whether secret is key's. One that claims key (by its
// controller reference and type, which anyone who may create Secrets can
// forge) without keymint's signature is deleted, that very object, and
// recorded: its key, times and expiry never reach the status. So is a copy
// of an earlier issue that keymint did sign (kept from a backup, or when
// the key leaked): the status has moved past it, and it stays revoked.
func (r *APIKeyReconciler) trustedSecret(ctx context.Context, key *keymintv1alpha1.APIKey, secret *corev1.Secret) (keysecret.Issue, secretFound, error) {
	if !keysecret.OwnedBy(secret, key) {
		return keysecret.Issue{}, secretOthers, nil
	}
	in, err := r.Signer.Verify(secret, key)
	why := "keymint did not mint it"
	if err == nil {
		if keysecret.Current(key, in) {
			return in, secretOurs, nil
		}
		// Only the status on the API server may condemn a signed Secret,
		// and only the Secret there: a renewal updates the same object.
		if err := r.confirmCurrent(ctx, key); err != nil {
			return in, secretOthers, err
		}
		if err := r.confirmSecretCurrent(ctx, secret); err != nil {
			return in, secretOthers, err
		}
		why = fmt.Sprintf("it holds key %s of revision %d, which this APIKey has moved past (revision %d, %s)",
			in.KeyID, in.Revision, key.Status.Revision, key.Status.Phase)
	}
	if !secret.DeletionTimestamp.IsZero() {
		return in, secretDiscarded, nil
	}
	// Recorded first: once the Secret is gone, nothing would tell of it.
	if err := r.lifecycle().recordAbout(ctx, key, r.Clock.Now(), untrustedSecret(secret, why), string(secret.UID)); err != nil {
		return in, secretDiscarded, err
	}
	if err := r.Delete(ctx, secret, client.Preconditions{UID: &secret.UID, ResourceVersion: &secret.ResourceVersion}); apierrors.IsConflict(err) {
		return in, secretOthers, errCacheStale
	} else if client.IgnoreNotFound(err) != nil {
		return in, secretDiscarded, fmt.Errorf("deleting Secret %s/%s, which keymint did not mint: %w", secret.Namespace, secret.Name, err)
	}
	return in, secretDiscarded, nil
}

// confirmCurrent fails with errCacheStale when the API server holds a newer
// APIKey than key.
func (r *APIKeyReconciler) confirmCurrent(ctx context.Context, key *keymintv1alpha1.APIKey) error {
	live := &keymintv1alpha1.APIKey{}
	if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(key), live); err != nil {
		return err
	}
	if live.ResourceVersion != key.ResourceVersion {
		return errCacheStale
	}
	return nil
}

// confirmSecretCurrent fails with errCacheStale when the API server holds
// a newer version of secret, such as a renewal's.
func (r *APIKeyReconciler) confirmSecretCurrent(ctx context.Context, secret *corev1.Secret) error {
	live := &corev1.Secret{}
	if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(secret), live); err != nil {
		return client.IgnoreNotFound(err)
	}
	if live.UID == secret.UID && live.ResourceVersion != secret.ResourceVersion {
		return errCacheStale
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
	if _, err := r.Signer.Verify(secret, key); err != nil {
		// A planted Secret goes too, and is recorded as such.
		_, _, err := r.trustedSecret(ctx, key, secret)
		return false, err
	}
	if err := r.Delete(ctx, secret, client.Preconditions{UID: &secret.UID}); err != nil {
		return false, client.IgnoreNotFound(err)
	}
	return true, nil
}

// revoke takes key's credential away: its Secret, if keymint minted it for
// key. A caller frees the key's slot only after.
func (r *APIKeyReconciler) revoke(ctx context.Context, key *keymintv1alpha1.APIKey) error {
	_, err := r.deleteOwnedSecret(ctx, key)
	return err
}

// confirmFresh fails with errCacheStale when the API server holds a newer
// APIKey than the cached key: a decision that takes a slot or mints a key
// waits for the cache to catch up. It asks once a pass.
func (p *keyPass) confirmFresh(ctx context.Context) error {
	if p.fresh {
		return nil
	}
	if err := p.confirmCurrent(ctx, p.key); err != nil {
		return err
	}
	p.fresh = true
	return nil
}

// ownerOf names the APIKey that controls a Secret.
func ownerOf(secret client.Object) (reconcile.Request, *metav1.OwnerReference, bool) {
	owner := metav1.GetControllerOfNoCopy(secret)
	if owner == nil || owner.Kind != "APIKey" || owner.APIVersion != keymintv1alpha1.GroupVersion.String() {
		return reconcile.Request{}, nil, false
	}
	return reconcile.Request{NamespacedName: types.NamespacedName{Namespace: secret.GetNamespace(), Name: owner.Name}}, owner, true
}
