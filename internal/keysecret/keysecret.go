// Package keysecret builds the Secret a key is minted into and reads one
// back. Its functions are pure: they neither call the API server nor read a
// clock.
package keysecret

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/keys"
)

const (
	// Type is the type of every minted Secret.
	Type corev1.SecretType = "keymint.io/api-key"

	// Data keys.
	DataKey       = "api-key"
	DataKeyID     = "key-id"
	DataUser      = "user"
	DataExpiresAt = "expires-at"

	// Never is the expires-at value of a key that never expires.
	Never = "never"

	// LabelManagedBy and ManagedBy mark every Secret keymint owns; the
	// manager caches only Secrets with this label.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedBy      = "keymint"
	// LabelAPIKey holds the name of the APIKey the Secret belongs to.
	LabelAPIKey = "keymint.io/apikey"
	// AnnotationIssuedAt records when the key was first issued, so that a
	// status lost before it was written can be rebuilt from the Secret.
	AnnotationIssuedAt = "keymint.io/issued-at"
	// AnnotationKeyHash is the key's hash (as in the APIKey's status), so
	// that a Secret read without its key still tells which key it holds.
	AnnotationKeyHash = "keymint.io/key-hash"
)

// Issue is what a Secret says about the key it holds: everything the
// APIKey's status shows, and no key material.
type Issue struct {
	KeyID     string
	KeyHash   string
	IssuedAt  time.Time
	ExpiresAt *time.Time
}

// Build returns the Secret that holds key for owner.
func Build(owner *keymintv1alpha1.APIKey, key keys.Key, issuedAt time.Time, expiresAt *time.Time) *corev1.Secret {
	expires := Never
	if expiresAt != nil {
		expires = expiresAt.UTC().Format(time.RFC3339)
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:      owner.SecretNameOrDefault(),
			Namespace: owner.Namespace,
			Labels: map[string]string{
				LabelManagedBy: ManagedBy,
				LabelAPIKey:    owner.Name,
			},
			Annotations: map[string]string{
				AnnotationIssuedAt: issuedAt.UTC().Format(time.RFC3339),
				AnnotationKeyHash:  keys.Hash(key.Value),
			},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion:         keymintv1alpha1.GroupVersion.String(),
				Kind:               "APIKey",
				Name:               owner.Name,
				UID:                owner.UID,
				Controller:         new(true),
				BlockOwnerDeletion: new(true),
			}},
		},
		Type:      Type,
		Immutable: new(true),
		Data: map[string][]byte{
			DataKey:       []byte(key.Value),
			DataKeyID:     []byte(key.ID),
			DataUser:      []byte(owner.Spec.User),
			DataExpiresAt: []byte(expires),
		},
	}
}

// OwnedBy reports whether secret was minted for owner: it has owner as its
// controller, by UID, so a Secret of an earlier APIKey of the same name is
// not taken for this one's.
func OwnedBy(secret *corev1.Secret, owner *keymintv1alpha1.APIKey) bool {
	ref := metav1.GetControllerOfNoCopy(secret)
	return ref != nil && ref.UID == owner.UID && secret.Type == Type
}

// WithoutKey drops the key from a managed Secret, leaving what Read needs:
// the manager caches its Secrets so, and holds no key in memory.
func WithoutKey(secret *corev1.Secret) {
	delete(secret.Data, DataKey)
}

// Read returns what secret says about its key. It fails on a Secret that
// is not a well-formed minted one; the error never holds key material. A
// Secret without its key (the manager's cache drops it, see WithoutKey) is
// read by its key-hash annotation.
func Read(secret *corev1.Secret) (Issue, error) {
	hash := secret.Annotations[AnnotationKeyHash]
	if value, ok := secret.Data[DataKey]; ok || hash == "" {
		if err := keys.Validate(string(value)); err != nil {
			return Issue{}, fmt.Errorf("secret %s/%s: data %q is not a keymint key", secret.Namespace, secret.Name, DataKey)
		}
		actual := keys.Hash(string(value))
		if hash != "" && hash != actual {
			return Issue{}, fmt.Errorf("secret %s/%s: data %q does not match annotation %s", secret.Namespace, secret.Name, DataKey, AnnotationKeyHash)
		}
		hash = actual
	}
	issuedAt, err := time.Parse(time.RFC3339, secret.Annotations[AnnotationIssuedAt])
	if err != nil {
		return Issue{}, fmt.Errorf("secret %s/%s: annotation %s: %w", secret.Namespace, secret.Name, AnnotationIssuedAt, err)
	}
	in := Issue{
		KeyID:    string(secret.Data[DataKeyID]),
		KeyHash:  hash,
		IssuedAt: issuedAt,
	}
	if raw := string(secret.Data[DataExpiresAt]); raw != Never {
		t, err := time.Parse(time.RFC3339, raw)
		if err != nil {
			return Issue{}, fmt.Errorf("secret %s/%s: data %s: %w", secret.Namespace, secret.Name, DataExpiresAt, err)
		}
		in.ExpiresAt = &t
	}
	return in, nil
}
