package controllers

import (
	"context"
	"slices"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"

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
