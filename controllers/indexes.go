// The cache indexes the controller and its event handlers look keys and
// bindings up by.

package controllers

import (
	rbacv1 "k8s.io/api/rbac/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

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

// IndexRoleRef indexes RoleBindings and ClusterRoleBindings by the role
// they bind, as "Kind/name": a role's edit finds the bindings that bind it.
const IndexRoleRef = "roleRef"

func indexRoleRef(obj client.Object) []string {
	switch b := obj.(type) {
	case *rbacv1.RoleBinding:
		return []string{b.RoleRef.Kind + "/" + b.RoleRef.Name}
	case *rbacv1.ClusterRoleBinding:
		return []string{b.RoleRef.Kind + "/" + b.RoleRef.Name}
	}
	return nil
}

// isWaiting reports whether key has no key yet and will get one when a
// slot frees, or is issued and renews when one frees.
func isWaiting(key *keymintv1alpha1.APIKey) bool {
	if !key.DeletionTimestamp.IsZero() {
		return false
	}
	return renewalWaiting(key) ||
		!key.Status.Phase.Issued() &&
			key.Status.Phase != keymintv1alpha1.PhaseExpired &&
			!apimeta.IsStatusConditionTrue(key.Status.Conditions, keymintv1alpha1.ConditionStalled)
}

func candidate(key *keymintv1alpha1.APIKey) slots.Candidate {
	return slots.Candidate{Key: client.ObjectKeyFromObject(key), Created: key.CreationTimestamp.Time, Renewal: renewalWaiting(key)}
}
