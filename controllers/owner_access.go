package controllers

import (
	"context"
	"fmt"

	"golang.org/x/sync/errgroup"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
)

// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=roles;rolebindings,verbs=get;create;update;delete

// The owner of a key reads it, and nobody else: while the key is Active,
// its user is granted get on exactly its Secret, by a Role and a
// RoleBinding the APIKey owns. RBAC lets the manager grant that because it
// holds get on Secrets itself.

// ownerAccessName names the Role and the RoleBinding of key's owner.
func ownerAccessName(apikey string) string { return "keymint-apikey-" + apikey }

func ownerAccessMeta(key *keymintv1alpha1.APIKey) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:      ownerAccessName(key.Name),
		Namespace: key.Namespace,
		Labels:    map[string]string{keymintv1alpha1.LabelManagedBy: keymintv1alpha1.ManagedBy, keymintv1alpha1.LabelAPIKey: key.Name},
		OwnerReferences: []metav1.OwnerReference{{
			APIVersion: keymintv1alpha1.GroupVersion.String(), Kind: "APIKey", Name: key.Name, UID: key.UID,
			Controller: new(true), BlockOwnerDeletion: new(true),
		}},
	}
}

// ownerRole grants get on key's Secret, and nothing else: no list, no
// watch, no other Secret.
func ownerRole(key *keymintv1alpha1.APIKey) *rbacv1.Role {
	return &rbacv1.Role{
		ObjectMeta: ownerAccessMeta(key),
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{""}, Resources: []string{"secrets"},
			ResourceNames: []string{key.SecretNameOrDefault()}, Verbs: []string{"get"},
		}},
	}
}

// ownerRoleBinding binds ownerRole to key's user, and to no one else.
func ownerRoleBinding(key *keymintv1alpha1.APIKey) *rbacv1.RoleBinding {
	return &rbacv1.RoleBinding{
		ObjectMeta: ownerAccessMeta(key),
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: ownerAccessName(key.Name)},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: key.Spec.User}},
	}
}

// grantOwnerAccess makes sure key's user may get exactly its Secret. An
// object of the same name that the APIKey does not control is never
// changed or bound: the key waits, and says why. The Role goes first, and
// the RoleBinding only once the Role is known to be the APIKey's: a binding
// made beside it could bind someone else's Role of that name.
func (r *APIKeyReconciler) grantOwnerAccess(ctx context.Context, key *keymintv1alpha1.APIKey) error {
	role := ownerRole(key)
	if err := r.ensureOwnerObject(ctx, key, "Role", role, &rbacv1.Role{}, func(have client.Object) repair {
		h := have.(*rbacv1.Role)
		if equality.Semantic.DeepEqual(h.Rules, role.Rules) {
			return keep
		}
		h.Rules = role.Rules
		return update
	}); err != nil {
		return err
	}
	binding := ownerRoleBinding(key)
	return r.ensureOwnerObject(ctx, key, "RoleBinding", binding, &rbacv1.RoleBinding{}, func(have client.Object) repair {
		h := have.(*rbacv1.RoleBinding)
		switch {
		case h.RoleRef != binding.RoleRef: // immutable
			return replace
		case equality.Semantic.DeepEqual(h.Subjects, binding.Subjects):
			return keep
		}
		h.Subjects = binding.Subjects
		return update
	})
}

// repair is what an existing Role or RoleBinding of the APIKey needs.
type repair int

const (
	keep repair = iota
	update
	// replace: delete it, and create it again on the next pass.
	replace
)

// ensureOwnerObject creates want, or, if an object of its name exists,
// checks that key controls it and corrects it as fix says.
func (r *APIKeyReconciler) ensureOwnerObject(ctx context.Context, key *keymintv1alpha1.APIKey, kind string, want, have client.Object, fix func(client.Object) repair) error {
	err := r.Create(ctx, want)
	if !apierrors.IsAlreadyExists(err) {
		return err
	}
	if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(want), have); err != nil {
		return err
	}
	if ref := metav1.GetControllerOfNoCopy(have); ref == nil || ref.UID != key.UID {
		return fmt.Errorf("%s %s/%s exists and is not this APIKey's: the key's user cannot be granted its Secret; delete it",
			kind, have.GetNamespace(), have.GetName())
	}
	switch fix(have) {
	case update:
		return r.Update(ctx, have)
	case replace:
		uid := have.GetUID()
		if err := r.Delete(ctx, have, client.Preconditions{UID: &uid}); client.IgnoreNotFound(err) != nil {
			return err
		}
		return fmt.Errorf("%s %s/%s did not grant what keymint grants; it was deleted and is created again", kind, have.GetNamespace(), have.GetName())
	}
	return nil
}

// revokeOwnerAccess deletes the Role and RoleBinding that let key's user
// read its Secret, those very objects and only if key controls them. It
// runs before the status shows the key revoked, suspended or expired, and
// before the finalizer goes: the garbage collector is not waited for.
func (r *APIKeyReconciler) revokeOwnerAccess(ctx context.Context, key *keymintv1alpha1.APIKey) error {
	return r.revokeOwnerAccessOf(ctx, client.ObjectKeyFromObject(key), func(uid types.UID) bool { return uid == key.UID })
}

// revokeOwnerAccessOf deletes the owner access of the APIKey named apikey
// whose controller UID passes controlled: the RoleBinding and the Role side
// by side.
func (r *APIKeyReconciler) revokeOwnerAccessOf(ctx context.Context, apikey types.NamespacedName, controlled func(types.UID) bool) error {
	g, ctx := errgroup.WithContext(ctx)
	for _, obj := range []client.Object{&rbacv1.RoleBinding{}, &rbacv1.Role{}} {
		g.Go(func() error {
			err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: apikey.Namespace, Name: ownerAccessName(apikey.Name)}, obj)
			if err != nil {
				return client.IgnoreNotFound(err)
			}
			if ref := metav1.GetControllerOfNoCopy(obj); ref == nil || ref.Name != apikey.Name || !controlled(ref.UID) {
				return nil
			}
			uid := obj.GetUID()
			return client.IgnoreNotFound(r.Delete(ctx, obj, client.Preconditions{UID: &uid}))
		})
	}
	return g.Wait()
}

// revoke takes key's credential away: its Secret (if keymint minted it for
// key) and its owner's grant on it, side by side, since neither needs the
// other gone first. A caller frees the key's slot only after.
func (r *APIKeyReconciler) revoke(ctx context.Context, key *keymintv1alpha1.APIKey) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		_, err := r.deleteOwnedSecret(gctx, key)
		return err
	})
	g.Go(func() error { return r.revokeOwnerAccess(gctx, key) })
	return g.Wait()
}
