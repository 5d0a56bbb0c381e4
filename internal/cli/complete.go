package cli

import (
	"strings"

	"github.com/spf13/cobra"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/audit"
)

// completeAPIKeyNames completes a command's one NAME with the APIKeys of
// the namespace, never with file names.
func completeAPIKeyNames(o *Options) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		cl, err := o.Client()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ns, err := o.Namespace()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		list := &keymintv1alpha1.APIKeyList{}
		if err := cl.List(cmd.Context(), list, client.InNamespace(ns)); err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []cobra.Completion
		for _, k := range list.Items {
			if strings.HasPrefix(k.Name, toComplete) {
				out = append(out, cobra.CompletionWithDesc(k.Name, k.Spec.User+", "+orDash(string(k.Status.Phase))))
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// completeActions completes --action with the actions records have.
func completeActions(_ *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	var out []cobra.Completion
	for _, a := range audit.Actions {
		if strings.HasPrefix(string(a), toComplete) {
			out = append(out, string(a))
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}
