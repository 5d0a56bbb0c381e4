package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// AuditEntry is where keymint keeps one audit record when the trail is
// stored in the API server (--audit-store=api): etcd is replicated and
// durable, so a record one replica acknowledged is there for the other.
// It lives in keymint's own namespace, whatever the APIKey's, so that
// deleting a namespace, or holding rights in one, erases nothing; only
// keymint writes and deletes it (retention). Read the trail through
// auditrecords.audit.keymint.io, which serves each record in its APIKey's
// namespace; this is its storage.
// +kubebuilder:object:root=true
// +kubebuilder:resource:categories=keymint
// +kubebuilder:printcolumn:name="Namespace",type=string,JSONPath=`.metadata.labels.keymint\.io/namespace`
// +kubebuilder:printcolumn:name="APIKey",type=string,JSONPath=`.metadata.labels.keymint\.io/apikey`
// +kubebuilder:printcolumn:name="Action",type=string,JSONPath=`.metadata.labels.keymint\.io/action`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type AuditEntry struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Record is the audit record, as `kubectl apikey audit export` prints
	// it. It is written once and never changed.
	// +kubebuilder:pruning:PreserveUnknownFields
	Record runtime.RawExtension `json:"record"`
}

// AuditEntryList is a list of AuditEntries.
// +kubebuilder:object:root=true
type AuditEntryList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []AuditEntry `json:"items"`
}

// The labels of an AuditEntry, by which the trail is read and kept.
const (
	// LabelAuditNamespace is the APIKey's namespace.
	LabelAuditNamespace = "keymint.io/namespace"
	// LabelAuditAction is the record's action.
	LabelAuditAction = "keymint.io/action"
	// LabelAuditDay is the record's day, YYYYMMDD (UTC): retention deletes
	// by it (keymint.io/day<N).
	LabelAuditDay = "keymint.io/day"
	// LabelAuditTime is the record's time in Unix seconds.
	LabelAuditTime = "keymint.io/time"
)
