package controllers

import (
	"context"
	"slices"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/metrics"
)

// DefaultAccessRecheck is how often a key's access is checked again
// without an RBAC event: binding and role changes re-check the keys they
// concern within seconds, so this only bounds what a missed event costs.
const DefaultAccessRecheck = time.Hour

// bindingSettle are the delays after an RBAC event at which the keys it
// concerns are checked again, in case the API server's authorizer, which
// watches RBAC objects itself, had not seen the change yet (seconds under
// load; a CI run once saw more than 7).
var bindingSettle = []time.Duration{time.Second, 3 * time.Second, 7 * time.Second, 15 * time.Second, 30 * time.Second}

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
	metrics.AccessReviews.Inc()
	if err := r.Create(ctx, review); err != nil {
		return false, err
	}
	return review.Status.Allowed, nil
}

// IndexRoleRef indexes RoleBindings and ClusterRoleBindings by the role
// they bind, as "Kind/name": a role's edit finds the bindings that bind it.
const IndexRoleRef = "roleRef"

// everyone are the groups a binding to which may concern any key: every
// review carries system:authenticated, and a key's user may be any
// service account.
var everyone = []string{"system:authenticated", "system:serviceaccounts"}

func indexRoleRef(obj client.Object) []string {
	switch b := obj.(type) {
	case *rbacv1.RoleBinding:
		return []string{b.RoleRef.Kind + "/" + b.RoleRef.Name}
	case *rbacv1.ClusterRoleBinding:
		return []string{b.RoleRef.Kind + "/" + b.RoleRef.Name}
	}
	return nil
}

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
		for _, d := range bindingSettle {
			q.AddAfter(req, d)
		}
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
