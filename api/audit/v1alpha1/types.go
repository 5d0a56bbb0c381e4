package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// APIKeyReveal asks for an APIKey's key. It is create-only, like a
// TokenRequest: the response carries the key in status to the APIKey's
// owner, after keymint has durably recorded the view, and nothing keeps it.
// +kubebuilder:object:root=true
type APIKeyReveal struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   APIKeyRevealSpec   `json:"spec"`
	Status APIKeyRevealStatus `json:"status,omitempty"`
}

// APIKeyRevealSpec names the APIKey, in the request's namespace.
type APIKeyRevealSpec struct {
	// Name is the APIKey's name.
	Name string `json:"name"`
}

// APIKeyRevealStatus is the key, for its owner only.
type APIKeyRevealStatus struct {
	Key       string       `json:"key,omitempty"`
	KeyID     string       `json:"keyID,omitempty"`
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`
}

// AuditRecord is one record of the audit trail: who issued, viewed, used,
// expired or deleted which key, and when. Its name is the record's ID made
// safe for a URL; its namespace the APIKey's.
// +kubebuilder:object:root=true
type AuditRecord struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// ID names the event the record is about, the same on every replica
	// and retry; the record's name is a hash of it.
	ID     string           `json:"id,omitempty"`
	Time   metav1.MicroTime `json:"time"`
	Action string           `json:"action"`
	Actor  Actor            `json:"actor"`
	// Impersonator is the authenticated user who acted as Actor.
	Impersonator *Actor `json:"impersonator,omitempty"`
	// APIKey is the APIKey's name; User its spec.user.
	APIKey    string   `json:"apiKey"`
	UID       string   `json:"uid,omitempty"`
	User      string   `json:"user"`
	KeyID     string   `json:"keyID,omitempty"`
	SourceIPs []string `json:"sourceIPs,omitempty"`
	UserAgent string   `json:"userAgent,omitempty"`
	AuditID   string   `json:"auditID,omitempty"`
	Message   string   `json:"message,omitempty"`
	// Scope is what a refused list or watch asked for: it names no key.
	Scope *Scope `json:"scope,omitempty"`
	// Repeats summarises the refusals of one actor after its first.
	Repeats *Repeats `json:"repeats,omitempty"`
}

// Scope is what a refused list or watch of Secrets asked for.
type Scope struct {
	// Namespace is empty for a request across all namespaces.
	Namespace     string `json:"namespace,omitempty"`
	LabelSelector string `json:"labelSelector,omitempty"`
	FieldSelector string `json:"fieldSelector,omitempty"`
	// Keys is the number of keys whose Secrets the request could have
	// returned.
	Keys int `json:"keys"`
}

// Actor is who did it, as the API server authenticated them.
type Actor struct {
	Username string   `json:"username"`
	Groups   []string `json:"groups,omitempty"`
}

// Repeats counts the refusals an aggregated record stands for.
type Repeats struct {
	Count int         `json:"count"`
	First metav1.Time `json:"first"`
	Last  metav1.Time `json:"last"`
}

// AuditRecordList is a page of the trail, oldest first.
// +kubebuilder:object:root=true
type AuditRecordList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []AuditRecord `json:"items"`
}
