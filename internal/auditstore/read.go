package auditstore

import (
	"context"
	"encoding/json"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/audit"
)

// List returns a page of the records of namespace ns ("" for every
// namespace) whose labels match sel, as the API server pages the entries
// (limit and continue passed through): pages follow one another in the
// order of the entries' names, a hash; within a page, records are in time
// order. A whole export sorts them all (kubectl apikey audit export).
func (s *Store) List(ctx context.Context, ns string, sel labels.Selector, limit int, cont string) ([]audit.Record, string, error) {
	if ns != "" {
		req, err := labels.NewRequirement(keymintv1alpha1.LabelAuditNamespace, selection.Equals, []string{ns})
		if err != nil {
			return nil, "", err
		}
		sel = sel.Add(*req)
	}
	list := &keymintv1alpha1.AuditEntryList{}
	if err := s.Client.List(ctx, list, client.InNamespace(s.Namespace), client.MatchingLabelsSelector{Selector: sel},
		client.Limit(int64(limit)), client.Continue(cont)); err != nil {
		return nil, "", err
	}
	out := make([]audit.Record, 0, len(list.Items))
	for i := range list.Items {
		var r audit.Record
		if err := json.Unmarshal(list.Items[i].Record.Raw, &r); err != nil {
			continue // not a record keymint wrote; nothing to serve
		}
		out = append(out, r)
	}
	// Entries are listed in the order of their names (hashes): a page
	// reads oldest first at least within itself.
	slices.SortStableFunc(out, func(a, b audit.Record) int { return a.Time.Compare(b.Time) })
	return out, list.Continue, nil
}

// Get returns the record named name in namespace ns ("" for any), nil if
// there is none.
func (s *Store) Get(ctx context.Context, ns, name string) (*audit.Record, error) {
	entry := &keymintv1alpha1.AuditEntry{}
	if err := s.Client.Get(ctx, client.ObjectKey{Namespace: s.Namespace, Name: name}, entry); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	var r audit.Record
	if err := json.Unmarshal(entry.Record.Raw, &r); err != nil || (ns != "" && r.Namespace != ns) {
		return nil, nil
	}
	return &r, nil
}
