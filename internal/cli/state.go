package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
)

// maxStateReason is spec.stateReason's limit, checked before the request.
const maxStateReason = 256

func newDeactivateCommand(o *Options) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "deactivate NAME [--reason TEXT]",
		Short: "Switch a key off without deleting it: the verifier refuses it until it is activated again",
		Long: `deactivate sets spec.state to Inactive. The key keeps its Secret, its slot
and its expiry, and the verifier refuses it (reason inactive) from that
moment until ` + "`kubectl apikey activate NAME`" + ` switches the same key on again.
Its owner may do it, and so may whoever holds the delegate verb on apikeys
in the namespace (keymint-admin), without being able to read the key.`,
		Args:              exactlyOneName,
		ValidArgsFunction: completeAPIKeyNames(o),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len([]rune(reason)) > maxStateReason {
				return usageErrorf("--reason is at most %d characters", maxStateReason)
			}
			return setState(cmd.Context(), o, args[0], keymintv1alpha1.StateInactive, reason)
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why the key is switched off; shown in its status, Events and audit records")
	return cmd
}

func newActivateCommand(o *Options) *cobra.Command {
	return &cobra.Command{
		Use:               "activate NAME",
		Short:             "Switch an Inactive key on again: the same key, valid at once",
		Args:              exactlyOneName,
		ValidArgsFunction: completeAPIKeyNames(o),
		RunE: func(cmd *cobra.Command, args []string) error {
			return setState(cmd.Context(), o, args[0], keymintv1alpha1.StateActive, "")
		},
	}
}

// setState switches key name to state with reason, guarded by the
// resourceVersion it read, and says what follows.
func setState(ctx context.Context, o *Options, name string, state keymintv1alpha1.KeyState, reason string) error {
	key, err := getKey(ctx, o, name)
	if err != nil {
		return err
	}
	if key.Status.Phase == keymintv1alpha1.PhaseExpired {
		return fmt.Errorf("apikey/%s has expired and its key is gone; an expired key cannot be switched on or off: make a new one with kubectl apikey rotate %s", name, name)
	}
	current := key.Spec.State
	if current == "" {
		current = keymintv1alpha1.StateActive
	}
	if current == state && (state == keymintv1alpha1.StateActive || reason == key.Spec.StateReason) {
		fmt.Fprintf(o.Streams.Out, "apikey/%s is already %s\n", name, state)
		return nil
	}
	spec := map[string]any{"state": state, "stateReason": nil}
	if reason != "" {
		spec["stateReason"] = reason
	}
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"resourceVersion": key.ResourceVersion},
		"spec":     spec,
	})
	if err != nil {
		return err
	}
	cl, _ := o.Client()
	if err := cl.Patch(ctx, key, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return err
	}
	if state == keymintv1alpha1.StateInactive {
		fmt.Fprintf(o.Streams.Out, "apikey/%s deactivated: the verifier refuses key %s from now on; its Secret and expiry are kept (kubectl apikey activate %s switches it on again)\n",
			name, orDash(key.Status.KeyID), name)
		return nil
	}
	fmt.Fprintf(o.Streams.Out, "apikey/%s activated: key %s is valid again%s\n", name, orDash(key.Status.KeyID), expiryNote(key, o.Clock.Now()))
	return nil
}

// expiryNote says when an activated key expires, if it does.
func expiryNote(key *keymintv1alpha1.APIKey, now time.Time) string {
	if exp := key.KnownExpiry(); exp != nil {
		return " until it expires " + relative(now, *exp)
	}
	return ""
}
