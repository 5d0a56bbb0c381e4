package cli

import (
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
)

// expirationFlags are --months, --never and --expires-at, which create and
// rotate share.
type expirationFlags struct {
	months    int32
	never     bool
	expiresAt string
	cmd       *cobra.Command
}

func (e *expirationFlags) add(cmd *cobra.Command) {
	e.cmd = cmd
	f := cmd.Flags()
	f.Int32Var(&e.months, "months", 0, "expire this many calendar months after issuance (1-120)")
	f.BoolVar(&e.never, "never", false, "never expire")
	f.StringVar(&e.expiresAt, "expires-at", "", "expire at this time (RFC 3339)")
}

// given reports whether any of the flags was given.
func (e *expirationFlags) given() bool {
	return e.cmd.Flags().Changed("months") || e.never || e.expiresAt != ""
}

// parse returns the expiration the flags choose, refusing one that could
// never be issued: exactly one flag, months within 1-120, a time after now.
func (e *expirationFlags) parse(now time.Time) (keymintv1alpha1.Expiration, error) {
	chosen := 0
	var exp keymintv1alpha1.Expiration
	if e.cmd.Flags().Changed("months") {
		chosen++
		if e.months < 1 || e.months > 120 {
			return exp, usageErrorf("--months must be 1-120 (calendar months), not %d", e.months)
		}
		exp.Months = new(e.months)
	}
	if e.never {
		chosen++
		exp.Never = new(true)
	}
	if e.expiresAt != "" {
		chosen++
		t, err := time.Parse(time.RFC3339, e.expiresAt)
		if err != nil {
			return exp, usageErrorf("--expires-at %q is not an RFC 3339 time such as 2027-06-30T00:00:00Z", e.expiresAt)
		}
		if !t.After(now) {
			return exp, usageErrorf("--expires-at %s is not in the future: a key must expire after it is created", e.expiresAt)
		}
		exp.At = &metav1.Time{Time: t}
	}
	if chosen != 1 {
		return exp, usageErrorf("give exactly one of --months N, --never or --expires-at TIME")
	}
	return exp, nil
}
