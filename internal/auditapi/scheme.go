// Package auditapi serves keymint's aggregated API, audit.keymint.io: the
// reveal of a key to its owner (apikeyreveals) and the audit trail
// (auditrecords). It is a k8s.io/apiserver server, as metrics-server is:
// kube-apiserver authenticates every caller, checks RBAC, and forwards the
// request with the caller's identity over its front-proxy client
// certificate, which this server verifies (delegated authentication); it
// asks kube-apiserver again for its own decisions (delegated
// authorization). Nothing it serves is stored in etcd.
package auditapi

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"

	auditv1alpha1 "github.com/keymint/keymint/api/audit/v1alpha1"
)

var (
	// Scheme holds the API's types, in their one version and as the
	// server's internal version: the same Go types, since nothing is
	// stored and nothing is converted.
	Scheme = runtime.NewScheme()
	// Codecs serve them.
	Codecs = serializer.NewCodecFactory(Scheme)
)

func init() {
	utilruntime.Must(auditv1alpha1.AddToScheme(Scheme))
	internal := schema.GroupVersion{Group: auditv1alpha1.GroupName, Version: runtime.APIVersionInternal}
	Scheme.AddKnownTypes(internal, &auditv1alpha1.APIKeyReveal{}, &auditv1alpha1.AuditRecord{}, &auditv1alpha1.AuditRecordList{})
	utilruntime.Must(Scheme.AddFieldLabelConversionFunc(auditv1alpha1.GroupVersion.WithKind("AuditRecord"), recordFieldLabel))
	metav1.AddToGroupVersion(Scheme, schema.GroupVersion{Version: "v1"})
	unversioned := schema.GroupVersion{Group: "", Version: "v1"}
	Scheme.AddUnversionedTypes(unversioned, &metav1.Status{}, &metav1.APIVersions{}, &metav1.APIGroupList{}, &metav1.APIGroup{}, &metav1.APIResourceList{})
}
