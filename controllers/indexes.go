package controllers

import (
	"context"
	"maps"
	"slices"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/priorityqueue"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/slots"
)

// IndexWaitingUser indexes the APIKeys that wait for a slot by the hash of
// their user that labels the user's slots (slots.UserHash): a key finds the
// keys waiting with it, and a freed slot the keys waiting for it, in every
// namespace without a scan. Active and expired keys, most of a cluster's,
// are left out: every indexed value costs the manager memory.
const IndexWaitingUser = "waiting.spec.user.hash"

func indexWaitingUser(obj client.Object) []string {
	key := obj.(*keymintv1alpha1.APIKey)
	if !isWaiting(key) {
		return nil
	}
	return []string{slots.UserHash(key.Spec.User)}
}

// slotChanged passes the creation and deletion of slot Leases: a slot
// freed lets a waiting key in, and a slot taken changes what the waiting
// keys report.
var slotChanged = predicate.Funcs{
	UpdateFunc:  func(event.UpdateEvent) bool { return false },
	GenericFunc: func(event.GenericEvent) bool { return false },
}

// waitingKeysOfSlot maps a slot to the keys of its user that have no
// key yet.
func (r *APIKeyReconciler) waitingKeysOfSlot(ctx context.Context, lease client.Object) []reconcile.Request {
	userHash, ok := lease.GetLabels()[slots.LabelUserHash]
	if !ok {
		return nil
	}
	list := &keymintv1alpha1.APIKeyList{}
	if err := r.List(ctx, list, client.MatchingFields{IndexWaitingUser: userHash}); err != nil {
		return nil
	}
	var reqs []reconcile.Request
	for i := range list.Items {
		// The key that just took this slot has nothing to wait for.
		if k := &list.Items[i]; !holds(lease.(*coordinationv1.Lease), k) {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(k)})
		}
	}
	return reqs
}

// specOrMetaChanged passes APIKey updates that may need work: spec, labels,
// annotations, finalizers or deletion. The controller's own status writes
// do not come back as another reconcile.
var specOrMetaChanged = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		o, n := e.ObjectOld, e.ObjectNew
		return o.GetGeneration() != n.GetGeneration() ||
			!maps.Equal(o.GetLabels(), n.GetLabels()) ||
			!maps.Equal(o.GetAnnotations(), n.GetAnnotations()) ||
			!slices.Equal(o.GetFinalizers(), n.GetFinalizers()) ||
			!o.GetDeletionTimestamp().Equal(n.GetDeletionTimestamp())
	},
}

// secretGone passes deletions of minted Secrets only: a deleted Secret is
// reissued; the controller's own creates need no second look, and minted
// Secrets are immutable.
var secretGone = predicate.Funcs{
	CreateFunc:  func(event.CreateEvent) bool { return false },
	UpdateFunc:  func(event.UpdateEvent) bool { return false },
	GenericFunc: func(event.GenericEvent) bool { return false },
}

// ownerBehindQueuedWork enqueues the APIKey that controls a Secret at low
// priority. A Secret's deletion calls for its key's follow-up (reissue, or
// the rest of an expiry), which can wait behind the Secrets of other keys
// due at the same moment: under no load it runs at once.
var ownerBehindQueuedWork = handler.Funcs{
	DeleteFunc: func(_ context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
		owner := metav1.GetControllerOfNoCopy(e.Object)
		if owner == nil || owner.Kind != "APIKey" || owner.APIVersion != keymintv1alpha1.GroupVersion.String() {
			return
		}
		addBehindQueuedWork(q, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: e.Object.GetNamespace(), Name: owner.Name}})
	},
}

// addBehindQueuedWork adds req at low priority when the queue has
// priorities.
func addBehindQueuedWork(q workqueue.TypedRateLimitingInterface[reconcile.Request], req reconcile.Request) {
	if pq, ok := q.(priorityqueue.PriorityQueue[reconcile.Request]); ok {
		pq.AddWithOpts(priorityqueue.AddOpts{Priority: ptr.To(handler.LowPriority)}, req)
		return
	}
	q.Add(req)
}
