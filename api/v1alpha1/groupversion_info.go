// Package v1alpha1 contains the v1alpha1 API of the keymint.io group.
// +kubebuilder:object:generate=true
// +groupName=keymint.io
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of the objects in this package.
	GroupVersion = schema.GroupVersion{Group: "keymint.io", Version: "v1alpha1"}

	// SchemeBuilder registers the types of this package with a scheme. It
	// needs only apimachinery, so the API package is cheap to import.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the types of this package to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &APIKey{}, &APIKeyList{}, &AuditEntry{}, &AuditEntryList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
