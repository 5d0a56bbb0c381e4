package auditapi

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"

	auditv1alpha1 "github.com/keymint/keymint/api/audit/v1alpha1"
	"github.com/keymint/keymint/internal/audit"
)

// LabelTime is the label every AuditRecord carries with its time in Unix
// seconds, so that a label selector can pick a time range:
// -l 'audit.keymint.io/time>1765000000,audit.keymint.io/time<1765090000'.
const LabelTime = auditv1alpha1.GroupName + "/time"

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

// Trail is what the records are read from: the audit log.
type Trail interface {
	Each(f audit.Filter, fn func(audit.Record) error) error
}

// recordsREST serves auditrecords, read-only, from the trail.
type recordsREST struct {
	trail Trail
	rest.TableConvertor
}

var (
	_ rest.Storage              = &recordsREST{}
	_ rest.Scoper               = &recordsREST{}
	_ rest.Getter               = &recordsREST{}
	_ rest.Lister               = &recordsREST{}
	_ rest.SingularNameProvider = &recordsREST{}
)

func newRecordsREST(trail Trail) *recordsREST {
	return &recordsREST{trail: trail, TableConvertor: recordTable{}}
}

func (r *recordsREST) New() runtime.Object     { return &auditv1alpha1.AuditRecord{} }
func (r *recordsREST) NewList() runtime.Object { return &auditv1alpha1.AuditRecordList{} }
func (r *recordsREST) Destroy()                {}
func (r *recordsREST) NamespaceScoped() bool   { return true }
func (r *recordsREST) GetSingularName() string { return "auditrecord" }

// Get finds a record by name in the request's namespace.
func (r *recordsREST) Get(ctx context.Context, name string, _ *metav1.GetOptions) (runtime.Object, error) {
	if r.trail == nil {
		return nil, errNoTrail
	}
	ns, _ := genericapirequest.NamespaceFrom(ctx)
	var found *auditv1alpha1.AuditRecord
	err := r.trail.Each(audit.Filter{Namespace: ns}, func(rec audit.Record) error {
		if o := toObject(rec); o.Name == name {
			found = o
			return errStop
		}
		return nil
	})
	if err := readError(err); err != nil {
		return nil, err
	}
	if found == nil {
		return nil, apierrors.NewNotFound(auditv1alpha1.GroupVersion.WithResource(auditv1alpha1.ResourceAuditRecords).GroupResource(), name)
	}
	return found, nil
}

// continueToken is where a page ended: the last record it returned. The
// next page starts after it, or, if a rotation of the log has dropped it,
// after its time.
type continueToken struct {
	Name string    `json:"n"`
	Time time.Time `json:"t"`
}

// List returns the records of the request's namespace (of every namespace
// for a list across them) that pass its selectors, oldest first, a page
// at a time.
func (r *recordsREST) List(ctx context.Context, options *metainternalversion.ListOptions) (runtime.Object, error) {
	if r.trail == nil {
		return nil, errNoTrail
	}
	ns, _ := genericapirequest.NamespaceFrom(ctx)
	sel := selection{labels: labels.Everything(), fields: fields.Everything(), limit: MaxPage}
	if options != nil {
		if options.LabelSelector != nil {
			sel.labels = options.LabelSelector
		}
		if options.FieldSelector != nil {
			sel.fields = options.FieldSelector
		}
		if options.Limit > 0 && options.Limit < MaxPage {
			sel.limit = int(options.Limit)
		}
		if options.Continue != "" {
			raw, err := base64.RawURLEncoding.DecodeString(options.Continue)
			if err != nil || json.Unmarshal(raw, &sel.after) != nil {
				return nil, apierrors.NewBadRequest("the continue token is not one this server gave")
			}
		}
	}
	list, err := r.page(ns, sel, false)
	if err == nil && sel.after.Name != "" && !list.found {
		// The record the last page ended with is gone: go on by time.
		list, err = r.page(ns, sel, true)
	}
	if err := readError(err); err != nil {
		return nil, err
	}
	return list.AuditRecordList, nil
}

type selection struct {
	labels labels.Selector
	fields fields.Selector
	limit  int
	after  continueToken
}

type pageResult struct {
	*auditv1alpha1.AuditRecordList
	found bool
}

func (r *recordsREST) page(ns string, sel selection, byTime bool) (pageResult, error) {
	out := pageResult{AuditRecordList: &auditv1alpha1.AuditRecordList{Items: []auditv1alpha1.AuditRecord{}}}
	skipping := sel.after.Name != ""
	err := r.trail.Each(audit.Filter{Namespace: ns}, func(rec audit.Record) error {
		o := toObject(rec)
		if skipping {
			switch {
			case byTime && o.Time.After(sel.after.Time):
				skipping = false
			case !byTime && o.Name == sel.after.Name:
				skipping, out.found = false, true
				return nil
			default:
				return nil
			}
		}
		if !sel.labels.Matches(labels.Set(o.Labels)) || !sel.fields.Matches(recordFieldSet(o)) {
			return nil
		}
		if len(out.Items) == sel.limit {
			last := out.Items[len(out.Items)-1]
			raw, _ := json.Marshal(continueToken{Name: last.Name, Time: last.Time.Time})
			out.Continue = base64.RawURLEncoding.EncodeToString(raw)
			return errStop
		}
		out.Items = append(out.Items, *o)
		return nil
	})
	return out, err
}

// errNoTrail: the manager keeps records on stdout only.
var errNoTrail = apierrors.NewServiceUnavailable("keymint keeps no audit log (--audit-log-path): its records are on the manager's stdout only")

// errStop ends a read of the trail early.
var errStop = errors.New("stop")

// readError turns a failed read of the trail into the API's error; a read
// stopped on purpose, or past lines that are not records, is not one (the
// export reports those; the API serves what it can read).
func readError(err error) error {
	var unreadable *audit.UnreadableError
	switch {
	case err == nil, errors.Is(err, errStop), errors.As(err, &unreadable):
		return nil
	}
	return apierrors.NewServiceUnavailable("reading the audit trail: " + err.Error())
}

// toObject is a record as the API serves it. Its name is its time and a
// hash of its ID: stable, sortable and safe in a URL.
func toObject(r audit.Record) *auditv1alpha1.AuditRecord {
	id := r.ID
	if id == "" {
		raw, _ := json.Marshal(r)
		id = string(raw)
	}
	sum := sha256.Sum256([]byte(id))
	o := &auditv1alpha1.AuditRecord{
		TypeMeta: metav1.TypeMeta{APIVersion: auditv1alpha1.GroupVersion.String(), Kind: "AuditRecord"},
		ObjectMeta: metav1.ObjectMeta{
			Name:              r.Time.UTC().Format("20060102-150405") + "-" + hex.EncodeToString(sum[:5]),
			Namespace:         r.Namespace,
			CreationTimestamp: metav1.NewTime(r.Time),
			Labels:            map[string]string{LabelTime: strconv.FormatInt(r.Time.Unix(), 10)},
		},
		Time:      metav1.NewTime(r.Time),
		Action:    string(r.Action),
		Actor:     auditv1alpha1.Actor{Username: r.Actor.Username, Groups: r.Actor.Groups},
		APIKey:    r.Name,
		UID:       r.UID,
		User:      r.User,
		KeyID:     r.KeyID,
		SourceIPs: r.SourceIPs,
		UserAgent: r.UserAgent,
		AuditID:   r.AuditID,
		Message:   r.Message,
	}
	if i := r.Impersonator; i != nil {
		o.Impersonator = &auditv1alpha1.Actor{Username: i.Username, Groups: i.Groups}
	}
	if p := r.Repeats; p != nil {
		o.Repeats = &auditv1alpha1.Repeats{Count: p.Count, First: metav1.NewTime(p.First), Last: metav1.NewTime(p.Last)}
	}
	return o
}
