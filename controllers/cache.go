package controllers

import (
	"unique"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/keysecret"
	"github.com/keymint/keymint/internal/slots"
)

// CacheOptions caches only what keymint owns: Secrets and slot Leases with
// its managed-by label, without managedFields. A cluster's other Secrets,
// however many, cost the manager no memory, and its own are cached without
// their keys: no key sits in the manager's memory. RBAC objects are cached
// for the access re-checks, except keymint's own grants to key owners (one
// Role and RoleBinding a key), which keymint reads only from the API server
// and which concern no key's access.
func CacheOptions(slotNamespace string) cache.Options {
	owned := labels.SelectorFromSet(labels.Set{keymintv1alpha1.LabelManagedBy: keymintv1alpha1.ManagedBy})
	others, err := labels.Parse(keymintv1alpha1.LabelManagedBy + "!=" + keymintv1alpha1.ManagedBy)
	if err != nil {
		others = labels.Everything() // not reached: the selector is a constant
	}
	return cache.Options{
		DefaultTransform: stripCopies,
		ByObject: map[client.Object]cache.ByObject{
			&rbacv1.RoleBinding{}: {Label: others},
			&rbacv1.Role{}:        {Label: others},
			&corev1.Secret{}: {Label: owned, Transform: func(obj any) (any, error) {
				if s, ok := obj.(*corev1.Secret); ok {
					keysecret.WithoutKey(s)
					s.Type = corev1.SecretType(intern(string(s.Type)))
				}
				return stripCopies(obj)
			}},
			&coordinationv1.Lease{}: {
				Label:      owned,
				Namespaces: map[string]cache.Config{slotNamespace: {}},
				// The user annotation is for people; the manager goes by
				// the user-hash label. One map less per slot.
				Transform: func(obj any) (any, error) {
					if l, ok := obj.(*coordinationv1.Lease); ok {
						l.Annotations = nil
					}
					return stripCopies(obj)
				},
			},
		},
	}
}

// stripCopies drops what only repeats an object: its managedFields and
// kubectl's last-applied-configuration annotation (a copy of the spec on
// every object applied with kubectl apply or a GitOps tool). It also keeps
// one copy of the metadata strings that thousands of cached objects repeat.
func stripCopies(obj any) (any, error) {
	obj, err := cache.TransformStripManagedFields()(obj)
	if err != nil {
		return obj, err
	}
	if o, ok := obj.(client.Object); ok {
		if a := o.GetAnnotations(); a != nil {
			delete(a, corev1.LastAppliedConfigAnnotation)
		}
		shareMetadataStrings(o)
	}
	return obj, nil
}

// shareMetadataStrings replaces the namespace, the label and annotation
// keys, the finalizers and the owner kinds of o, each decoded into memory of
// its own, by one shared copy. These are few in a cluster, however many
// objects repeat them; values, often one per object, are left alone.
func shareMetadataStrings(o client.Object) {
	o.SetNamespace(intern(o.GetNamespace()))
	o.SetLabels(internKeys(o.GetLabels()))
	o.SetAnnotations(internKeys(o.GetAnnotations()))
	finalizers := o.GetFinalizers()
	for i := range finalizers {
		finalizers[i] = intern(finalizers[i])
	}
	refs := o.GetOwnerReferences()
	for i := range refs {
		refs[i].APIVersion, refs[i].Kind = intern(refs[i].APIVersion), intern(refs[i].Kind)
	}
}

// ownStrings are the metadata strings keymint itself writes on the objects
// it caches: one copy of each serves them all, for as long as the manager
// runs.
var ownStrings = func() map[string]string {
	m := map[string]string{}
	for _, s := range []string{
		keymintv1alpha1.LabelManagedBy, keymintv1alpha1.LabelAPIKey, string(keymintv1alpha1.SecretType),
		keymintv1alpha1.AnnotationIssuedAt, keymintv1alpha1.AnnotationKeyHash, keysecret.AnnotationSignature,
		slots.LabelUserHash, slots.LabelHolderNamespace, slots.LabelHolderName,
		keymintv1alpha1.Finalizer, "APIKey", keymintv1alpha1.GroupVersion.String(),
	} {
		m[s] = s
	}
	return m
}()

// intern returns one shared copy of s. keymint's own strings come from a
// fixed table. Any other, such as an annotation key a user wrote or a
// namespace's name, is shared through package unique, which forgets it
// with its last holder: nothing a user writes outlives the objects that
// hold it.
func intern(s string) string {
	if own, ok := ownStrings[s]; ok {
		return own
	}
	return unique.Make(s).Value()
}

// internKeys returns m with interned keys; nil when m is empty, since an
// empty map still holds memory.
func internKeys(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[intern(k)] = v
	}
	return out
}
