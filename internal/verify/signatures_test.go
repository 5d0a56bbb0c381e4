package verify

import (
	"bytes"
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/keys"
	"github.com/keymint/keymint/internal/keysecret"
)

// TestOnlyASignedSecretHoldsAKey: a Secret keymint signed for the key holds
// it, once checked and after; one planted with the same name, owner and
// hash does not, nor does a signed one changed since (a new version).
func TestOnlyASignedSecretHoldsAKey(t *testing.T) {
	signer, err := keysecret.NewSigner(bytes.Repeat([]byte{1}, keysecret.SigningKeySize))
	if err != nil {
		t.Fatal(err)
	}
	key := &keymintv1alpha1.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "k", UID: "uid"},
		Spec: keymintv1alpha1.APIKeySpec{User: "alice"}}
	minted, err := keys.Mint()
	if err != nil {
		t.Fatal(err)
	}
	signed := keysecret.Build(key, minted, keysecret.Issue{Revision: 1, IssuedAt: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)})
	if err := signer.Sign(signed, key); err != nil {
		t.Fatal(err)
	}
	signed.UID, signed.ResourceVersion = "secret-uid", "7"
	in, _ := keysecret.Read(signed)
	key.Status = keymintv1alpha1.APIKeyStatus{Phase: keymintv1alpha1.PhaseActive, KeyHash: in.KeyHash, SecretName: signed.Name}
	keysecret.WithoutKey(signed)

	planted := signed.DeepCopy()
	delete(planted.Annotations, keysecret.AnnotationSignature)
	planted.ResourceVersion = "8"
	tampered := signed.DeepCopy()
	tampered.Annotations[keymintv1alpha1.AnnotationIssuedAt] = "2020-01-01T00:00:00Z"
	tampered.ResourceVersion = "9"

	v := &Verifier{Signer: signer}
	for _, tt := range []struct {
		name   string
		secret *corev1.Secret
		want   bool
	}{
		{"signed", signed, true},
		{"signed, checked before", signed, true},
		{"planted", planted, false},
		{"signed, then changed", tampered, false},
	} {
		v.Cache = objectsReader{key: key, secret: tt.secret}
		if got := v.inSecret(context.Background(), key, key.Status.KeyHash, false); got != tt.want {
			t.Errorf("%s: inSecret = %v, want %v", tt.name, got, tt.want)
		}
	}
}
