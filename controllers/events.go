// Event handlers: which APIKeys a change to another object calls in (a
// slot, a Secret, a binding or role, the APIKey itself), and the predicates
// that drop the changes that need no work.

package controllers

import (
	"context"
	"maps"
	"slices"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
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
	// A key with a previous key frees its second slot when it retires it.
	if err := r.Get(ctx, holder, key); err != nil || !slots.Holds(lease, key) ||
		!key.DeletionTimestamp.IsZero() || !key.Status.Phase.Issued() || key.Status.PreviousKey != nil {
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
// annotations, finalizers or deletion, and a use of a previous key (for
// PreviousKeyInUse). The controller's own status writes do not come back
// as another reconcile.
var specOrMetaChanged = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		o, n := e.ObjectOld, e.ObjectNew
		return o.GetGeneration() != n.GetGeneration() ||
			previousKeyUsed(o, n) ||
			!maps.Equal(o.GetLabels(), n.GetLabels()) ||
			!maps.Equal(o.GetAnnotations(), n.GetAnnotations()) ||
			!slices.Equal(o.GetFinalizers(), n.GetFinalizers()) ||
			!o.GetDeletionTimestamp().Equal(n.GetDeletionTimestamp())
	},
}

// previousKeyUsed reports whether an update recorded a use of the
// previous key: the Usage writer does so at most once per key per
// --last-used-interval.
func previousKeyUsed(o, n client.Object) bool {
	ok, okOld := o.(*keymintv1alpha1.APIKey)
	nk, okNew := n.(*keymintv1alpha1.APIKey)
	if !okOld || !okNew || nk.Status.PreviousKey == nil || nk.Status.PreviousKey.LastUsedAt == nil {
		return false
	}
	return ok.Status.PreviousKey == nil || !nk.Status.PreviousKey.LastUsedAt.Equal(ok.Status.PreviousKey.LastUsedAt)
}

// secretCreatedOrGone passes the creation and deletion of minted Secrets,
// and a change of what a mutable one says (its annotations) that is not a
// renewal's (a new keymint.io/revision), which is someone's tampering: the
// key's pass deletes such a Secret and mints anew. A renewal's write, the
// controller's own, does not come back as another pass; a forged one's
// signature fails at the verifier at once, and the key's next pass finds it.
var secretCreatedOrGone = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		o, n := e.ObjectOld.GetAnnotations(), e.ObjectNew.GetAnnotations()
		return !maps.Equal(o, n) && o[keymintv1alpha1.AnnotationRevision] == n[keymintv1alpha1.AnnotationRevision]
	},
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
		UpdateFunc: func(_ context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			if req, _, ok := ownerOf(e.ObjectNew); ok {
				addBehindQueuedWork(q, req)
			}
		},
	}
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

// everyone are the groups a binding to which may concern any key: every
// review carries system:authenticated, and a key's user may be any
// service account.
var everyone = []string{"system:authenticated", "system:serviceaccounts"}

// grants is a binding as the access re-check sees it: whom it binds, and
// where (all namespaces for a ClusterRoleBinding).
type grants struct {
	namespace string
	subjects  []rbacv1.Subject
}

func grantsOf(obj client.Object) (grants, bool) {
	switch b := obj.(type) {
	case *rbacv1.RoleBinding:
		return grants{namespace: b.Namespace, subjects: b.Subjects}, true
	case *rbacv1.ClusterRoleBinding:
		return grants{subjects: b.Subjects}, true
	}
	return grants{}, false
}

// bindingEvents re-checks the keys a RoleBinding or ClusterRoleBinding
// change may affect: those whose user, or one of whose recorded groups, is
// a subject of the binding before or after the change. A new binding may
// grant access to keys that lack it, a removed one may take it from keys
// that have it; any other key's access is unchanged, and costs no review.
// The bindings of the initial list change nothing: every key is reconciled
// at the start anyway.
func (r *APIKeyReconciler) bindingEvents() handler.TypedFuncs[client.Object, reconcile.Request] {
	return handler.TypedFuncs[client.Object, reconcile.Request]{
		CreateFunc: func(ctx context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			if !e.IsInInitialList {
				r.recheck(ctx, q, e.Object)
			}
		},
		UpdateFunc: func(ctx context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			r.recheck(ctx, q, e.ObjectOld, e.ObjectNew)
		},
		DeleteFunc: func(ctx context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			r.recheck(ctx, q, e.Object)
		},
	}
}

// roleEvents re-checks the keys whose user a changed or deleted Role or
// ClusterRole is bound to: a rule added or removed changes what it grants.
func (r *APIKeyReconciler) roleEvents() handler.TypedFuncs[client.Object, reconcile.Request] {
	bound := func(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request], role client.Object) {
		if isOwnerAccess(role) {
			return
		}
		kind := "ClusterRole"
		if role.GetNamespace() != "" {
			kind = "Role"
		}
		ref := client.MatchingFields{IndexRoleRef: kind + "/" + role.GetName()}
		rbs := &rbacv1.RoleBindingList{}
		if err := r.List(ctx, rbs, client.InNamespace(role.GetNamespace()), ref); err != nil {
			log.FromContext(ctx).Error(err, "listing the bindings of a role")
			return
		}
		var bindings []client.Object
		for i := range rbs.Items {
			bindings = append(bindings, &rbs.Items[i])
		}
		if kind == "ClusterRole" {
			crbs := &rbacv1.ClusterRoleBindingList{}
			if err := r.List(ctx, crbs, ref); err != nil {
				log.FromContext(ctx).Error(err, "listing the bindings of a role")
				return
			}
			for i := range crbs.Items {
				bindings = append(bindings, &crbs.Items[i])
			}
		}
		r.recheck(ctx, q, bindings...)
	}
	return handler.TypedFuncs[client.Object, reconcile.Request]{
		UpdateFunc: func(ctx context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			bound(ctx, q, e.ObjectNew)
		},
		DeleteFunc: func(ctx context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			bound(ctx, q, e.Object)
		},
	}
}

// recheck queues the keys bindings concern now and a few times in the next
// seconds, in case the API server's authorizer, which watches RBAC objects
// itself, had not seen the change yet. Every such key is checked, whatever
// its cached state: the cache may not yet show a key's last status.
func (r *APIKeyReconciler) recheck(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request], bindings ...client.Object) {
	keys := map[reconcile.Request]bool{}
	for _, b := range bindings {
		g, ok := grantsOf(b)
		if !ok || isOwnerAccess(b) {
			continue
		}
		if err := r.keysGranted(ctx, g, keys); err != nil {
			log.FromContext(ctx).Error(err, "finding the keys a binding concerns; the periodic re-check will catch the change")
		}
	}
	for req := range keys {
		q.Add(req)
	}
	if len(keys) == 0 {
		return
	}
	// One timer a delay, each adding every key: a queue keeps one waiting
	// entry an item, at its earliest time, so AddAfter at 1 s, 3 s, ...
	// would leave only the first.
	after := r.after
	if after == nil {
		after = func(d time.Duration, f func()) { time.AfterFunc(d, f) }
	}
	for _, d := range bindingSettle {
		after(d, func() {
			for req := range keys {
				q.Add(req)
			}
		})
	}
}

// keysGranted adds to keys the APIKeys a binding's subjects concern. It
// scans the cached keys in the binding's scope once, without copying them:
// an index of keys by user and group would cost memory for every key, and
// bindings change far less often than keys are read.
func (r *APIKeyReconciler) keysGranted(ctx context.Context, g grants, keys map[reconcile.Request]bool) error {
	users, groups, all := map[string]bool{}, map[string]bool{}, false
	for _, s := range g.subjects {
		switch {
		case s.Kind == rbacv1.UserKind:
			users[s.Name] = true
		case s.Kind == rbacv1.ServiceAccountKind:
			// The username the API server gives a service account.
			users["system:serviceaccount:"+s.Namespace+":"+s.Name] = true
		case s.Kind == rbacv1.GroupKind && slices.Contains(everyone, s.Name):
			all = true
		case s.Kind == rbacv1.GroupKind:
			groups[s.Name] = true
		}
	}
	if !all && len(users) == 0 && len(groups) == 0 {
		return nil
	}
	list := &keymintv1alpha1.APIKeyList{}
	if err := r.List(ctx, list, client.InNamespace(g.namespace), client.UnsafeDisableDeepCopy); err != nil {
		return err
	}
	for i := range list.Items {
		k := &list.Items[i]
		if all || users[k.Spec.User] || slices.ContainsFunc(accessGroups(k), func(g string) bool { return groups[g] }) {
			keys[reconcile.Request{NamespacedName: client.ObjectKeyFromObject(k)}] = true
		}
	}
	return nil
}

// apiKeyEvents queues an APIKey on every event, as the builder's For does,
// and remembers a deleted one's last state before its pass is queued.
func (r *APIKeyReconciler) apiKeyEvents() handler.TypedEventHandler[client.Object, reconcile.Request] {
	enqueue := &handler.EnqueueRequestForObject{}
	return handler.TypedFuncs[client.Object, reconcile.Request]{
		CreateFunc:  enqueue.Create,
		UpdateFunc:  enqueue.Update,
		GenericFunc: enqueue.Generic,
		DeleteFunc: func(ctx context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			if key, ok := e.Object.(*keymintv1alpha1.APIKey); ok {
				r.deleted.remember(key)
			}
			enqueue.Delete(ctx, e, q)
		},
	}
}
