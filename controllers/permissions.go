package controllers

import (
	authorizationv1 "k8s.io/api/authorization/v1"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
)

// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get

// RequiredPermissions are the permissions the controller cannot work
// without, as its RBAC markers grant them: the manager checks them at start
// and names those its identity lacks. TestStartUpCheckAsksForTheGeneratedRole
// holds them to config/rbac/role.yaml, which the markers generate.
func RequiredPermissions(slotNamespace string) []authorizationv1.ResourceAttributes {
	var out []authorizationv1.ResourceAttributes
	add := func(group, resource, namespace string, verbs ...string) {
		for _, v := range verbs {
			out = append(out, authorizationv1.ResourceAttributes{Group: group, Resource: resource, Namespace: namespace, Verb: v})
		}
	}
	// delegate: the self-service policy lets only delegates update the
	// APIKeys of other users, which the controller does with every key.
	add("keymint.io", "apikeys", "", "get", "list", "watch", "update", "patch", keymintv1alpha1.VerbDelegate)
	add("keymint.io", "apikeys/status", "", "get", "update", "patch")
	add("keymint.io", "apikeys/finalizers", "", "update")
	add("", "secrets", "", "get", "list", "watch", "create", "update", "delete")
	add("coordination.k8s.io", "leases", slotNamespace, "get", "list", "watch", "create", "delete")
	add("events.k8s.io", "events", "", "create", "patch")
	add("authorization.k8s.io", "subjectaccessreviews", "", "create")
	add("rbac.authorization.k8s.io", "rolebindings", "", "list", "watch", "delete")
	add("rbac.authorization.k8s.io", "roles", "", "list", "watch", "delete")
	add("rbac.authorization.k8s.io", "clusterrolebindings", "", "list", "watch")
	add("rbac.authorization.k8s.io", "clusterroles", "", "list", "watch")
	add("", "namespaces", "", "get")
	return out
}
