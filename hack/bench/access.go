package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
)

// Bindings of the access scenario: 1,000 in the cluster, and 100 changes to
// them that concern none of the key users.
const (
	accessBindings = 1000
	accessChanges  = 100
	// accessRecheckScaled stands in for the hour of the periodic re-check,
	// so that a window of minutes measures what an idle hour costs.
	accessRecheckScaled = 2 * time.Minute
	// accessRemovals is how many users lose access, one after the other.
	accessRemovals = 5
)

// access: n Active keys, with 1,000 bindings in the cluster. Then the
// reviews 100 binding changes that concern no key user cost, how soon a
// key is Suspended after its user's binding is deleted, and the requests
// an idle manager sends per key per re-check interval.
func (b *bench) access(ctx context.Context, n int) (result, error) {
	r := result{Scenario: "access", N: n}
	for i := range accessBindings {
		if err := b.env.Client.Create(ctx, unrelatedBinding(i)); err != nil {
			return r, err
		}
	}
	if err := b.activeKeys(ctx, n); err != nil {
		return r, err
	}
	r.PeakRSSMiB = b.peakRSSMiB()
	heap, err := b.liveHeap("")
	if err != nil {
		return r, err
	}
	r.HeapMiB = heap / (1 << 20)

	// Unrelated changes: each binding gains a subject who holds no key.
	before, err := b.scrape()
	if err != nil {
		return r, err
	}
	for i := range accessChanges {
		crb := unrelatedBinding(i)
		patch := client.MergeFrom(crb.DeepCopy())
		crb.Subjects = append(crb.Subjects, rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: fmt.Sprintf("nobody-%d", i)})
		if err := b.env.Client.Patch(ctx, crb, patch); err != nil {
			return r, err
		}
	}
	b.settle()
	after, err := b.scrape()
	if err != nil {
		return r, err
	}
	perChange := (after.reviews - before.reviews) / accessChanges
	r.Notes = append(r.Notes, fmt.Sprintf("%d bindings in the cluster; %d changes that concern no key user cost %.2f SubjectAccessReviews each (target ≤ 10)",
		accessBindings, accessChanges, perChange))

	removal, err := b.removals(ctx)
	if err != nil {
		return r, err
	}
	r.P50Seconds, r.P99Seconds = removal[len(removal)/2].Seconds(), removal[len(removal)-1].Seconds()
	r.Notes = append(r.Notes, fmt.Sprintf("a key is Suspended %.2f s at the most after its user's binding is deleted (%d users; target ≤ 10 s)",
		removal[len(removal)-1].Seconds(), accessRemovals))

	// Idle: restarted with the re-check at accessRecheckScaled, the manager
	// reconciles every key once as it starts; the window after that holds
	// one re-check of every key.
	b.stop()
	b.args = []string{"--access-recheck-interval=" + accessRecheckScaled.String()}
	defer func() { b.args = nil }()
	if err := b.startManager(ctx); err != nil {
		return r, err
	}
	if err := b.reconciled(ctx, n); err != nil {
		return r, err
	}
	b.settle()
	start, err := b.scrape()
	if err != nil {
		return r, err
	}
	time.Sleep(accessRecheckScaled)
	end, err := b.scrape()
	if err != nil {
		return r, err
	}
	idle := 0.0
	for _, v := range perKey(start.requests, end.requests, n) {
		idle += v
	}
	r.RequestsPerKey = perKey(start.requests, end.requests, n)
	r.Notes = append(r.Notes, fmt.Sprintf("idle, %.2f API requests per key per re-check interval (%s here, 1h by default; target ≤ 1 per key per hour)",
		idle, accessRecheckScaled))
	return r, nil
}

// unrelatedBinding is the i-th of the bindings that concern no key user.
func unrelatedBinding(i int) *rbacv1.ClusterRoleBinding {
	return &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("unrelated-%d", i)},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "view"},
		Subjects: []rbacv1.Subject{
			{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: fmt.Sprintf("someone-%d", i)},
			{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: fmt.Sprintf("team-%d", i)},
		},
	}
}

// removals grants accessRemovals users access in a namespace of their own,
// each by a binding, issues each a key, then deletes the bindings one by
// one and times each until the key is Suspended. Sorted.
func (b *bench) removals(ctx context.Context) ([]time.Duration, error) {
	// Not b.namespace: here nobody holds keys but whom a binding names.
	const ns = "restricted"
	if err := b.env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		return nil, err
	}
	var took []time.Duration
	for i := range accessRemovals {
		user := fmt.Sprintf("revokee-%d", i)
		rb := &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: user},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "keymint-user"},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
		}
		if err := b.env.Client.Create(ctx, rb); err != nil {
			return nil, err
		}
		key := &keymintv1alpha1.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: user},
			Spec: keymintv1alpha1.APIKeySpec{User: user, Expiration: never}}
		if err := b.env.Client.Create(ctx, key); err != nil {
			return nil, err
		}
		if err := b.waitPhase(ctx, key, keymintv1alpha1.PhaseActive, time.Minute); err != nil {
			return nil, err
		}
		start := time.Now()
		if err := b.env.Client.Delete(ctx, rb); err != nil {
			return nil, err
		}
		if err := b.waitPhase(ctx, key, keymintv1alpha1.PhaseSuspended, 30*time.Second); err != nil {
			return nil, fmt.Errorf("%s not Suspended after its binding was deleted: %w", user, err)
		}
		took = append(took, time.Since(start))
	}
	slices.Sort(took)
	return took, nil
}

func (b *bench) waitPhase(ctx context.Context, key *keymintv1alpha1.APIKey, phase keymintv1alpha1.Phase, timeout time.Duration) error {
	return wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		got := &keymintv1alpha1.APIKey{}
		if err := b.env.Client.Get(ctx, client.ObjectKeyFromObject(key), got); err != nil {
			return false, nil
		}
		return got.Status.Phase == phase, nil
	})
}
