package cli

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/printers"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
)

type listOptions struct {
	*Options
	allNamespaces bool
	mine          bool
	print         *genericclioptions.PrintFlags
}

func newListCommand(o *Options) *cobra.Command {
	l := &listOptions{Options: o, print: genericclioptions.NewPrintFlags("").WithTypeSetter(Scheme)}
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List API keys (key IDs only, never the keys)",
		Args:    cobra.NoArgs,
		RunE:    func(cmd *cobra.Command, _ []string) error { return l.run(cmd.Context()) },
	}
	cmd.Flags().BoolVarP(&l.allNamespaces, "all-namespaces", "A", false, "list the keys of every namespace")
	cmd.Flags().BoolVar(&l.mine, "mine", false, "only your own keys (whose user is you)")
	l.print.AddFlags(cmd)
	if f := cmd.Flags().Lookup("output"); f != nil {
		f.Usage = "Output format. One of: (" + strings.Join(l.formats(), ", ") + ")."
	}
	return cmd
}

// formats are the -o values list takes: its own wide and name, and what
// kubectl's printers print.
func (l *listOptions) formats() []string {
	return append([]string{"wide", "name"}, slices.DeleteFunc(l.print.AllowedFormats(), func(f string) bool { return f == "name" })...)
}

func (l *listOptions) run(ctx context.Context) error {
	format := ptr.Deref(l.print.OutputFormat, "")
	if format != "" && !slices.Contains(l.formats(), strings.SplitN(format, "=", 2)[0]) {
		return usageErrorf("--output %q is not a format: use one of %s", format, strings.Join(l.formats(), ", "))
	}
	cl, err := l.Client()
	if err != nil {
		return err
	}
	var opts []client.ListOption
	if !l.allNamespaces {
		ns, err := l.Namespace()
		if err != nil {
			return err
		}
		opts = append(opts, client.InNamespace(ns))
	}
	list := &keymintv1alpha1.APIKeyList{}
	if err := cl.List(ctx, list, opts...); err != nil {
		return err
	}
	if l.mine {
		me, err := l.whoAmI(ctx)
		if err != nil {
			return err
		}
		list.Items = slices.DeleteFunc(list.Items, func(k keymintv1alpha1.APIKey) bool { return k.Spec.User != me })
	}
	slices.SortFunc(list.Items, func(a, b keymintv1alpha1.APIKey) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	wide := format == "wide"
	if format == "name" {
		for _, k := range list.Items {
			fmt.Fprintf(l.Streams.Out, "apikey.%s/%s\n", keymintv1alpha1.GroupVersion.Group, k.Name)
		}
		return nil
	}
	if !wide && format != "" {
		p, err := l.print.ToPrinter()
		if err != nil {
			return err
		}
		return p.PrintObj(list, l.Streams.Out)
	}
	if len(list.Items) == 0 {
		fmt.Fprintln(l.Streams.ErrOut, "No API keys found; `kubectl apikey create NAME --months 12` makes one.")
		return nil
	}
	return l.table(l.Streams.Out, list.Items, wide)
}

// table prints the keys; wide adds why a key is not Ready, when it
// renews, and its Secret.
func (l *listOptions) table(out io.Writer, items []keymintv1alpha1.APIKey, wide bool) error {
	w := printers.GetNewTabWriter(out)
	now := l.Clock.Now()
	if l.allNamespaces {
		fmt.Fprint(w, "NAMESPACE\t")
	}
	fmt.Fprint(w, "NAME\tUSER\tPHASE\t")
	if wide {
		fmt.Fprint(w, "READY\tREASON\t")
	}
	fmt.Fprint(w, "KEY\tEXPIRES\tLAST USED\t")
	if wide {
		fmt.Fprint(w, "RENEWS\tSECRET\t")
	}
	fmt.Fprintln(w, "AGE")
	for i := range items {
		k := &items[i]
		if l.allNamespaces {
			fmt.Fprintf(w, "%s\t", k.Namespace)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t", k.Name, k.Spec.User, orDash(string(k.Status.Phase)))
		if wide {
			status, reason := "-", "-"
			if c := k.Status.Ready(); c != nil {
				status, reason = string(c.Status), c.Reason
			}
			fmt.Fprintf(w, "%s\t%s\t", status, reason)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t", orDash(k.Status.KeyID), expiresText(k, now), strings.TrimPrefix(lastUsedText(k, now), "last used "))
		if wide {
			fmt.Fprintf(w, "%s\t%s\t", renewsText(k, now), orDash(k.Status.SecretName))
		}
		fmt.Fprintln(w, age(k, now))
	}
	return w.Flush()
}
