package auditapi

import (
	"context"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/selection"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"

	auditv1alpha1 "github.com/keymint/keymint/api/audit/v1alpha1"
	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/audit"
)

// MaxPage bounds the records one list returns, with or without a limit;
// the rest come through its continue token.
const MaxPage = 5000

// recordFields are the field selectors auditrecords takes, each with the
// record's value.
var recordFields = map[string]func(*auditv1alpha1.AuditRecord) string{
	"metadata.name":      func(r *auditv1alpha1.AuditRecord) string { return r.Name },
	"metadata.namespace": func(r *auditv1alpha1.AuditRecord) string { return r.Namespace },
	"action":             func(r *auditv1alpha1.AuditRecord) string { return r.Action },
	"apiKey":             func(r *auditv1alpha1.AuditRecord) string { return r.APIKey },
	"user":               func(r *auditv1alpha1.AuditRecord) string { return r.User },
	"keyID":              func(r *auditv1alpha1.AuditRecord) string { return r.KeyID },
	"actor":              func(r *auditv1alpha1.AuditRecord) string { return r.Actor.Username },
}

// recordFieldLabel lets the API server's handler pass recordFields through.
func recordFieldLabel(label, value string) (string, string, error) {
	if _, ok := recordFields[label]; ok {
		return label, value, nil
	}
	return "", "", fmt.Errorf("field label %q is not supported by auditrecords; use one of action, apiKey, user, keyID, actor, metadata.name, metadata.namespace", label)
}

// recordFieldSet is a record's fields for a field selector.
func recordFieldSet(r *auditv1alpha1.AuditRecord) fields.Set {
	set := fields.Set{}
	for k, v := range recordFields {
		set[k] = v(r)
	}
	return set
}

// Source is the trail auditrecords reads: the audit log (FileSource) or
// the records stored in the API server (auditstore.Store).
type Source interface {
	// List returns a page of the records of namespace ns ("" for every
	// namespace) whose labels (audit.Labels) match sel, starting after
	// the page cont ended, at most limit, and where the next page starts
	// ("" after the last).
	List(ctx context.Context, ns string, sel labels.Selector, limit int, cont string) (records []audit.Record, next string, err error)
	// Get returns the record named name (audit.Name) in ns, nil if none.
	Get(ctx context.Context, ns, name string) (*audit.Record, error)
}

// recordsREST serves auditrecords, read-only, from the trail.
type recordsREST struct {
	source Source
	rest.TableConvertor
}

var (
	_ rest.Storage              = &recordsREST{}
	_ rest.Scoper               = &recordsREST{}
	_ rest.Getter               = &recordsREST{}
	_ rest.Lister               = &recordsREST{}
	_ rest.SingularNameProvider = &recordsREST{}
)

func newRecordsREST(source Source) *recordsREST {
	return &recordsREST{source: source, TableConvertor: recordTable{}}
}

func (r *recordsREST) New() runtime.Object     { return &auditv1alpha1.AuditRecord{} }
func (r *recordsREST) NewList() runtime.Object { return &auditv1alpha1.AuditRecordList{} }
func (r *recordsREST) Destroy()                {}
func (r *recordsREST) NamespaceScoped() bool   { return true }
func (r *recordsREST) GetSingularName() string { return "auditrecord" }

// Get finds a record by name in the request's namespace.
func (r *recordsREST) Get(ctx context.Context, name string, _ *metav1.GetOptions) (runtime.Object, error) {
	if r.source == nil {
		return nil, errNoTrail
	}
	ns, _ := genericapirequest.NamespaceFrom(ctx)
	rec, err := r.source.Get(ctx, ns, name)
	if err != nil {
		return nil, apierrors.NewServiceUnavailable("reading the audit trail: " + err.Error())
	}
	if rec == nil {
		return nil, apierrors.NewNotFound(auditv1alpha1.GroupVersion.WithResource(auditv1alpha1.ResourceAuditRecords).GroupResource(), name)
	}
	return audit.ToObject(*rec), nil
}

// List returns the records of the request's namespace (of every namespace
// for a list across them) that pass its selectors, a page at a time. A
// page may hold fewer records than the limit, and its continue token still
// leads on.
func (r *recordsREST) List(ctx context.Context, options *metainternalversion.ListOptions) (runtime.Object, error) {
	if r.source == nil {
		return nil, errNoTrail
	}
	ns, _ := genericapirequest.NamespaceFrom(ctx)
	sel, fieldSel, limit, cont := labels.Everything(), fields.Everything(), MaxPage, ""
	if options != nil {
		if options.LabelSelector != nil {
			sel = options.LabelSelector
		}
		if options.FieldSelector != nil {
			fieldSel = options.FieldSelector
		}
		if options.Limit > 0 && options.Limit < MaxPage {
			limit = int(options.Limit)
		}
		cont = options.Continue
	}
	// The action is a label of the stored records too: the store selects
	// by it, rather than this server after reading.
	if action, ok := fieldSel.RequiresExactMatch("action"); ok {
		req, err := labels.NewRequirement(keymintv1alpha1.LabelAuditAction, selection.Equals, []string{action})
		if err != nil {
			return nil, apierrors.NewBadRequest(err.Error())
		}
		sel = sel.Add(*req)
	}
	records, next, err := r.source.List(ctx, ns, sel, limit, cont)
	var bad *badContinue
	switch {
	case errors.As(err, &bad):
		return nil, apierrors.NewBadRequest(err.Error())
	case err != nil:
		return nil, apierrors.NewServiceUnavailable("reading the audit trail: " + err.Error())
	}
	list := &auditv1alpha1.AuditRecordList{Items: []auditv1alpha1.AuditRecord{}}
	list.Continue = next
	for _, rec := range records {
		if o := audit.ToObject(rec); fieldSel.Matches(recordFieldSet(o)) {
			list.Items = append(list.Items, *o)
		}
	}
	return list, nil
}

// badContinue: a continue token this server did not give.
type badContinue struct{ error }

// errNoTrail: the manager keeps records on stdout only.
var errNoTrail = apierrors.NewServiceUnavailable("keymint keeps no audit log (--audit-log-path): its records are on the manager's stdout only")
