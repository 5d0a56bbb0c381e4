package controllers

import (
	"context"
	"fmt"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
)

// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=roles;rolebindings,verbs=delete

// Nobody reads a key's Secret directly, its owner included: people see
// their key through keymint's API (an APIKeyReveal), which records the view
// first, on every cluster; workloads mount the Secret. Earlier versions
// granted a key's user get on its Secret, by a Role and a RoleBinding the
// APIKey controls; a read through them is a view keymint cannot see where
// the API server's audit log is out of reach. RemoveOwnerGrants takes them
// away once, when a manager of this version first leads; the garbage
// collector takes those of APIKeys deleted since.

// ownerAccessName names the Role and the RoleBinding earlier versions
// granted a key's owner.
func ownerAccessName(apikey string) string { return "keymint-apikey-" + apikey }

// RemoveOwnerGrants deletes every owner grant earlier versions made: the
// Roles and RoleBindings labelled as keymint's, named for the APIKey that
// controls them. It runs on the leader, once.
// The manager's cache holds no binding of keymint's own: it lists them
// from the API server.
type RemoveOwnerGrants struct {
	Reader client.Reader
	Writer client.Writer
}

// NeedLeaderElection: one manager removes them.
func (RemoveOwnerGrants) NeedLeaderElection() bool { return true }

// Start removes the grants and returns; a failure is logged, and the next
// leader tries again.
func (g RemoveOwnerGrants) Start(ctx context.Context) error {
	n, err := g.remove(ctx)
	if err != nil {
		log.FromContext(ctx).Error(err, "removing the owner grants of an earlier version; the next leader tries again")
		return nil
	}
	if n > 0 {
		log.FromContext(ctx).Info("removed the owner grants of an earlier version: owners see their keys through keymint's API", "objects", n)
	}
	return nil
}

func (g RemoveOwnerGrants) remove(ctx context.Context) (int, error) {
	mine := client.MatchingLabels{keymintv1alpha1.LabelManagedBy: keymintv1alpha1.ManagedBy}
	roles, bindings := &rbacv1.RoleList{}, &rbacv1.RoleBindingList{}
	if err := g.Reader.List(ctx, bindings, mine, client.HasLabels{keymintv1alpha1.LabelAPIKey}); err != nil {
		return 0, err
	}
	if err := g.Reader.List(ctx, roles, mine, client.HasLabels{keymintv1alpha1.LabelAPIKey}); err != nil {
		return 0, err
	}
	var grants []client.Object
	for i := range bindings.Items {
		grants = append(grants, &bindings.Items[i])
	}
	for i := range roles.Items {
		grants = append(grants, &roles.Items[i])
	}
	n := 0
	for _, obj := range grants {
		if !isOwnerAccess(obj) {
			continue
		}
		uid := obj.GetUID()
		if err := client.IgnoreNotFound(g.Writer.Delete(ctx, obj, client.Preconditions{UID: &uid})); err != nil {
			return n, fmt.Errorf("deleting %s/%s: %w", obj.GetNamespace(), obj.GetName(), err)
		}
		n++
	}
	return n, nil
}

// isOwnerAccess reports whether a binding or role is one of the grants of
// a key's Secret to its owner that earlier versions made: named for the
// APIKey that controls it. Its events concern no key's access.
func isOwnerAccess(obj client.Object) bool {
	ref := metav1.GetControllerOfNoCopy(obj)
	return ref != nil && ref.Kind == "APIKey" && ref.APIVersion == keymintv1alpha1.GroupVersion.String() &&
		obj.GetName() == ownerAccessName(ref.Name)
}
