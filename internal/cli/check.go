package cli

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/cli-runtime/pkg/printers"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/keys"
)

type checkOptions struct {
	*Options
	find bool
}

func newCheckCommand(o *Options) *cobra.Command {
	c := &checkOptions{Options: o}
	cmd := &cobra.Command{
		Use:   "check [--find]",
		Short: "Tell whether a key read from standard input is a keymint key, and with --find whose it is",
		Long: `check reads one key from standard input (never from the command line, so that
it stays out of shell history) and says, offline, whether it is a well-formed
keymint key: its prefix, length and checksum.

With --find it hashes the key on this machine and looks for the APIKey whose
status.keyHash matches, among the APIKeys you may list (every namespace when
you may list them all, else the namespace of -n). Neither the key nor its hash
leaves this machine: the comparison is made here, against what you can
already read. Nothing is logged.`,
		Example: `  pbpaste | kubectl apikey check
  kubectl apikey check --find < leaked.txt`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageErrorf("check reads the key from standard input, never from the command line (it would stay in your shell history)")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error { return c.run(cmd.Context()) },
	}
	cmd.Flags().BoolVar(&c.find, "find", false, "look for the APIKey that holds the key, among those you may list")
	return cmd
}

func (c *checkOptions) run(ctx context.Context) error {
	key, err := readKey(c.Streams.In)
	if err != nil {
		return err
	}
	if err := keys.Validate(key); err != nil {
		return fmt.Errorf("not a keymint key: a keymint key is %q, %d characters in all, ending in a checksum of the rest, and this one is not", keys.Prefix+"...", keys.Length)
	}
	fmt.Fprintln(c.Streams.Out, "a well-formed keymint key (prefix, length and checksum)")
	if !c.find {
		return nil
	}
	owner, scope, err := c.findOwner(ctx, keys.Hash(key))
	if err != nil {
		return err
	}
	if owner == nil {
		fmt.Fprintf(c.Streams.Out, "no APIKey you may list (%s) holds it: it was never issued there, or its APIKey is gone\n", scope)
		return nil
	}
	w := printers.GetNewTabWriter(c.Streams.Out)
	row := func(k, v string) { fmt.Fprintf(w, "%s:\t%s\n", k, v) }
	row("Namespace", owner.Namespace)
	row("Name", owner.Name)
	row("User", owner.Spec.User)
	row("Key ID", owner.Status.KeyID)
	row("Phase", orDash(string(owner.Status.Phase)))
	row("State", stateText(owner))
	row("Expires", expiresText(owner, c.Clock.Now()))
	row("Switch it off", fmt.Sprintf("kubectl apikey deactivate %s -n %s --reason 'leaked'", owner.Name, owner.Namespace))
	row("Revoke it", fmt.Sprintf("kubectl apikey delete %s -n %s", owner.Name, owner.Namespace))
	return w.Flush()
}

// readKey reads the first line of in, the key.
func readKey(in io.Reader) (string, error) {
	if in == nil {
		return "", usageErrorf("give the key on standard input")
	}
	s := bufio.NewScanner(in)
	s.Buffer(make([]byte, 4096), 4096)
	if !s.Scan() {
		if err := s.Err(); err != nil {
			return "", fmt.Errorf("reading standard input: %w", err)
		}
		return "", usageErrorf("give the key on standard input, e.g. kubectl apikey check < key.txt")
	}
	return strings.TrimSpace(s.Text()), nil
}

// findOwner lists the APIKeys the caller may list, every namespace if
// allowed, and returns the one whose key hash is hash.
func (c *checkOptions) findOwner(ctx context.Context, hash string) (*keymintv1alpha1.APIKey, string, error) {
	// The client's error says what is wrong with the kubeconfig.
	if _, err := c.Client(); err != nil {
		return nil, "", err
	}
	ns, err := c.Namespace()
	if err != nil {
		return nil, "", err
	}
	items, scope, err := listAPIKeys(ctx, c.Options, ns)
	if err != nil {
		return nil, "", fmt.Errorf("listing APIKeys: %w", err)
	}
	for i := range items {
		if items[i].Status.KeyHash == hash {
			return &items[i], scope, nil
		}
	}
	return nil, scope, nil
}

// listAPIKeys lists the APIKeys the caller may list: in every namespace
// when allowed, else in namespace ns. scope says which.
func listAPIKeys(ctx context.Context, o *Options, ns string) (items []keymintv1alpha1.APIKey, scope string, err error) {
	cl, err := o.Client()
	if err != nil {
		return nil, "", err
	}
	list := &keymintv1alpha1.APIKeyList{}
	scope = "all namespaces"
	err = cl.List(ctx, list)
	if apierrors.IsForbidden(err) {
		scope = "namespace " + ns
		err = cl.List(ctx, list, client.InNamespace(ns))
	}
	return list.Items, scope, err
}
