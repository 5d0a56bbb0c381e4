package controllers

import (
	"context"
	"slices"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
)

// DefaultAccessRecheck is how often a key's access is checked again
// without a RoleBinding or ClusterRoleBinding event, to catch changes to
// Roles themselves.
const DefaultAccessRecheck = 5 * time.Minute

// bindingSettle are the delays after a binding event at which keys are
// checked again, in case the API server's authorizer, which watches RBAC
// objects itself, had not seen the change yet (seconds under load).
var bindingSettle = []time.Duration{time.Second, 3 * time.Second, 7 * time.Second}

// accessGroups are the groups the access check presents for key's user:
// those the API server recorded when the user created the key, or none
// beyond system:authenticated when someone else created it.
func accessGroups(key *keymintv1alpha1.APIKey) []string {
	groups := []string{"system:authenticated"}
	if req := key.Spec.Requester; req != nil && req.Username == key.Spec.User {
		for _, g := range req.Groups {
			if !slices.Contains(groups, g) {
				groups = append(groups, g)
			}
		}
	}
	return groups
}

// hasAccess asks the API server whether key's user may "use" apikeys in
// key's namespace.
func (r *APIKeyReconciler) hasAccess(ctx context.Context, key *keymintv1alpha1.APIKey) (bool, error) {
	review := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User:   key.Spec.User,
		Groups: accessGroups(key),
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: key.Namespace,
			Verb:      keymintv1alpha1.VerbUse,
			Group:     keymintv1alpha1.GroupVersion.Group,
			Resource:  "apikeys",
		},
	}}
	if err := r.Create(ctx, review); err != nil {
		return false, err
	}
	return review.Status.Allowed, nil
}

// denyAccess takes away what a user without access holds: an issued key is
// Suspended (Secret deleted, slot freed); a key never issued stays Pending.
// Both wait for an administrator to grant access again.
func (r *APIKeyReconciler) denyAccess(ctx context.Context, key *keymintv1alpha1.APIKey) error {
	if _, err := r.deleteOwnedSecret(ctx, key); err != nil {
		return err
	}
	if err := r.revokeOwnerAccess(ctx, key); err != nil {
		return err
	}
	if err := r.releaseSlots(ctx, key, r.APIReader); err != nil {
		return err
	}
	now := r.Clock.Now()
	if key.Status.KeyID == "" {
		msg := "user " + key.Spec.User + ` is not authorised for "use" on apikeys in namespace ` + key.Namespace +
			"; an administrator grants it by binding the keymint-user ClusterRole"
		if readyReason(key) != keymintv1alpha1.ReasonAccessDenied {
			if err := r.record(ctx, key, corev1.EventTypeWarning, keymintv1alpha1.ReasonAccessDenied, "%s", msg); err != nil {
				return err
			}
		}
		setStalled(key, now, keymintv1alpha1.ReasonAccessDenied, msg)
		return nil
	}
	if key.Status.Phase != keymintv1alpha1.PhaseSuspended {
		if err := r.record(ctx, key, corev1.EventTypeWarning, keymintv1alpha1.ReasonSuspended,
			"key %s of user %s suspended: the user lost access to API keys; its Secret is deleted", key.Status.KeyID, key.Spec.User); err != nil {
			return err
		}
	}
	setSuspended(key, now, "key "+key.Status.KeyID+" is suspended: user "+key.Spec.User+
		` is no longer authorised for "use" on apikeys; a fresh key is issued when access is granted again`)
	return nil
}

// bindingChanged re-checks the keys a RoleBinding or ClusterRoleBinding
// change may affect: a new binding may grant access to keys that lack it, a
// removed one may take it from keys that have it. Each key is checked now
// and a few times in the next seconds.
func (r *APIKeyReconciler) bindingChanged() handler.Funcs {
	// Every key in the binding's scope is checked, whatever its cached
	// state: the cache may not yet show a key's last status (just
	// suspended, just issued), and a key skipped on a stale status would
	// keep or lack access until the periodic re-check.
	enqueue := func(ctx context.Context, obj client.Object, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
		if isOwnerAccess(obj) {
			return
		}
		list := &keymintv1alpha1.APIKeyList{}
		if err := r.List(ctx, list, client.InNamespace(obj.GetNamespace())); err != nil {
			return
		}
		for i := range list.Items {
			req := reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])}
			q.Add(req)
			for _, d := range bindingSettle {
				q.AddAfter(req, d)
			}
		}
	}
	return handler.Funcs{
		CreateFunc: func(ctx context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			enqueue(ctx, e.Object, q)
		},
		UpdateFunc: func(ctx context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			enqueue(ctx, e.ObjectNew, q)
		},
		DeleteFunc: func(ctx context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			enqueue(ctx, e.Object, q)
		},
	}
}

// isOwnerAccess reports whether a binding is one of keymint's grants of a
// key's Secret to its owner (see grantOwnerAccess). Those grant get on one
// Secret, never "use", so they change no key's access: without this, every
// key issued would re-check every key of its namespace. Tampering with such
// a binding is caught by the periodic re-check.
func isOwnerAccess(binding client.Object) bool {
	ref := metav1.GetControllerOfNoCopy(binding)
	return ref != nil && ref.Kind == "APIKey" && ref.APIVersion == keymintv1alpha1.GroupVersion.String() &&
		binding.GetName() == ownerAccessName(ref.Name)
}
