package cli

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"sigs.k8s.io/controller-runtime/pkg/client"

	auditv1alpha1 "github.com/keymint/keymint/api/audit/v1alpha1"
	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/audit"
)

// exportPage is how many records one request of an export asks for.
const exportPage = 500

func newAuditCommand(o *Options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "The audit trail of API keys (administrators)",
	}
	cmd.AddCommand(newAuditExportCommand(o))
	return cmd
}

type auditExport struct {
	o                 *Options
	since             time.Duration
	from, to          string
	user, action, key string
	allNamespaces     bool
	format            string
}

func newAuditExportCommand(o *Options) *cobra.Command {
	e := &auditExport{o: o}
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Export audit records as JSON lines or CSV",
		Long: `export prints the audit records of API keys: who issued, viewed, mounted,
was refused, expired or deleted which key, and when, oldest first. It reads
them from keymint's API (auditrecords.audit.keymint.io) through the API server,
with your kubeconfig's credentials, whatever they are: your identity needs list
on auditrecords, cluster-wide for --all-namespaces, else in the namespace
exported (ClusterRole keymint-admin, or the auditor's keymint-auditor).
--key narrows the export to one APIKey.`,
		Example: `  kubectl apikey audit export -A --since 24h --action Viewed
  kubectl apikey audit export -n team-a --key ci --format csv > ci-audit.csv`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return e.run(cmd.Context()) },
	}
	f := cmd.Flags()
	f.DurationVar(&e.since, "since", 0, "only records of this last duration, e.g. 24h")
	f.StringVar(&e.from, "from", "", "only records at or after this time (RFC 3339)")
	f.StringVar(&e.to, "to", "", "only records before this time (RFC 3339)")
	f.StringVar(&e.user, "user", "", "only records of this user's keys")
	f.StringVar(&e.key, "key", "", "only records of this APIKey (in the namespace of -n)")
	f.StringVar(&e.action, "action", "", "only this action: "+audit.ActionNames())
	_ = cmd.RegisterFlagCompletionFunc("action", completeActions)
	f.BoolVarP(&e.allNamespaces, "all-namespaces", "A", false, "records of every namespace")
	f.StringVar(&e.format, "format", "json", "json (JSON lines) or csv")
	return cmd
}

func (e *auditExport) run(ctx context.Context) error {
	filter, err := e.filter()
	if err != nil {
		return err
	}
	cl, err := e.o.Client()
	if err != nil {
		return err
	}
	opts, err := e.listOptions(filter)
	if err != nil {
		return err
	}
	var records []audit.Record
	for cont := ""; ; {
		page := &auditv1alpha1.AuditRecordList{}
		if err := cl.List(ctx, page, append(opts, client.Continue(cont))...); err != nil {
			return e.explain(err)
		}
		for i := range page.Items {
			if r := audit.FromObject(&page.Items[i]); filter.Match(r) {
				records = append(records, r)
			}
		}
		if cont = page.Continue; cont == "" {
			break
		}
	}
	// Pages come in the store's order; an export is in time order.
	slices.SortStableFunc(records, func(a, b audit.Record) int { return a.Time.Compare(b.Time) })
	return audit.Print(records, audit.Format(e.format), e.o.Streams.Out)
}

// filter checks the flags and says what they select.
func (e *auditExport) filter() (audit.Filter, error) {
	var f audit.Filter
	if e.since != 0 && e.from != "" {
		return f, usageErrorf("--since and --from both set the start; pass one")
	}
	if e.action != "" {
		if err := audit.ValidAction(audit.Action(e.action)); err != nil {
			return f, usageErrorf("--action: %v", err)
		}
	}
	if e.format != "json" && e.format != "csv" {
		return f, usageErrorf("--format must be json or csv, not %q", e.format)
	}
	if e.key != "" && e.allNamespaces {
		return f, usageErrorf("--key names an APIKey of one namespace; drop --all-namespaces")
	}
	var err error
	if e.from != "" {
		if f.From, err = time.Parse(time.RFC3339, e.from); err != nil {
			return f, usageErrorf("--from %q is not an RFC 3339 time, e.g. 2026-12-01T00:00:00Z", e.from)
		}
	} else if e.since != 0 {
		f.From = e.o.Clock.Now().Add(-e.since)
	}
	if e.to != "" {
		if f.To, err = time.Parse(time.RFC3339, e.to); err != nil {
			return f, usageErrorf("--to %q is not an RFC 3339 time, e.g. 2026-12-01T00:00:00Z", e.to)
		}
	}
	f.User, f.Name, f.Action = e.user, e.key, audit.Action(e.action)
	return f, nil
}

// listOptions asks the server for what f selects: the action, APIKey and
// user as field selectors, the time range as a selector on the records'
// keymint.io/time label (whole seconds; the filter is exact after).
func (e *auditExport) listOptions(f audit.Filter) ([]client.ListOption, error) {
	opts := []client.ListOption{client.Limit(exportPage)}
	if !e.allNamespaces {
		ns, err := e.o.Namespace()
		if err != nil {
			return nil, err
		}
		opts = append(opts, client.InNamespace(ns))
	}
	set := fields.Set{}
	for field, v := range map[string]string{"action": string(f.Action), "apiKey": f.Name, "user": f.User} {
		if v != "" {
			set[field] = v
		}
	}
	if len(set) > 0 {
		opts = append(opts, client.MatchingFieldsSelector{Selector: fields.SelectorFromSet(set)})
	}
	sel := labels.NewSelector()
	if !f.From.IsZero() {
		req, err := labels.NewRequirement(keymintv1alpha1.LabelAuditTime, selection.GreaterThan, []string{strconv.FormatInt(f.From.Unix()-1, 10)})
		if err != nil {
			return nil, err
		}
		sel = sel.Add(*req)
	}
	if !f.To.IsZero() {
		req, err := labels.NewRequirement(keymintv1alpha1.LabelAuditTime, selection.LessThan, []string{strconv.FormatInt(f.To.Unix()+1, 10)})
		if err != nil {
			return nil, err
		}
		sel = sel.Add(*req)
	}
	if !sel.Empty() {
		opts = append(opts, client.MatchingLabelsSelector{Selector: sel})
	}
	return opts, nil
}

// explain says in one line what a refused or impossible export needs.
func (e *auditExport) explain(err error) error {
	where := "in this namespace"
	if e.allNamespaces {
		where = "cluster-wide"
	}
	switch {
	case meta.IsNoMatchError(err):
		return fmt.Errorf("keymint's API (%s) is not served on this cluster: install keymint from dist/install.yaml or its chart, which register it", auditv1alpha1.GroupVersion)
	case apierrors.IsForbidden(err):
		// Not wrapped: the API server's own message would replace this one.
		return fmt.Errorf("you may not read the audit trail %s (list auditrecords.%s): the ClusterRole keymint-admin or keymint-auditor grants it (%s)",
			where, auditv1alpha1.GroupName, err.Error())
	}
	return fmt.Errorf("reading the audit trail: %w", err)
}
