package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
)

type createOptions struct {
	*Options
	expiration  expirationFlags
	user        string
	secretName  string
	description string
	wait        bool
	show        bool
	timeout     time.Duration
	dryRun      string
	print       *genericclioptions.PrintFlags
	queue       bool
	renew       bool
	renewBefore time.Duration
}

func newCreateCommand(o *Options) *cobra.Command {
	c := &createOptions{Options: o, print: genericclioptions.NewPrintFlags("created").WithTypeSetter(Scheme)}
	cmd := &cobra.Command{
		Use:   "create NAME (--months N | --never | --expires-at TIME) [--renew [--renew-before DURATION]]",
		Short: "Generate an API key",
		Example: `  kubectl apikey create ci --months 12 --wait
  kubectl apikey create ci --months 3 --renew   # renews itself into its Secret before it expires
  export API_KEY=$(kubectl apikey create ci --months 12 --show)
  kubectl apikey create reporting --expires-at 2027-06-30T00:00:00Z
  kubectl apikey create ci --never --dry-run=client -o yaml > apikey.yaml   # for a GitOps repository`,
		Args: exactlyOneName,
		RunE: func(cmd *cobra.Command, args []string) error { return c.run(cmd.Context(), args[0]) },
	}
	c.expiration.add(cmd)
	f := cmd.Flags()
	f.StringVar(&c.user, "user", "", "the user who owns the key (default: you; another user needs the delegate verb)")
	f.StringVar(&c.secretName, "secret-name", "", "the Secret to mint the key into (default: NAME)")
	f.StringVar(&c.description, "description", "", "what the key is for")
	f.BoolVar(&c.wait, "wait", false, "wait until the key is Active")
	f.BoolVar(&c.queue, "queue", false, "with --wait: when you already hold the most active keys, wait for a slot instead of refusing")
	f.BoolVar(&c.show, "show", false, "wait until the key is Active, then print the key alone on stdout (the read is audited); the rest goes to stderr")
	f.DurationVar(&c.timeout, "timeout", time.Minute, "how long --wait waits")
	f.StringVar(&c.dryRun, "dry-run", "none", `"client" prints the APIKey without creating it`)
	f.BoolVar(&c.renew, "renew", false, "with --months: the key renews itself into the same Secret before it expires (spec.rotation), the old key working until its own expiry")
	f.DurationVar(&c.renewBefore, "renew-before", 0, "with --renew: how long before its expiry the key renews (at least 1h; default a third of its lifetime)")
	c.print.AddFlags(cmd)
	return cmd
}

func (c *createOptions) run(ctx context.Context, name string) error {
	exp, err := c.expiration.parse(c.Clock.Now())
	if err != nil {
		return err
	}
	if c.dryRun != "none" && c.dryRun != "client" {
		return usageErrorf(`--dry-run must be "none" or "client"`)
	}
	ns, err := c.Namespace()
	if err != nil {
		return err
	}
	rotation, err := c.rotation(exp)
	if err != nil {
		return err
	}
	key := &keymintv1alpha1.APIKey{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: keymintv1alpha1.APIKeySpec{
			User:        c.user,
			Expiration:  exp,
			Rotation:    rotation,
			SecretName:  c.secretName,
			Description: c.description,
		},
	}
	if key.Spec.User == "" {
		if key.Spec.User, err = c.whoAmI(ctx); err != nil {
			return err
		}
	}
	if c.dryRun == "client" {
		return c.printObject(key)
	}
	cl, err := c.Client()
	if err != nil {
		return err
	}
	if err := cl.Create(ctx, key); err != nil {
		// RBAC refuses a namespace that does not exist before saying so.
		if apierrors.IsForbidden(err) && c.namespaceMissing(ctx, ns) {
			return fmt.Errorf("namespace %q does not exist; choose another with -n", ns)
		}
		return err
	}
	if c.wait || c.show {
		if key, err = waitActive(ctx, c.Options, key, c.timeout, c.queue); err != nil {
			if errors.As(err, new(errAtCap)) {
				return withdraw(ctx, c.Options, key, err)
			}
			return err
		}
	} else {
		// Not waiting for Active, but for the operator's first word, so
		// that a key that waits says so and why.
		key = firstReport(ctx, c.Options, key, firstReportWait)
	}
	if !c.show {
		return c.printObject(key)
	}
	// Like a portal's "your key is shown": only the key on stdout.
	out := c.Streams.Out
	c.Streams.Out = c.Streams.ErrOut
	err = c.printObject(key)
	c.Streams.Out = out
	if err != nil {
		return err
	}
	return reveal(ctx, c.Options, name)
}

func (c *createOptions) printObject(key *keymintv1alpha1.APIKey) error {
	if ptr.Deref(c.print.OutputFormat, "") == "" {
		dryRun := ""
		if c.dryRun == "client" {
			dryRun = " (dry run)"
		}
		fmt.Fprintf(c.Streams.Out, "apikey/%s created for user %s%s%s\n", key.Name, key.Spec.User, phaseNote(key), dryRun)
		return nil
	}
	p, err := c.print.ToPrinter()
	if err != nil {
		return err
	}
	return p.PrintObj(key, c.Streams.Out)
}

// phaseNote says what the key is doing, when it is known.
func phaseNote(key *keymintv1alpha1.APIKey) string {
	switch key.Status.Phase {
	case keymintv1alpha1.PhaseActive:
		return fmt.Sprintf(": Active as %s in Secret %s", key.Status.KeyID, key.Status.SecretName)
	case "":
		if key.CreationTimestamp.IsZero() {
			return "" // a dry run
		}
		return "; the operator has not reported on it yet: `kubectl apikey status " + key.Name + "` shows its progress"
	case keymintv1alpha1.PhasePending:
		return ": it waits (Pending): " + waitingReason(key)
	}
	return ": " + string(key.Status.Phase) + " (" + waitingReason(key) + ")"
}

// firstReportWait bounds how long create waits for the operator's first
// report on a key when not asked to --wait.
const firstReportWait = 3 * time.Second

// firstReport returns key once the operator has reported on it, or as it
// is after d.
func firstReport(ctx context.Context, o *Options, key *keymintv1alpha1.APIKey, d time.Duration) *keymintv1alpha1.APIKey {
	cl, err := o.Client()
	if err != nil {
		return key
	}
	latest := key.DeepCopy()
	_ = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, d, true, func(ctx context.Context) (bool, error) {
		got := &keymintv1alpha1.APIKey{}
		if err := cl.Get(ctx, client.ObjectKeyFromObject(key), got); err != nil {
			return false, nil //nolint:nilerr // what create reports is best effort
		}
		latest = got
		return got.Status.Phase != "", nil
	})
	return latest
}

func exactlyOneName(_ *cobra.Command, args []string) error {
	if len(args) != 1 {
		return usageErrorf("give the API key's NAME")
	}
	return nil
}

// rotation is the spec.rotation --renew and --renew-before ask for; the
// API server checks the rest (at most half the lifetime).
func (c *createOptions) rotation(exp keymintv1alpha1.Expiration) (*keymintv1alpha1.Rotation, error) {
	if c.renewBefore != 0 {
		c.renew = true
	}
	switch {
	case !c.renew:
		return nil, nil
	case exp.Months == nil:
		return nil, usageErrorf("--renew needs --months: a key renews itself only with a lifetime in calendar months")
	case c.renewBefore != 0 && c.renewBefore < keymintv1alpha1.MinRenewBefore:
		return nil, usageErrorf("--renew-before must be at least 1h (a renewal needs time to reach the workloads)")
	case c.renewBefore != 0:
		return &keymintv1alpha1.Rotation{RenewBefore: &metav1.Duration{Duration: c.renewBefore}}, nil
	}
	return &keymintv1alpha1.Rotation{}, nil
}
