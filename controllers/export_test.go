package controllers

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
)

// What the end-to-end tests in package controllers_test use of this
// package's insides, and the key builders both kinds of test share. Those
// tests are a package of their own so that they build the manager with
// internal/app, as main does.
var (
	NewKey          = newKey
	Months          = months
	Never           = never
	At              = at
	OwnerAccessName = ownerAccessName
	StripCopies     = stripCopies
	Candidate       = candidate
)

// SetReconciled makes r tell hook of every finished pass over a key.
func SetReconciled(r *APIKeyReconciler, hook func(key types.NamespacedName, resourceVersion string)) {
	r.reconciled = hook
}

// newKey returns an APIKey for user that expires as exp says.
func newKey(ns, name, user string, exp keymintv1alpha1.Expiration) *keymintv1alpha1.APIKey {
	return &keymintv1alpha1.APIKey{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       keymintv1alpha1.APIKeySpec{User: user, Expiration: exp},
	}
}

func months(n int32) keymintv1alpha1.Expiration {
	return keymintv1alpha1.Expiration{Months: &n}
}

func never() keymintv1alpha1.Expiration {
	return keymintv1alpha1.Expiration{Never: new(true)}
}

func at(t time.Time) keymintv1alpha1.Expiration {
	mt := metav1.NewTime(t)
	return keymintv1alpha1.Expiration{At: &mt}
}
