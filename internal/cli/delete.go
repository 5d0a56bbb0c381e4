package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
)

func newDeleteCommand(o *Options) *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete an API key: its key stops working at once (revoke)",
		Args:  exactlyOneName,
		RunE:  func(cmd *cobra.Command, args []string) error { return deleteKey(cmd.Context(), o, args[0]) },
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
	fmt.Fprintf(o.Streams.Out, "apikey/%s deleted: key %s revoked\n", name, orDash(key.Status.KeyID))
	return nil
}
