package controllers

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
)

// finalize revokes a deleted APIKey's key: its Secret is deleted and its
// slot freed before the finalizer goes. A missing Secret or slot, or a
// namespace being deleted, does not hold it up.
func (r *APIKeyReconciler) finalize(ctx context.Context, key *keymintv1alpha1.APIKey) error {
	if !controllerutil.ContainsFinalizer(key, Finalizer) {
		return nil
	}
	if _, err := r.deleteOwnedSecret(ctx, key); err != nil {
		return err
	}
	if err := r.releaseSlots(ctx, key, r.APIReader); err != nil {
		return err
	}
	r.record(ctx, key, corev1.EventTypeNormal, keymintv1alpha1.ReasonDeleted, "key %s of user %s revoked: APIKey deleted", keyIDText(key), key.Spec.User)
	patch := client.MergeFromWithOptions(key.DeepCopy(), client.MergeFromWithOptimisticLock{})
	controllerutil.RemoveFinalizer(key, Finalizer)
	return client.IgnoreNotFound(r.Patch(ctx, key, patch))
}
