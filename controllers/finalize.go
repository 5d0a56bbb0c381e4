package controllers

import (
	"context"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
)

// finalize revokes a deleted APIKey's key: its Secret is deleted and its
// slot freed, and the deletion recorded, before the finalizer goes. A
// missing Secret or slot, or a namespace being deleted, does not hold it
// up. A key whose finalizer someone else removed (another finalizer still
// holds it) is revoked and recorded all the same.
func (r *APIKeyReconciler) finalize(ctx context.Context, key *keymintv1alpha1.APIKey) error {
	if err := r.revoke(ctx, key); err != nil {
		return err
	}
	if err := r.cap().Release(ctx, key); err != nil {
		return err
	}
	// The finalizer stays until the record is written. A key that comes
	// back (a conflict removing the finalizer, or someone else's finalizer
	// holding it while its owner changes it) is recorded, and its Event
	// emitted, once.
	if !r.deleted.wasRecorded(key.UID) {
		if err := r.recordDeleted(ctx, key, "APIKey deleted"); err != nil {
			return err
		}
		r.deleted.recorded(key.UID)
	}
	if !controllerutil.ContainsFinalizer(key, keymintv1alpha1.Finalizer) {
		return nil
	}
	patch := client.MergeFromWithOptions(key.DeepCopy(), client.MergeFromWithOptimisticLock{})
	controllerutil.RemoveFinalizer(key, keymintv1alpha1.Finalizer)
	return client.IgnoreNotFound(r.Patch(ctx, key, patch))
}

// recordDeleted records that key was deleted and its key revoked, once per
// APIKey (the record's ID is), on whichever path saw it go.
func (r *APIKeyReconciler) recordDeleted(ctx context.Context, key *keymintv1alpha1.APIKey, how string) error {
	return r.lifecycle().record(ctx, key, r.Clock.Now(), deletion(key, how))
}

// cleanUpAfter revokes what an APIKey that is gone left behind, such as one
// deleted without its finalizer: its slots and its Secrets, found by their
// APIKey label and deleted, those very objects, if their controller is an
// APIKey of that name that no longer exists. A new APIKey of the same name
// keeps its own. The deletion is recorded first, from the APIKey's last
// state if this manager saw it go, else from what its signed Secret says.
func (r *APIKeyReconciler) cleanUpAfter(ctx context.Context, name types.NamespacedName) error {
	live := &keymintv1alpha1.APIKey{}
	err := r.APIReader.Get(ctx, name, live)
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	gone := func(uid types.UID) bool { return err != nil || uid != live.UID }
	secrets := &corev1.SecretList{}
	if err := r.List(ctx, secrets, client.InNamespace(name.Namespace),
		client.MatchingLabels{keymintv1alpha1.LabelManagedBy: keymintv1alpha1.ManagedBy, keymintv1alpha1.LabelAPIKey: name.Name}); err != nil {
		return err
	}
	if err := r.recordGone(ctx, name, secrets.Items, gone); err != nil {
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
	for _, k := range r.deleted.of(name) {
		if gone(k.UID) {
			r.deleted.forget(name, k.UID)
		}
	}
	return nil
}

// recordGone records the deletion of every APIKey once named name that is
// gone: from its tombstone, or, when this manager did not see it go (it
// was down), from a Secret keymint signed for it. A Secret that keymint
// did not sign tells nothing worth a record.
func (r *APIKeyReconciler) recordGone(ctx context.Context, name types.NamespacedName, secrets []corev1.Secret, gone func(types.UID) bool) error {
	seen := map[types.UID]bool{}
	for _, k := range r.deleted.of(name) {
		if !gone(k.UID) || seen[k.UID] {
			continue
		}
		seen[k.UID] = true
		if err := r.recordDeleted(ctx, k, "APIKey deleted without keymint's finalizer"); err != nil {
			return err
		}
	}
	for i := range secrets {
		secret := &secrets[i]
		_, owner, ok := ownerOf(secret)
		if !ok || owner.Name != name.Name || !gone(owner.UID) || seen[owner.UID] {
			continue
		}
		k := &keymintv1alpha1.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: name.Namespace, Name: name.Name, UID: owner.UID}}
		k.Spec.User = string(secret.Data[keymintv1alpha1.DataUser])
		in, err := r.Signer.Verify(secret, k)
		if err != nil {
			continue
		}
		seen[owner.UID] = true
		k.Status.KeyID = in.KeyID
		if err := r.recordDeleted(ctx, k, "APIKey deleted without keymint's finalizer"); err != nil {
			return err
		}
	}
	return nil
}
