// +kubebuilder:object:generate=true
// +kubebuilder:skip
// +k8s:openapi-gen=true
// +k8s:openapi-model-package=io.keymint.audit.v1alpha1
// +groupName=audit.keymint.io

// Package v1alpha1 is keymint's aggregated API, audit.keymint.io/v1alpha1,
// served by the manager behind an APIService: APIKeyReveal, which gives an
// APIKey's owner their key after recording the view, and AuditRecord, the
// audit trail. The API server authenticates every caller and checks RBAC
// before it forwards a request, so both work with every credential and on
// every cluster. They are not CRDs: nothing of them is stored in etcd.
package v1alpha1
