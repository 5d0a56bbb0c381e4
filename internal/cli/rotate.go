package cli

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
)

// maxActiveKeys is the operator's default cap; rotate needs a free slot.
const maxActiveKeys = 2

type rotateOptions struct {
	*Options
	successor  string
	wait       bool
	deleteOld  bool
	inPlace    bool
	grace      time.Duration
	timeout    time.Duration
	expiration expirationFlags
}

func newRotateCommand(o *Options) *cobra.Command {
	r := &rotateOptions{Options: o}
	cmd := &cobra.Command{
		Use:   "rotate NAME",
		Short: "Rotate a key: in place into its own Secret (--in-place), or into a successor APIKey",
		Long: `rotate --in-place renews an API key into the Secret it already has: workloads
that mount the Secret as a volume pick up the new key without a change, and
the old key keeps working for --grace (1h by default, never past its own
expiry) so that they have time to. --grace 0s revokes the old key at once:
use it for a key that leaked. A months key gets a new lifetime from now. Prefer
--in-place; keys with spec.rotation also renew themselves before they expire.

Without --in-place, rotate creates a successor APIKey (same user, same
expiration choice, unless --months, --never or --expires-at gives it
another) with a Secret of its own, waits until it is Active, and prints how
to switch workloads to it. The old key keeps working until you delete it,
or until --delete-old deletes it once the successor is Active. A successor
that cannot become Active (its user holds the most keys, or its expiry is
past) is deleted again: rotate leaves nothing behind.`,
		Example: `  kubectl apikey rotate ci --in-place              # the old key works for 1h more
  kubectl apikey rotate ci --in-place --grace 0s   # the old key leaked: revoke it now
  kubectl apikey rotate ci --successor ci-2027 --delete-old
  kubectl apikey rotate reporting --months 12   # its expires-at has passed`,
		Args:              exactlyOneName,
		ValidArgsFunction: completeAPIKeyNames(o),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().Changed("grace") && !r.inPlace {
				return usageErrorf("--grace goes with --in-place: a successor APIKey leaves the old key working until you delete it")
			}
			return r.run(cmd.Context(), args[0])
		},
	}
	f := cmd.Flags()
	f.StringVar(&r.successor, "successor", "", "name of the new APIKey (default: NAME-YYYYMMDDhhmmss)")
	f.BoolVar(&r.wait, "wait", true, "wait until the successor is Active")
	f.BoolVar(&r.deleteOld, "delete-old", false, "delete the old key once the successor is Active")
	f.DurationVar(&r.timeout, "timeout", time.Minute, "how long to wait for the successor")
	f.BoolVar(&r.inPlace, "in-place", false, "renew the key into its own Secret (same name), instead of creating a successor APIKey")
	f.DurationVar(&r.grace, "grace", keymintv1alpha1.DefaultRotateGrace, "with --in-place: how long the old key keeps working (0s: revoked at once)")
	r.expiration.add(cmd)
	return cmd
}

func (r *rotateOptions) run(ctx context.Context, name string) error {
	if r.inPlace {
		return r.rotateInPlace(ctx, name)
	}
	if r.deleteOld && !r.wait {
		return usageErrorf("--delete-old needs --wait: the old key goes only once its successor works")
	}
	old, err := getKey(ctx, r.Options, name)
	if err != nil {
		return err
	}
	if err := r.mayActFor(ctx, old); err != nil {
		return err
	}
	if active, err := r.activeKeysOf(ctx, old); err != nil {
		return err
	} else if len(active) >= maxActiveKeys {
		return fmt.Errorf("user %s already holds %d active keys (%s): a rollover needs a free slot; delete a key you no longer use first",
			old.Spec.User, len(active), strings.Join(active, ", "))
	}
	exp := old.Spec.Expiration
	if r.expiration.given() {
		if exp, err = r.expiration.parse(r.Clock.Now()); err != nil {
			return err
		}
	} else if exp.At != nil && !exp.At.After(r.Clock.Now()) {
		return usageErrorf("apikey/%s expires at %s, which has passed: give its successor an expiry with --months N, --never or --expires-at TIME",
			name, exp.At.UTC().Format(time.RFC3339))
	}
	succ := &keymintv1alpha1.APIKey{
		ObjectMeta: metav1.ObjectMeta{Namespace: old.Namespace, Name: r.successorName(name)},
		Spec: keymintv1alpha1.APIKeySpec{
			User:        old.Spec.User,
			Expiration:  exp,
			Description: "successor of " + name,
		},
	}
	cl, _ := r.Client()
	if err := cl.Create(ctx, succ); err != nil {
		return err
	}
	fmt.Fprintf(r.Streams.Out, "apikey/%s created as the successor of apikey/%s\n", succ.Name, name)
	if !r.wait {
		return nil
	}
	created := succ.DeepCopy()
	if succ, err = waitActive(ctx, r.Options, succ, r.timeout, false); err != nil {
		return withdraw(ctx, r.Options, created, err)
	}
	fmt.Fprintf(r.Streams.Out, "apikey/%s is Active as %s in Secret %s.\n", succ.Name, succ.Status.KeyID, succ.Status.SecretName)
	if r.deleteOld {
		// In the order things happen: the old key is gone already.
		if err := deleteKey(ctx, r.Options, name); err != nil {
			return err
		}
		fmt.Fprintf(r.Streams.Out, `Next:
  1. Point your workloads at Secret %s (key "api-key") and roll them out: the old key no longer works.
`, succ.Status.SecretName)
		return nil
	}
	fmt.Fprintf(r.Streams.Out, `Next:
  1. Point your workloads at Secret %s (key "api-key") and roll them out.
  2. When they run with the new key, delete the old one: kubectl apikey delete %s -n %s
`, succ.Status.SecretName, name, old.Namespace)
	return nil
}

// activeKeysOf lists the issued keys (they hold slots) of old's user.
func (r *rotateOptions) activeKeysOf(ctx context.Context, old *keymintv1alpha1.APIKey) ([]string, error) {
	issued, err := issuedKeysOf(ctx, r.Options, old)
	if err != nil {
		return nil, err
	}
	var active []string
	for _, k := range issued {
		active = append(active, k.Namespace+"/"+k.Name)
	}
	slices.Sort(active)
	return active, nil
}

// issuedKeysOf lists the issued keys, which hold slots, of key's user: in
// every namespace when the caller may list them there, else in key's
// namespace.
func issuedKeysOf(ctx context.Context, o *Options, key *keymintv1alpha1.APIKey) ([]keymintv1alpha1.APIKey, error) {
	items, _, err := listAPIKeys(ctx, o, key.Namespace)
	if err != nil {
		return nil, err
	}
	var issued []keymintv1alpha1.APIKey
	for _, k := range items {
		if k.Spec.User == key.Spec.User && k.Status.Phase.Issued() {
			issued = append(issued, k)
		}
	}
	return issued, nil
}

func (r *rotateOptions) successorName(name string) string {
	if r.successor != "" {
		return r.successor
	}
	suffix := "-" + r.Clock.Now().UTC().Format("20060102150405")
	// APIKey names are at most 63 characters.
	return strings.TrimSuffix(name[:min(len(name), 63-len(suffix))], "-") + suffix
}

// mayActFor refuses, before anything is created, to rotate another user's
// key for a caller without the delegate verb, which the admission policy
// would refuse with a less direct message.
func (r *rotateOptions) mayActFor(ctx context.Context, key *keymintv1alpha1.APIKey) error {
	me, err := r.whoAmI(ctx)
	if err != nil || key.Spec.User == me {
		return err
	}
	cl, _ := r.Client()
	review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: key.Namespace, Verb: keymintv1alpha1.VerbDelegate, Group: keymintv1alpha1.GroupVersion.Group, Resource: "apikeys",
		},
	}}
	if err := cl.Create(ctx, review); err != nil {
		return err
	}
	if !review.Status.Allowed {
		return fmt.Errorf("apikey/%s belongs to user %s, not you (%s): rotating another user's key needs the delegate verb on apikeys in namespace %s (ClusterRole keymint-admin)",
			key.Name, key.Spec.User, me, key.Namespace)
	}
	return nil
}
