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
		s := Build(owner(), k, issued, exp)
		if !OwnedBy(s, owner()) {
			t.Fatal("a built Secret is not owned by its APIKey")
		}
		in, err := Read(s)
		if err != nil {
			t.Fatal(err)
		}
		if in.KeyID != k.ID || in.KeyHash != keys.Hash(k.Value) || !in.IssuedAt.Equal(issued) {
			t.Fatalf("Read = %+v", in)
		}
		if (exp == nil) != (in.ExpiresAt == nil) || (exp != nil && !in.ExpiresAt.Equal(*exp)) {
			t.Fatalf("ExpiresAt = %v, want %v", in.ExpiresAt, exp)
		}
	}
}

func TestOwnedByChecksTheUID(t *testing.T) {
	k, _ := keys.Mint()
	s := Build(owner(), k, time.Now(), nil)
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
	s := Build(owner(), k, time.Now(), nil)
	last := "x"
	if strings.HasSuffix(k.Value, last) {
		last = "y"
	}
	tampered := k.Value[:len(k.Value)-1] + last
	s.Data[DataKey] = []byte(tampered)
	_, err := Read(s)
	if err == nil {
		t.Fatal("a tampered key was read")
	}
	if strings.Contains(err.Error(), tampered) {
		t.Fatal("the error holds the key")
	}
}
