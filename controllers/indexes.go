package controllers

import (
	"context"
	"maps"
	"slices"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/priorityqueue"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
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

// slotChanged passes the creation and deletion of slot Leases.
var slotChanged = predicate.Funcs{
	UpdateFunc:  func(event.UpdateEvent) bool { return false },
	GenericFunc: func(event.GenericEvent) bool { return false },
}

// slotTakenRefresh is how long after a slot is taken the user's waiting
// keys look again.
const slotTakenRefresh = time.Second

// slotEvents maps slot Leases to the keys they concern. A slot taken
// changes what the user's waiting keys report, which can wait behind other
// work. A slot freed lets the oldest waiting keys in, unless its holder is
// still Active with its Secret: keymint frees a slot only after the
// holder's Secret is gone or while it is deleted, so that slot was deleted
// by someone else. Its holder then claims a slot
// again at once, and the waiting keys are not called in to take it.
func (r *APIKeyReconciler) slotEvents() handler.TypedFuncs[client.Object, reconcile.Request] {
	return handler.TypedFuncs[client.Object, reconcile.Request]{
		// Only the waiting keys' messages change, which can wait a moment:
		// a holder claiming its slot again after a deletion (below) must
		// not find its other slot taken by a key called in meanwhile.
		CreateFunc: func(ctx context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			for _, req := range r.waitingKeysOfSlot(ctx, e.Object) {
				addBehindQueuedWorkAfter(q, req, slotTakenRefresh)
			}
		},
		DeleteFunc: func(ctx context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			lease, ok := e.Object.(*coordinationv1.Lease)
			if !ok {
				return
			}
			holder := slots.HolderRef(lease)
			q.Add(reconcile.Request{NamespacedName: holder})
			if r.stillActive(ctx, lease, holder) {
				log.FromContext(ctx).Info("a slot Lease of an Active key was deleted by someone else; the key claims a slot again",
					"lease", lease.Name, "apikey", holder.String())
				return
			}
			// The oldest waiting keys, which the freed slot is for, are
			// called in; the others would only rewrite their messages, as
			// they will once the slot is taken again (CreateFunc).
			waiting := r.waitingKeysOfSlot(ctx, lease)
			log.FromContext(ctx).V(1).Info("slot freed; calling in the keys waiting for it", "lease", lease.Name, "holder", holder.String(), "waiting", len(waiting))
			for _, req := range waiting[:min(len(waiting), r.MaxKeysPerUser)] {
				q.Add(req)
			}
		},
	}
}

// stillActive reports whether the cache shows the holder of lease Active,
// not being deleted, with its Secret.
func (r *APIKeyReconciler) stillActive(ctx context.Context, lease *coordinationv1.Lease, holder types.NamespacedName) bool {
	key := &keymintv1alpha1.APIKey{}
	if err := r.Get(ctx, holder, key); err != nil || !slots.Holds(lease, key) ||
		!key.DeletionTimestamp.IsZero() || key.Status.Phase != keymintv1alpha1.PhaseActive {
		return false
	}
	return r.Get(ctx, types.NamespacedName{Namespace: key.Namespace, Name: key.Status.SecretName}, &corev1.Secret{}) == nil
}

// waitingKeysOfSlot maps a slot to the keys of its user that have no
// key yet, the longest waiting first (the order in which they claim).
func (r *APIKeyReconciler) waitingKeysOfSlot(ctx context.Context, lease client.Object) []reconcile.Request {
	userHash, ok := lease.GetLabels()[slots.LabelUserHash]
	if !ok {
		return nil
	}
	list := &keymintv1alpha1.APIKeyList{}
	if err := r.List(ctx, list, client.MatchingFields{IndexWaitingUser: userHash}); err != nil {
		return nil
	}
	var waiting []slots.Candidate
	for i := range list.Items {
		// The key that just took this slot has nothing to wait for.
		if k := &list.Items[i]; !slots.Holds(lease.(*coordinationv1.Lease), k) {
			waiting = append(waiting, candidate(k))
		}
	}
	reqs := make([]reconcile.Request, 0, len(waiting))
	for _, c := range slots.Sorted(waiting) {
		reqs = append(reqs, reconcile.Request{NamespacedName: c.Key})
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

// secretCreatedOrGone passes the creation and deletion of minted Secrets:
// minted Secrets are immutable.
var secretCreatedOrGone = predicate.Funcs{
	UpdateFunc:  func(event.UpdateEvent) bool { return false },
	GenericFunc: func(event.GenericEvent) bool { return false },
}

// secretEvents maps minted Secrets to the APIKey that controls them. A
// Secret's deletion calls for its key's follow-up (reissue, or the rest of
// an expiry), which can wait, at low priority, behind the Secrets of other
// keys due at the same moment: under no load it runs at once. A Secret
// whose APIKey the cache does not hold, such as one left by an APIKey
// deleted without its finalizer (seen at once, or at the manager's start),
// calls in that APIKey's name, whose reconcile deletes it.
func (r *APIKeyReconciler) secretEvents() handler.TypedFuncs[client.Object, reconcile.Request] {
	return handler.TypedFuncs[client.Object, reconcile.Request]{
		CreateFunc: func(ctx context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			if req, owner, ok := ownerOf(e.Object); ok {
				key := &keymintv1alpha1.APIKey{}
				if err := r.Get(ctx, req.NamespacedName, key); err != nil || key.UID != owner.UID {
					q.Add(req)
				}
			}
		},
		DeleteFunc: func(_ context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			if req, _, ok := ownerOf(e.Object); ok {
				addBehindQueuedWork(q, req)
			}
		},
	}
}

// ownerOf names the APIKey that controls a Secret.
func ownerOf(secret client.Object) (reconcile.Request, *metav1.OwnerReference, bool) {
	owner := metav1.GetControllerOfNoCopy(secret)
	if owner == nil || owner.Kind != "APIKey" || owner.APIVersion != keymintv1alpha1.GroupVersion.String() {
		return reconcile.Request{}, nil, false
	}
	return reconcile.Request{NamespacedName: types.NamespacedName{Namespace: secret.GetNamespace(), Name: owner.Name}}, owner, true
}

// addBehindQueuedWork adds req at low priority when the queue has
// priorities.
func addBehindQueuedWork(q workqueue.TypedRateLimitingInterface[reconcile.Request], req reconcile.Request) {
	addBehindQueuedWorkAfter(q, req, 0)
}

// addBehindQueuedWorkAfter adds req after d, at low priority when the
// queue has priorities.
func addBehindQueuedWorkAfter(q workqueue.TypedRateLimitingInterface[reconcile.Request], req reconcile.Request, d time.Duration) {
	if pq, ok := q.(priorityqueue.PriorityQueue[reconcile.Request]); ok {
		pq.AddWithOpts(priorityqueue.AddOpts{After: d, Priority: ptr.To(handler.LowPriority)}, req)
		return
	}
	if d > 0 {
		q.AddAfter(req, d)
		return
	}
	q.Add(req)
}
