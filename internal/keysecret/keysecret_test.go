package keysecret

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/keys"
)

func owner() *keymintv1alpha1.APIKey {
	return &keymintv1alpha1.APIKey{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "ci", UID: "uid-1"},
		Spec:       keymintv1alpha1.APIKeySpec{User: "alice"},
	}
}

func TestBuildThenRead(t *testing.T) {
	k, err := keys.Mint()
	if err != nil {
		t.Fatal(err)
	}
	issued := time.Date(2026, 1, 31, 10, 0, 0, 0, time.UTC)
	expires := time.Date(2026, 2, 28, 10, 0, 0, 0, time.UTC)
	for _, exp := range []*time.Time{&expires, nil} {
		s := Build(owner(), k, Issue{Revision: 1, IssuedAt: issued, ExpiresAt: exp})
		if !OwnedBy(s, owner()) {
			t.Fatal("a built Secret is not owned by its APIKey")
		}
		in, err := Read(s)
		if err != nil {
			t.Fatal(err)
		}
		// As the manager's cache holds it: without the key.
		cached := s.DeepCopy()
		WithoutKey(cached)
		if _, ok := cached.Data[keymintv1alpha1.DataKey]; ok {
			t.Fatal("WithoutKey kept the key")
		}
		fromCache, err := Read(cached)
		if err != nil {
			t.Fatal(err)
		}
		for _, got := range []Issue{in, fromCache} {
			if got.KeyID != k.ID || got.KeyHash != keys.Hash(k.Value) || !got.IssuedAt.Equal(issued) {
				t.Fatalf("Read = %+v", got)
			}
			if (exp == nil) != (got.ExpiresAt == nil) || (exp != nil && !got.ExpiresAt.Equal(*exp)) {
				t.Fatalf("ExpiresAt = %v, want %v", got.ExpiresAt, exp)
			}
		}
	}
}

func TestOwnedByChecksTheUID(t *testing.T) {
	k, _ := keys.Mint()
	s := Build(owner(), k, Issue{Revision: 1, IssuedAt: time.Now(), ExpiresAt: nil})
	other := owner()
	other.UID = "uid-2" // a later APIKey of the same name
	if OwnedBy(s, other) {
		t.Fatal("a Secret of an earlier APIKey of the same name counts as owned")
	}
	s.OwnerReferences = nil
	if OwnedBy(s, owner()) {
		t.Fatal("a Secret without owner counts as owned")
	}
}

func TestReadRejectsAMalformedKeyWithoutPrintingIt(t *testing.T) {
	k, _ := keys.Mint()
	s := Build(owner(), k, Issue{Revision: 1, IssuedAt: time.Now(), ExpiresAt: nil})
	last := "x"
	if strings.HasSuffix(k.Value, last) {
		last = "y"
	}
	tampered := k.Value[:len(k.Value)-1] + last
	s.Data[keymintv1alpha1.DataKey] = []byte(tampered)
	_, err := Read(s)
	if err == nil {
		t.Fatal("a tampered key was read")
	}
	if strings.Contains(err.Error(), tampered) {
		t.Fatal("the error holds the key")
	}
	// A valid key that is not the one the annotation names is refused too.
	other, _ := keys.Mint()
	s.Data[keymintv1alpha1.DataKey] = []byte(other.Value)
	if _, err := Read(s); err == nil || strings.Contains(err.Error(), other.Value) {
		t.Fatalf("a swapped key: err = %v", err)
	}
	// Without key and without hash there is nothing to read.
	delete(s.Data, keymintv1alpha1.DataKey)
	delete(s.Annotations, keymintv1alpha1.AnnotationKeyHash)
	if _, err := Read(s); err == nil {
		t.Fatal("a Secret without key or hash was read")
	}
}
