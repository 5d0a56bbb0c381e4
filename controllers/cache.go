package controllers

import (
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keymint/keymint/internal/keysecret"
)

// CacheOptions caches only what keymint owns: Secrets and slot Leases with
// its managed-by label, without managedFields. A cluster's other Secrets,
// however many, cost the manager no memory, and its own are cached without
// their keys: no key sits in the manager's memory.
func CacheOptions(slotNamespace string) cache.Options {
	owned := labels.SelectorFromSet(labels.Set{keysecret.LabelManagedBy: keysecret.ManagedBy})
	return cache.Options{
		DefaultTransform: stripCopies,
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}: {Label: owned, Transform: func(obj any) (any, error) {
				if s, ok := obj.(*corev1.Secret); ok {
					keysecret.WithoutKey(s)
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
// every object applied with kubectl apply or a GitOps tool).
func stripCopies(obj any) (any, error) {
	obj, err := cache.TransformStripManagedFields()(obj)
	if err != nil {
		return obj, err
	}
	if o, ok := obj.(client.Object); ok {
		if a := o.GetAnnotations(); a != nil {
			if _, ok := a[corev1.LastAppliedConfigAnnotation]; ok {
				delete(a, corev1.LastAppliedConfigAnnotation)
				o.SetAnnotations(a)
			}
		}
	}
	return obj, nil
}
