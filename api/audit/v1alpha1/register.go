package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupName is the aggregated API's group.
const GroupName = "audit.keymint.io"

var (
	// GroupVersion is the group and version of the objects in this package.
	GroupVersion = schema.GroupVersion{Group: GroupName, Version: "v1alpha1"}

	// SchemeBuilder registers the types of this package with a scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the types of this package to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &APIKeyReveal{}, &AuditRecord{}, &AuditRecordList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}

// The resources, as RBAC names them.
const (
	ResourceAPIKeyReveals = "apikeyreveals"
	ResourceAuditRecords  = "auditrecords"
)
