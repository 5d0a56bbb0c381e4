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
// however many, cost the manager no memory.
func CacheOptions(slotNamespace string) cache.Options {
	owned := labels.SelectorFromSet(labels.Set{keysecret.LabelManagedBy: keysecret.ManagedBy})
	return cache.Options{
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}: {Label: owned},
			&coordinationv1.Lease{}: {
				Label:      owned,
				Namespaces: map[string]cache.Config{slotNamespace: {}},
			},
		},
	}
}
