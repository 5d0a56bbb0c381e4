package controllers

import (
	"context"
	"fmt"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
)

// finalize revokes a deleted APIKey's key: its Secret is deleted and its
// slot freed before the finalizer goes. A missing Secret or slot, or a
// namespace being deleted, does not hold it up.
func (r *APIKeyReconciler) finalize(ctx context.Context, key *keymintv1alpha1.APIKey) error {
	if _, err := r.deleteOwnedSecret(ctx, key); err != nil {
		return err
	}
	if err := r.revokeOwnerAccess(ctx, key); err != nil {
		return err
	}
	if err := r.cap().Release(ctx, key); err != nil {
		return err
	}
	// Someone removed the finalizer: the key is revoked all the same.
	if !controllerutil.ContainsFinalizer(key, keymintv1alpha1.Finalizer) {
		return nil
	}
	// The finalizer stays until the record is written.
	if err := r.lifecycle().record(ctx, key, r.Clock.Now(), transition{corev1.EventTypeNormal, keymintv1alpha1.ReasonDeleted,
		fmt.Sprintf("key %s of user %s revoked: APIKey deleted", keyIDText(key), key.Spec.User)}); err != nil {
		return err
	}
	patch := client.MergeFromWithOptions(key.DeepCopy(), client.MergeFromWithOptimisticLock{})
	controllerutil.RemoveFinalizer(key, keymintv1alpha1.Finalizer)
	return client.IgnoreNotFound(r.Patch(ctx, key, patch))
}

// cleanUpAfter revokes what an APIKey that is gone left behind, such as one
// deleted without its finalizer: its slots and its Secrets, found by their
// APIKey label and deleted, those very objects, if their controller is an
// APIKey of that name that no longer exists. A new APIKey of the same name
// keeps its own.
func (r *APIKeyReconciler) cleanUpAfter(ctx context.Context, name types.NamespacedName) error {
	live := &keymintv1alpha1.APIKey{}
	err := r.APIReader.Get(ctx, name, live)
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	gone := func(uid types.UID) bool { return err != nil || uid != live.UID }
	if err := r.revokeOwnerAccessOf(ctx, name, gone); err != nil {
		return err
	}
	if err := r.cap().ReleaseOf(ctx, name, func(l *coordinationv1.Lease) bool {
		holder := ptr.Deref(l.Spec.HolderIdentity, "")
		if !gone(types.UID(holder)) {
			return false
		}
		log.FromContext(ctx).Info("freeing the slot of an APIKey that is gone", "lease", l.Name, "holderUID", holder)
		return true
	}); err != nil {
		return err
	}
	secrets := &corev1.SecretList{}
	if err := r.List(ctx, secrets, client.InNamespace(name.Namespace),
		client.MatchingLabels{keymintv1alpha1.LabelManagedBy: keymintv1alpha1.ManagedBy, keymintv1alpha1.LabelAPIKey: name.Name}); err != nil {
		return err
	}
	for i := range secrets.Items {
		secret := &secrets.Items[i]
		_, owner, ok := ownerOf(secret)
		if !ok || owner.Name != name.Name || !gone(owner.UID) {
			continue
		}
		if err := r.Delete(ctx, secret, client.Preconditions{UID: &secret.UID}); client.IgnoreNotFound(err) != nil {
			return err
		}
		log.FromContext(ctx).Info("deleted the Secret of an APIKey that is gone", "secret", secret.Name, "apikeyUID", owner.UID)
	}
	return nil
}
