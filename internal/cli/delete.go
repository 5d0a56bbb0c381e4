package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
)

func newDeleteCommand(o *Options) *cobra.Command {
	return &cobra.Command{
		Use:               "delete NAME",
		Short:             "Delete an API key: its key stops working at once (revoke)",
		Args:              exactlyOneName,
		ValidArgsFunction: completeAPIKeyNames(o),
		RunE:              func(cmd *cobra.Command, args []string) error { return deleteKey(cmd.Context(), o, args[0]) },
	}
}

func deleteKey(ctx context.Context, o *Options, name string) error {
	key, err := getKey(ctx, o, name)
	if err != nil {
		return err
	}
	cl, _ := o.Client()
	if err := cl.Delete(ctx, key); err != nil {
		return err
	}
	switch {
	case key.Status.KeyID == "":
		fmt.Fprintf(o.Streams.Out, "apikey/%s deleted; it had no key yet\n", name)
	case !key.Status.Phase.Issued():
		fmt.Fprintf(o.Streams.Out, "apikey/%s deleted; its key %s was already %s\n", name, key.Status.KeyID, key.Status.Phase)
	default:
		fmt.Fprintf(o.Streams.Out, "apikey/%s deleted: key %s revoked\n", name, key.Status.KeyID)
	}
	return nil
}
