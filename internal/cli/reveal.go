package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	auditv1alpha1 "github.com/keymint/keymint/api/audit/v1alpha1"
	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
)

func newRevealCommand(o *Options) *cobra.Command {
	return &cobra.Command{
		Use:   "reveal NAME",
		Short: "Print an API key (the view is recorded)",
		Long: `reveal prints the key of an Active API key on standard output, alone on its
line, so that scripts can capture it. Keys are hidden everywhere else. The key
comes from keymint's API (an APIKeyReveal, audit.keymint.io), which gives it to
the APIKey's owner only, and only once the view is on the audit trail.`,
		Example:           `  export API_KEY=$(kubectl apikey reveal ci)`,
		Args:              exactlyOneName,
		ValidArgsFunction: completeAPIKeyNames(o),
		RunE:              func(cmd *cobra.Command, args []string) error { return reveal(cmd.Context(), o, args[0]) },
	}
}

func reveal(ctx context.Context, o *Options, name string) error {
	key, err := getKey(ctx, o, name)
	if err != nil {
		return err
	}
	me, err := o.whoAmI(ctx)
	if err != nil {
		return err
	}
	if key.Spec.User != me {
		return fmt.Errorf("apikey/%s belongs to user %s, not you (%s): only a key's owner can reveal it", name, key.Spec.User, me)
	}
	switch key.Status.Phase {
	case keymintv1alpha1.PhaseActive, keymintv1alpha1.PhaseInactive: // an owner may see a key switched off
	case keymintv1alpha1.PhaseExpired:
		at := "its expiry"
		if key.Status.ExpiresAt != nil {
			at = key.Status.ExpiresAt.UTC().Format(time.RFC3339)
		}
		return fmt.Errorf("apikey/%s expired at %s and its key is gone; make a new one: kubectl apikey rotate %s --months N (or create NAME)",
			name, at, name)
	default:
		return fmt.Errorf("apikey/%s is %s, not Active: %s", name, orDash(string(key.Status.Phase)), waitingReason(key))
	}
	cl, _ := o.Client()
	r := &auditv1alpha1.APIKeyReveal{
		ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace},
		Spec:       auditv1alpha1.APIKeyRevealSpec{Name: name},
	}
	if err := cl.Create(ctx, r); err != nil {
		if meta.IsNoMatchError(err) {
			return fmt.Errorf("keymint's API (%s) is not served on this cluster: install keymint from dist/install.yaml or its chart, which register it", auditv1alpha1.GroupVersion)
		}
		return err
	}
	fmt.Fprintf(o.Streams.ErrOut, "Revealing key %s of apikey/%s; keymint recorded this view.\n", r.Status.KeyID, name)
	fmt.Fprintln(o.Streams.Out, r.Status.Key)
	return nil
}

// getKey reads the APIKey name in the namespace of the flags.
func getKey(ctx context.Context, o *Options, name string) (*keymintv1alpha1.APIKey, error) {
	cl, err := o.Client()
	if err != nil {
		return nil, err
	}
	ns, err := o.Namespace()
	if err != nil {
		return nil, err
	}
	key := &keymintv1alpha1.APIKey{}
	return key, cl.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, key)
}
