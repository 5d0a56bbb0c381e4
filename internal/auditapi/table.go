package auditapi

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	auditv1alpha1 "github.com/keymint/keymint/api/audit/v1alpha1"
)

// recordTable is what kubectl get prints of records.
type recordTable struct{}

var recordColumns = []metav1.TableColumnDefinition{
	{Name: "Name", Type: "string", Format: "name", Description: "The record's name: its time and a hash of its ID.", Priority: 1},
	{Name: "Time", Type: "string", Format: "date-time", Description: "When it happened."},
	{Name: "Action", Type: "string", Description: "What happened: Issued, Viewed, ViewDenied, Deleted, ..."},
	{Name: "Actor", Type: "string", Description: "Who did it, as the API server authenticated them."},
	{Name: "APIKey", Type: "string", Description: "The APIKey."},
	{Name: "Key ID", Type: "string", Description: "The key's ID (never the key)."},
	{Name: "Message", Type: "string", Description: "What happened, in words."},
}

func (recordTable) ConvertToTable(_ context.Context, object runtime.Object, _ runtime.Object) (*metav1.Table, error) {
	t := &metav1.Table{ColumnDefinitions: recordColumns}
	row := func(r *auditv1alpha1.AuditRecord) {
		actor := r.Actor.Username
		if r.Impersonator != nil {
			actor += " (by " + r.Impersonator.Username + ")"
		}
		if r.Repeats != nil {
			actor += fmt.Sprintf(" ×%d", r.Repeats.Count)
		}
		t.Rows = append(t.Rows, metav1.TableRow{
			Cells:  []any{r.Name, r.Time.UTC().Format(time.RFC3339), r.Action, actor, r.APIKey, r.KeyID, r.Message},
			Object: runtime.RawExtension{Object: r},
		})
	}
	switch o := object.(type) {
	case *auditv1alpha1.AuditRecord:
		row(o)
	case *auditv1alpha1.AuditRecordList:
		for i := range o.Items {
			row(&o.Items[i])
		}
		t.Continue = o.Continue
	default:
		return nil, fmt.Errorf("auditrecords cannot print a %T", object)
	}
	if l, err := meta.ListAccessor(object); err == nil {
		t.ResourceVersion = l.GetResourceVersion()
	}
	return t, nil
}
