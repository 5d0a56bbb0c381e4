package cli

import (
	"context"
	"fmt"
	"slices"
	"time"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
)

// waitActive polls key until it is Active, and fails early when it cannot
// become Active without someone's help, or, unless queue, when its user
// already holds the most keys.
func waitActive(ctx context.Context, o *Options, key *keymintv1alpha1.APIKey, timeout time.Duration, queue bool) (*keymintv1alpha1.APIKey, error) {
	cl, err := o.Client()
	if err != nil {
		return nil, err
	}
	latest := key.DeepCopy()
	// At the cap is final only once it holds for atCapSettle with no holder
	// being deleted: a status written just before a slot freed says so too.
	var atCapSince time.Time
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		if err := cl.Get(ctx, client.ObjectKeyFromObject(key), latest); err != nil {
			return false, err
		}
		switch {
		case latest.Status.Phase == keymintv1alpha1.PhaseActive:
			return true, nil
		case apimeta.IsStatusConditionTrue(latest.Status.Conditions, keymintv1alpha1.ConditionStalled):
			return false, fmt.Errorf("apikey/%s cannot become Active: %s", key.Name, waitingReason(latest))
		case queue || latest.Status.ReadyReason() != keymintv1alpha1.ReasonKeyLimitReached || slotFreeing(ctx, o, latest):
			atCapSince = time.Time{}
		case atCapSince.IsZero():
			atCapSince = o.Clock.Now()
		case o.Clock.Since(atCapSince) >= atCapSettle:
			return false, errAtCap{fmt.Sprintf("%s; free a slot with `kubectl apikey delete NAME`, or pass --queue to wait for one", waitingReason(latest))}
		}
		return false, nil
	})
	if wait.Interrupted(err) {
		return latest, fmt.Errorf("apikey/%s is not Active after %s: %s; `kubectl apikey status %s` tells more",
			key.Name, timeout, waitingReason(latest), key.Name)
	}
	return latest, err
}

// atCapSettle is how long a key must stay at the cap, with no holder being
// deleted, before --wait without --queue gives up on it.
const atCapSettle = time.Second

// slotFreeing reports whether one of the keys holding the slots of key's
// user is being deleted: its slot frees in a moment (once keymint has
// revoked and recorded it), and key is issued then, so it is waited for.
// A key the caller may not list counts as staying.
func slotFreeing(ctx context.Context, o *Options, key *keymintv1alpha1.APIKey) bool {
	issued, err := issuedKeysOf(ctx, o, key)
	if err != nil {
		return false
	}
	return slices.ContainsFunc(issued, func(k keymintv1alpha1.APIKey) bool { return !k.DeletionTimestamp.IsZero() })
}

// errAtCap refuses a key whose user already holds the most active keys.
type errAtCap struct{ msg string }

func (e errAtCap) Error() string { return e.msg }

// withdraw deletes key, made by this command, that will not work: the
// command leaves no dead or queued object behind.
func withdraw(ctx context.Context, o *Options, key *keymintv1alpha1.APIKey, why error) error {
	cl, err := o.Client()
	if err == nil {
		err = client.IgnoreNotFound(cl.Delete(ctx, key))
	}
	if err != nil {
		return fmt.Errorf("%w (and apikey/%s could not be deleted: %v)", why, key.Name, err)
	}
	return fmt.Errorf("%w; apikey/%s was not kept", why, key.Name)
}

// waitingReason is the Ready condition's message, or its absence.
func waitingReason(key *keymintv1alpha1.APIKey) string {
	if msg := key.Status.ReadyMessage(); msg != "" {
		return msg
	}
	return "the operator has not reported on it yet"
}
