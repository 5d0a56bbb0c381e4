package keysecret

import (
	"bytes"
	"errors"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/keys"
)

func TestSignedSecretsVerifyAndForgedOnesDoNot(t *testing.T) {
	signer, err := NewSigner(bytes.Repeat([]byte{7}, SigningKeySize))
	if err != nil {
		t.Fatal(err)
	}
	other, _ := NewSigner(bytes.Repeat([]byte{8}, SigningKeySize))
	k, _ := keys.Mint()
	planted, _ := keys.Mint()
	issued := time.Date(2026, 1, 31, 10, 0, 0, 0, time.UTC)
	expires := time.Date(2026, 2, 28, 10, 0, 0, 0, time.UTC)
	signed := Build(owner(), k, Issue{Revision: 1, IssuedAt: issued, ExpiresAt: &expires})
	if err := signer.Sign(signed, owner()); err != nil {
		t.Fatal(err)
	}
	in, err := signer.Verify(signed, owner())
	if err != nil || in.KeyID != k.ID || !in.ExpiresAt.Equal(expires) {
		t.Fatalf("a signed Secret does not verify: %v %+v", err, in)
	}
	cached := signed.DeepCopy()
	WithoutKey(cached)
	if _, err := signer.Verify(cached, owner()); err != nil {
		t.Fatalf("a signed Secret read without its key (as cached) does not verify: %v", err)
	}

	for name, forge := range map[string]func(s *corev1.Secret){
		"unsigned":            func(s *corev1.Secret) { delete(s.Annotations, AnnotationSignature) },
		"signed with another": func(s *corev1.Secret) { _ = other.Sign(s, owner()) },
		"another key":         func(s *corev1.Secret) { s.Data[keymintv1alpha1.DataKey] = []byte(planted.Value) },
		"another key and hash": func(s *corev1.Secret) {
			s.Data[keymintv1alpha1.DataKey] = []byte(planted.Value)
			s.Annotations[keymintv1alpha1.AnnotationKeyHash] = keys.Hash(planted.Value)
		},
		"never expires":     func(s *corev1.Secret) { s.Data[keymintv1alpha1.DataExpiresAt] = []byte(keymintv1alpha1.ExpiresNever) },
		"issued earlier":    func(s *corev1.Secret) { s.Annotations[keymintv1alpha1.AnnotationIssuedAt] = "2020-01-01T00:00:00Z" },
		"another key ID":    func(s *corev1.Secret) { s.Data[keymintv1alpha1.DataKeyID] = []byte(planted.ID) },
		"another user":      func(s *corev1.Secret) { s.Data[keymintv1alpha1.DataUser] = []byte("mallory") },
		"another name":      func(s *corev1.Secret) { s.Name = "elsewhere" },
		"another namespace": func(s *corev1.Secret) { s.Namespace = "team-b" },
		"another APIKey":    func(s *corev1.Secret) { s.OwnerReferences[0].UID = "uid-2" },
		"garbage signature": func(s *corev1.Secret) { s.Annotations[AnnotationSignature] = "!!" },
		"another revision":  func(s *corev1.Secret) { s.Annotations[keymintv1alpha1.AnnotationRevision] = "7" },
		"revision removed":  func(s *corev1.Secret) { delete(s.Annotations, keymintv1alpha1.AnnotationRevision) },
		"a previous key named": func(s *corev1.Secret) {
			s.Annotations[keymintv1alpha1.AnnotationPreviousKeyHash] = keys.Hash(planted.Value)
		},
	} {
		t.Run(name, func(t *testing.T) {
			forged := signed.DeepCopy()
			forge(forged)
			o := owner()
			o.UID = forged.OwnerReferences[0].UID
			if _, err := signer.Verify(forged, o); !errors.Is(err, ErrUntrusted) {
				t.Fatalf("a forged Secret (%s) verified: %v", name, err)
			}
		})
	}
	if _, err := NewSigner([]byte("short")); err == nil {
		t.Fatal("a short signing key was accepted")
	}
}

// TestCurrentAdoptsOnlyTheIssueTheStatusRecordsOrTheNext: a signed Secret
// is adopted only as the live key the status records or the issue after
// it; a copy of any earlier issue, or of a key since revoked, is not.
func TestCurrentAdoptsOnlyTheIssueTheStatusRecordsOrTheNext(t *testing.T) {
	active := keymintv1alpha1.APIKeyStatus{Phase: keymintv1alpha1.PhaseActive, Revision: 3, KeyHash: "sha256:cur"}
	for _, tt := range []struct {
		name   string
		status keymintv1alpha1.APIKeyStatus
		in     Issue
		want   bool
	}{
		{"the recorded live key", active, Issue{Revision: 3, KeyHash: "sha256:cur"}, true},
		{"the next issue, minted and not recorded yet", active, Issue{Revision: 4, KeyHash: "sha256:new"}, true},
		{"an earlier issue (replayed after a reissue)", active, Issue{Revision: 2, KeyHash: "sha256:old"}, false},
		{"the recorded revision with another key", active, Issue{Revision: 3, KeyHash: "sha256:other"}, false},
		{"two ahead", active, Issue{Revision: 5, KeyHash: "sha256:new"}, false},
		{"the key of a suspended APIKey", keymintv1alpha1.APIKeyStatus{Phase: keymintv1alpha1.PhaseSuspended, Revision: 3, KeyHash: "sha256:cur"},
			Issue{Revision: 3, KeyHash: "sha256:cur"}, false},
		{"the key of an expired APIKey", keymintv1alpha1.APIKeyStatus{Phase: keymintv1alpha1.PhaseExpired, Revision: 3, KeyHash: "sha256:cur"},
			Issue{Revision: 3, KeyHash: "sha256:cur"}, false},
		{"the first issue of a new APIKey", keymintv1alpha1.APIKeyStatus{}, Issue{Revision: 1}, true},
		{"a Secret from before revisions, the recorded key", keymintv1alpha1.APIKeyStatus{Phase: keymintv1alpha1.PhaseActive, KeyHash: "sha256:cur"},
			Issue{KeyHash: "sha256:cur"}, true},
		{"a Secret from before revisions, another key", keymintv1alpha1.APIKeyStatus{Phase: keymintv1alpha1.PhaseActive, KeyHash: "sha256:cur"},
			Issue{KeyHash: "sha256:old"}, false},
	} {
		o := owner()
		o.Status = tt.status
		if got := Current(o, tt.in); got != tt.want {
			t.Errorf("%s: Current = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestARenewedSecretVouchesOnlyForItsSignedPredecessor: the previous key
// a renewal's Secret names is signed: it cannot be changed or removed.
func TestARenewedSecretVouchesOnlyForItsSignedPredecessor(t *testing.T) {
	signer, _ := NewSigner(bytes.Repeat([]byte{7}, SigningKeySize))
	k, _ := keys.Mint()
	prev, _ := keys.Mint()
	other, _ := keys.Mint()
	issued := time.Date(2026, 1, 31, 10, 0, 0, 0, time.UTC)
	renewed := Build(owner(), k, Issue{Revision: 2, IssuedAt: issued, PreviousKeyHash: keys.Hash(prev.Value)})
	if err := signer.Sign(renewed, owner()); err != nil {
		t.Fatal(err)
	}
	in, err := signer.Verify(renewed, owner())
	if err != nil || in.PreviousKeyHash != keys.Hash(prev.Value) || in.Revision != 2 {
		t.Fatalf("a renewed Secret does not verify with its previous key: %v %+v", err, in)
	}
	for name, forge := range map[string]func(s *corev1.Secret){
		"another previous key": func(s *corev1.Secret) {
			s.Annotations[keymintv1alpha1.AnnotationPreviousKeyHash] = keys.Hash(other.Value)
		},
		"previous key removed": func(s *corev1.Secret) { delete(s.Annotations, keymintv1alpha1.AnnotationPreviousKeyHash) },
	} {
		forged := renewed.DeepCopy()
		forge(forged)
		if _, err := signer.Verify(forged, owner()); !errors.Is(err, ErrUntrusted) {
			t.Errorf("%s: Verify = %v, want ErrUntrusted", name, err)
		}
	}
	if renewed.Immutable == nil || !*renewed.Immutable {
		t.Errorf("the Secret of a key without spec.rotation is mutable")
	}
	rotating := owner()
	rotating.Spec.Rotation = &keymintv1alpha1.Rotation{}
	if s := Build(rotating, k, Issue{Revision: 1, IssuedAt: issued}); s.Immutable == nil || *s.Immutable {
		t.Errorf("the Secret of a key with spec.rotation is immutable: the kubelet would never refresh it")
	}
}
