package controllers

import (
	"context"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/slots"
)

// IndexUser indexes APIKeys by spec.user, to find a user's keys in every
// namespace without a scan.
const IndexUser = "spec.user"

func indexUser(obj client.Object) []string {
	return []string{obj.(*keymintv1alpha1.APIKey).Spec.User}
}

// slotFreed passes only deletions of slot Leases: taking a slot lets no
// other key in.
var slotFreed = predicate.Funcs{
	CreateFunc:  func(event.CreateEvent) bool { return false },
	UpdateFunc:  func(event.UpdateEvent) bool { return false },
	DeleteFunc:  func(event.DeleteEvent) bool { return true },
	GenericFunc: func(event.GenericEvent) bool { return false },
}

// waitingKeysOfSlot maps a freed slot to the keys of its user that have no
// key yet.
func (r *APIKeyReconciler) waitingKeysOfSlot(ctx context.Context, lease client.Object) []reconcile.Request {
	user, ok := lease.GetAnnotations()[slots.AnnotationUser]
	if !ok {
		return nil
	}
	list := &keymintv1alpha1.APIKeyList{}
	if err := r.List(ctx, list, client.MatchingFields{IndexUser: user}); err != nil {
		return nil
	}
	var reqs []reconcile.Request
	for i := range list.Items {
		if k := &list.Items[i]; isWaiting(k) {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(k)})
		}
	}
	return reqs
}
