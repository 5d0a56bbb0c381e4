package audit

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	auditv1alpha1 "github.com/keymint/keymint/api/audit/v1alpha1"
)

// ToObject is r as keymint's API serves it (auditrecords): named and
// labelled as it is stored (Name, Labels), in its APIKey's namespace.
func ToObject(r Record) *auditv1alpha1.AuditRecord {
	o := &auditv1alpha1.AuditRecord{
		TypeMeta: metav1.TypeMeta{APIVersion: auditv1alpha1.GroupVersion.String(), Kind: "AuditRecord"},
		ObjectMeta: metav1.ObjectMeta{
			Name:              Name(r),
			Namespace:         r.Namespace,
			CreationTimestamp: metav1.NewTime(r.Time),
			Labels:            Labels(r),
		},
		ID:        r.ID,
		Time:      metav1.NewMicroTime(r.Time),
		Action:    string(r.Action),
		Actor:     auditv1alpha1.Actor(r.Actor),
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
	if s := r.Scope; s != nil {
		o.Scope = &auditv1alpha1.Scope{Namespace: s.Namespace, LabelSelector: s.LabelSelector, FieldSelector: s.FieldSelector, Keys: s.Keys}
	}
	if p := r.Repeats; p != nil {
		o.Repeats = &auditv1alpha1.Repeats{Count: p.Count, First: metav1.NewTime(p.First), Last: metav1.NewTime(p.Last)}
	}
	return o
}

// FromObject is the record o serves.
func FromObject(o *auditv1alpha1.AuditRecord) Record {
	r := Record{
		ID:        o.ID,
		Time:      o.Time.UTC(),
		Action:    Action(o.Action),
		Actor:     Actor(o.Actor),
		Namespace: o.Namespace,
		Name:      o.APIKey,
		UID:       o.UID,
		User:      o.User,
		KeyID:     o.KeyID,
		SourceIPs: o.SourceIPs,
		UserAgent: o.UserAgent,
		AuditID:   o.AuditID,
		Message:   o.Message,
	}
	if i := o.Impersonator; i != nil {
		r.Impersonator = &Actor{Username: i.Username, Groups: i.Groups}
	}
	if s := o.Scope; s != nil {
		r.Scope = &Scope{Namespace: s.Namespace, LabelSelector: s.LabelSelector, FieldSelector: s.FieldSelector, Keys: s.Keys}
	}
	if p := o.Repeats; p != nil {
		r.Repeats = &Repeats{Count: p.Count, First: p.First.UTC(), Last: p.Last.UTC()}
	}
	return r
}
