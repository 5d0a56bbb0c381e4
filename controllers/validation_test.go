package controllers_test

import (
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/testenv"
)

func rawKey(ns, name string, spec map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"spec": spec}}
	u.SetGroupVersionKind(keymintv1alpha1.GroupVersion.WithKind("APIKey"))
	u.SetNamespace(ns)
	u.SetName(name)
	return u
}

// TestInvalidSpecsAreRejectedAtAdmission sends each invalid spec to the API
// server and expects a rejection that names the field; nothing is created.
func TestInvalidSpecsAreRejectedAtAdmission(t *testing.T) {
	testenv.RequireControlPlane(t)
	ns := newNamespace(t)
	never := map[string]any{"never": true}
	tests := []struct {
		name      string
		keyName   string
		spec      map[string]any
		wantField string
		wantText  string
	}{
		{"no user", "", map[string]any{"expiration": never}, "spec.user", "Required value"},
		{"empty user", "", map[string]any{"user": "", "expiration": never}, "spec.user", "at least 1 chars long"},
		{"user of 254 characters", "", map[string]any{"user": strings.Repeat("u", 254), "expiration": never}, "spec.user", "may not be more than 253 bytes"},
		{"no expiration", "", map[string]any{"user": "a"}, "spec.expiration", "Required value"},
		{"empty expiration", "", map[string]any{"user": "a", "expiration": map[string]any{}}, "spec.expiration", "exactly one of months, at or never must be set"},
		{"months and never", "", map[string]any{"user": "a", "expiration": map[string]any{"months": 1, "never": true}}, "spec.expiration", "exactly one of months, at or never must be set"},
		{"months and at", "", map[string]any{"user": "a", "expiration": map[string]any{"months": 1, "at": "2030-01-01T00:00:00Z"}}, "spec.expiration", "exactly one of months, at or never must be set"},
		{"at and never", "", map[string]any{"user": "a", "expiration": map[string]any{"at": "2030-01-01T00:00:00Z", "never": true}}, "spec.expiration", "exactly one of months, at or never must be set"},
		{"never false", "", map[string]any{"user": "a", "expiration": map[string]any{"never": false}}, "spec.expiration.never", "Unsupported value: false"},
		{"months 0", "", map[string]any{"user": "a", "expiration": map[string]any{"months": 0}}, "spec.expiration.months", "should be greater than or equal to 1"},
		{"months 121", "", map[string]any{"user": "a", "expiration": map[string]any{"months": 121}}, "spec.expiration.months", "should be less than or equal to 120"},
		{"months not a number", "", map[string]any{"user": "a", "expiration": map[string]any{"months": "three"}}, "spec.expiration.months", "must be of type integer"},
		{"at not a time", "", map[string]any{"user": "a", "expiration": map[string]any{"at": "next tuesday"}}, "spec.expiration.at", "date-time"},
		{"secretName not a DNS subdomain", "", map[string]any{"user": "a", "expiration": never, "secretName": "Not_Valid"}, "spec.secretName", "should match"},
		{"secretName too long", "", map[string]any{"user": "a", "expiration": never, "secretName": strings.Repeat("s", 254)}, "spec.secretName", "may not be more than 253 bytes"},
		{"description of 257 characters", "", map[string]any{"user": "a", "expiration": never, "description": strings.Repeat("d", 257)}, "spec.description", "may not be more than 256 bytes"},
		{"name longer than a label value", strings.Repeat("n", 64), map[string]any{"user": "a", "expiration": never}, "metadata.name", "at most 63 characters"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			name := tt.keyName
			if name == "" {
				name = "invalid-" + strings.Repeat("x", i%3) + string(rune('a'+i))
			}
			err := k8sClient.Create(ctx, rawKey(ns, name, tt.spec))
			g.Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want Invalid, got %v", err)
			g.Expect(err.Error()).To(ContainSubstring(tt.wantField))
			g.Expect(err.Error()).To(ContainSubstring(tt.wantText))
		})
	}
	list := &keymintv1alpha1.APIKeyList{}
	NewWithT(t).Expect(k8sClient.List(ctx, list, client.InNamespace(ns))).To(Succeed())
	NewWithT(t).Expect(list.Items).To(BeEmpty(), "nothing was created")
}

// TestImmutableFields changes each immutable field of a valid APIKey and
// expects the change refused with the field named; the APIKey is unchanged.
func TestImmutableFields(t *testing.T) {
	testenv.RequireControlPlane(t)
	ns := newNamespace(t)
	orig := rawKey(ns, "immutable", map[string]any{"user": "alice", "expiration": map[string]any{"months": 3}, "secretName": "alice-key"})
	NewWithT(t).Expect(k8sClient.Create(ctx, orig)).To(Succeed())
	noSecretName := rawKey(ns, "immutable-default", map[string]any{"user": "alice", "expiration": map[string]any{"never": true}})
	NewWithT(t).Expect(k8sClient.Create(ctx, noSecretName)).To(Succeed())

	tests := []struct {
		name      string
		obj       *unstructured.Unstructured
		path      []string
		value     any
		wantField string
		wantText  string
	}{
		{"user", orig, []string{"spec", "user"}, "mallory", "spec.user", "user is immutable"},
		{"expiration months", orig, []string{"spec", "expiration"}, map[string]any{"months": int64(120)}, "spec.expiration", "expiration is immutable"},
		{"expiration to never", orig, []string{"spec", "expiration"}, map[string]any{"never": true}, "spec.expiration", "expiration is immutable"},
		{"secretName changed", orig, []string{"spec", "secretName"}, "other", "spec.secretName", "secretName is immutable"},
		{"secretName removed", orig, []string{"spec", "secretName"}, nil, "spec.secretName", "secretName is immutable"},
		{"secretName added", noSecretName, []string{"spec", "secretName"}, "added", "spec.secretName", "secretName is immutable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			obj := tt.obj.DeepCopy()
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(obj), obj)).To(Succeed())
			if tt.value == nil {
				unstructured.RemoveNestedField(obj.Object, tt.path...)
			} else {
				g.Expect(unstructured.SetNestedField(obj.Object, tt.value, tt.path...)).To(Succeed())
			}
			err := k8sClient.Update(ctx, obj)
			g.Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want Invalid, got %v", err)
			g.Expect(err.Error()).To(ContainSubstring(tt.wantField))
			g.Expect(err.Error()).To(ContainSubstring(tt.wantText))
		})
	}
	// The description may change.
	g := NewWithT(t)
	obj := orig.DeepCopy()
	g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(obj), obj)).To(Succeed())
	g.Expect(unstructured.SetNestedField(obj.Object, "now documented", "spec", "description")).To(Succeed())
	g.Expect(k8sClient.Update(ctx, obj)).To(Succeed())
}
