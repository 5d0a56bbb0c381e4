// Package keysecret builds the Secret a key is minted into and reads one
// back. Its functions are pure: they neither call the API server nor read a
// clock.
package keysecret

import (
	"fmt"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/keys"
)

// Issue is what a Secret says about the key it holds: everything the
// APIKey's status shows, and no key material.
type Issue struct {
	KeyID     string
	KeyHash   string
	IssuedAt  time.Time
	ExpiresAt *time.Time
	// Revision is the issue's number (status.revision); 0 for a Secret
	// minted before revisions were kept.
	Revision int64
	// PreviousKeyHash is the hash of the key this one succeeded by a
	// renewal, which keeps working until its own expiry; empty for a key
	// that succeeded none (a first issue, a reissue, a rotation that
	// revoked the previous key at once).
	PreviousKeyHash string
}

// Build returns the Secret that holds key for owner, as in says (its
// revision, times and the key it succeeds; the key ID and hash are key's).
// The Secret of a key with spec.rotation is mutable, so that a renewal
// updates it in place and the kubelet refreshes the volumes that mount it;
// any other is immutable.
func Build(owner *keymintv1alpha1.APIKey, key keys.Key, in Issue) *corev1.Secret {
	expires := keymintv1alpha1.ExpiresNever
	if in.ExpiresAt != nil {
		expires = in.ExpiresAt.UTC().Format(time.RFC3339)
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:      owner.SecretNameOrDefault(),
			Namespace: owner.Namespace,
			Labels: map[string]string{
				keymintv1alpha1.LabelManagedBy: keymintv1alpha1.ManagedBy,
				keymintv1alpha1.LabelAPIKey:    owner.Name,
			},
			Annotations: map[string]string{
				keymintv1alpha1.AnnotationIssuedAt: in.IssuedAt.UTC().Format(time.RFC3339),
				keymintv1alpha1.AnnotationKeyHash:  keys.Hash(key.Value),
				keymintv1alpha1.AnnotationRevision: strconv.FormatInt(in.Revision, 10),
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
		Type:      keymintv1alpha1.SecretType,
		Immutable: new(owner.Spec.Rotation == nil),
		Data: map[string][]byte{
			keymintv1alpha1.DataKey:       []byte(key.Value),
			keymintv1alpha1.DataKeyID:     []byte(key.ID),
			keymintv1alpha1.DataUser:      []byte(owner.Spec.User),
			keymintv1alpha1.DataExpiresAt: []byte(expires),
		},
	}
	if in.PreviousKeyHash != "" {
		secret.Annotations[keymintv1alpha1.AnnotationPreviousKeyHash] = in.PreviousKeyHash
	}
	return secret
}

// Current reports whether in, read from a Secret keymint signed for owner,
// is an issue owner may hold now: the one its status last recorded while
// that key is live (Active), or the one after it, minted and not recorded
// yet. Any other is a copy of an issue the status has moved past (a key
// reissued, suspended or revoked), which must never come back.
func Current(owner *keymintv1alpha1.APIKey, in Issue) bool {
	st := &owner.Status
	switch in.Revision {
	case st.Revision + 1:
		return true
	case st.Revision:
		return st.Phase.Issued() && in.KeyHash == st.KeyHash
	}
	return false
}

// OwnedBy reports whether secret was minted for owner: it has owner as its
// controller, by UID, so a Secret of an earlier APIKey of the same name is
// not taken for this one's.
func OwnedBy(secret *corev1.Secret, owner *keymintv1alpha1.APIKey) bool {
	ref := metav1.GetControllerOfNoCopy(secret)
	return ref != nil && ref.UID == owner.UID && secret.Type == keymintv1alpha1.SecretType
}

// WithoutKey drops the key from a managed Secret, leaving what Read needs:
// the manager caches its Secrets so, and holds no key in memory.
func WithoutKey(secret *corev1.Secret) {
	delete(secret.Data, keymintv1alpha1.DataKey)
}

// Read returns what secret says about its key. It fails on a Secret that
// is not a well-formed minted one; the error never holds key material. A
// Secret without its key (the manager's cache drops it, see WithoutKey) is
// read by its key-hash annotation.
func Read(secret *corev1.Secret) (Issue, error) {
	hash := secret.Annotations[keymintv1alpha1.AnnotationKeyHash]
	if value, ok := secret.Data[keymintv1alpha1.DataKey]; ok || hash == "" {
		if err := keys.Validate(string(value)); err != nil {
			return Issue{}, fmt.Errorf("secret %s/%s: data %q is not a keymint key", secret.Namespace, secret.Name, keymintv1alpha1.DataKey)
		}
		actual := keys.Hash(string(value))
		if hash != "" && hash != actual {
			return Issue{}, fmt.Errorf("secret %s/%s: data %q does not match annotation %s", secret.Namespace, secret.Name, keymintv1alpha1.DataKey, keymintv1alpha1.AnnotationKeyHash)
		}
		hash = actual
	}
	issuedAt, err := time.Parse(time.RFC3339, secret.Annotations[keymintv1alpha1.AnnotationIssuedAt])
	if err != nil {
		return Issue{}, fmt.Errorf("secret %s/%s: annotation %s: %w", secret.Namespace, secret.Name, keymintv1alpha1.AnnotationIssuedAt, err)
	}
	in := Issue{
		KeyID:           string(secret.Data[keymintv1alpha1.DataKeyID]),
		KeyHash:         hash,
		IssuedAt:        issuedAt,
		PreviousKeyHash: secret.Annotations[keymintv1alpha1.AnnotationPreviousKeyHash],
	}
	if raw, ok := secret.Annotations[keymintv1alpha1.AnnotationRevision]; ok {
		if in.Revision, err = strconv.ParseInt(raw, 10, 64); err != nil || in.Revision < 1 {
			return Issue{}, fmt.Errorf("secret %s/%s: annotation %s is not a revision", secret.Namespace, secret.Name, keymintv1alpha1.AnnotationRevision)
		}
	}
	if raw := string(secret.Data[keymintv1alpha1.DataExpiresAt]); raw != keymintv1alpha1.ExpiresNever {
		t, err := time.Parse(time.RFC3339, raw)
		if err != nil {
			return Issue{}, fmt.Errorf("secret %s/%s: data %s: %w", secret.Namespace, secret.Name, keymintv1alpha1.DataExpiresAt, err)
		}
		in.ExpiresAt = &t
	}
	return in, nil
}
