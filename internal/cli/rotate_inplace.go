package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
)

// rotateInPlace asks keymint to renew the key into its own Secret at once
// (the keymint.io/rotate-requested-at and keymint.io/rotate-grace
// annotations), and waits until the request is acted on.
func (r *rotateOptions) rotateInPlace(ctx context.Context, name string) error {
	if r.successor != "" || r.deleteOld || r.expiration.given() {
		return usageErrorf("--in-place renews the key in its own Secret: --successor, --delete-old, --months, --never and --expires-at make a new APIKey instead")
	}
	if r.grace < 0 {
		return usageErrorf("--grace must be 0s or more: 0s revokes the current key at once")
	}
	key, err := getKey(ctx, r.Options, name)
	if err != nil {
		return err
	}
	if err := r.mayActFor(ctx, key); err != nil {
		return err
	}
	if !key.Status.Phase.Issued() {
		return fmt.Errorf("apikey/%s has no key to rotate (phase %s): %s", name, orDash(string(key.Status.Phase)), waitingReason(key))
	}
	requested := r.Clock.Now().UTC().Format(time.RFC3339)
	if requested == key.Status.LastRotationRequest || requested == key.Annotations[keymintv1alpha1.AnnotationRotateRequestedAt] {
		// Each request is acted on once: a second in the same second needs
		// a time of its own.
		requested = r.Clock.Now().UTC().Add(time.Second).Format(time.RFC3339)
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{
		keymintv1alpha1.AnnotationRotateRequestedAt: requested,
		keymintv1alpha1.AnnotationRotateGrace:       r.grace.String(),
	}}})
	cl, err := r.Client()
	if err != nil {
		return err
	}
	if err := cl.Patch(ctx, key, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return err
	}
	fmt.Fprintf(r.Streams.Out, "apikey/%s: in-place rotation requested (grace %s)\n", name, r.grace)
	if !r.wait {
		return nil
	}
	old := key.Status.KeyID
	done, err := r.waitRotated(ctx, key, requested)
	if err != nil {
		return err
	}
	fmt.Fprintf(r.Streams.Out, "apikey/%s now holds key %s (revision %d) in Secret %s.\n", name, done.Status.KeyID, done.Status.Revision, done.Status.SecretName)
	if p := done.Status.PreviousKey; p != nil {
		fmt.Fprintf(r.Streams.Out, "The previous key %s keeps working until %s.\n", p.KeyID, p.ExpiresAt.UTC().Format(time.RFC3339))
	} else {
		fmt.Fprintf(r.Streams.Out, "The previous key %s no longer works.\n", old)
	}
	if key.Spec.Rotation == nil {
		// Its Secret was immutable, and is a new object now.
		fmt.Fprintf(r.Streams.Out, "Secret %s was immutable and has been replaced: Pods that mount it keep the previous key until they are replaced; "+
			"give the key spec.rotation for renewals that reach mounted volumes in place.\n", done.Status.SecretName)
	} else {
		fmt.Fprintln(r.Streams.Out, "Workloads that mount the Secret as a volume (not subPath, not an environment variable) see the new key within about a minute.")
	}
	return nil
}

// waitRotated polls key until the request is acted on, and fails early
// when the renewal waits for a slot.
func (r *rotateOptions) waitRotated(ctx context.Context, key *keymintv1alpha1.APIKey, requested string) (*keymintv1alpha1.APIKey, error) {
	cl, _ := r.Client()
	latest := key.DeepCopy()
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, r.timeout, true, func(ctx context.Context) (bool, error) {
		if err := cl.Get(ctx, client.ObjectKeyFromObject(key), latest); err != nil {
			return false, err
		}
		if latest.Status.LastRotationRequest == requested {
			return true, nil
		}
		if c := apimeta.FindStatusCondition(latest.Status.Conditions, keymintv1alpha1.ConditionRotationBlocked); c != nil &&
			c.Reason == keymintv1alpha1.ReasonKeyLimitReached {
			return false, fmt.Errorf("apikey/%s: %s; or rotate with --grace 0s, which needs no second slot", key.Name, c.Message)
		}
		return false, nil
	})
	if wait.Interrupted(err) {
		return latest, fmt.Errorf("apikey/%s was not rotated after %s; `kubectl apikey status %s` tells more", key.Name, r.timeout, key.Name)
	}
	return latest, err
}
