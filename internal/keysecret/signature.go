package keysecret

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"hash"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
)

// AnnotationSignature holds the manager's HMAC over what a minted Secret
// says (see Signer). Labels, type, ownerReferences and annotations can be
// written by anyone who may create Secrets; only the signature proves that
// keymint minted the Secret for this very APIKey.
const AnnotationSignature = "keymint.io/signature"

// SigningKeySize is the size of the HMAC key, in bytes.
const SigningKeySize = 32

// ErrUntrusted is the error of a Secret that claims an APIKey but was not
// minted by keymint for it.
var ErrUntrusted = errors.New("not signed by keymint for this APIKey")

// Signer signs and checks minted Secrets with a key only the manager reads.
type Signer struct {
	key []byte
	// macs are HMACs keyed with key, reused: the verifier checks a
	// signature on every request, and keying an HMAC costs as much as
	// computing one.
	macs sync.Pool
}

// NewSigner returns a Signer with key, which must be SigningKeySize bytes.
func NewSigner(key []byte) (*Signer, error) {
	if len(key) != SigningKeySize {
		return nil, errors.New("the signing key must be 32 bytes")
	}
	s := &Signer{key: key}
	s.macs.New = func() any { return hmac.New(sha256.New, s.key) }
	return s, nil
}

// Sign sets the signature of secret, minted for owner.
func (s *Signer) Sign(secret *corev1.Secret, owner *keymintv1alpha1.APIKey) error {
	in, err := Read(secret)
	if err != nil {
		return err
	}
	if secret.Annotations == nil {
		secret.Annotations = map[string]string{}
	}
	secret.Annotations[AnnotationSignature] = s.signature(secret, owner, in)
	return nil
}

// Verify returns what secret says about its key if keymint minted it for
// owner, and ErrUntrusted if not. It needs no key material: the hash in the
// annotation is signed, and Read checks the key against it when present.
func (s *Signer) Verify(secret *corev1.Secret, owner *keymintv1alpha1.APIKey) (Issue, error) {
	in, err := Read(secret)
	if err != nil {
		return Issue{}, errors.Join(ErrUntrusted, err)
	}
	got, err := base64.RawURLEncoding.DecodeString(secret.Annotations[AnnotationSignature])
	if err != nil || !hmac.Equal(got, s.mac(secret, owner, in)) {
		return Issue{}, ErrUntrusted
	}
	return in, nil
}

func (s *Signer) signature(secret *corev1.Secret, owner *keymintv1alpha1.APIKey, in Issue) string {
	return base64.RawURLEncoding.EncodeToString(s.mac(secret, owner, in))
}

// mac covers the APIKey's UID, where the Secret is, and everything the
// status takes from it, the revision and the previous key included. The fields are JSON-encoded,
// so no choice of names can make two different Secrets sign alike. A
// Secret minted before revisions (0) is signed without one, and Current
// adopts it only as the very key its status records.
func (s *Signer) mac(secret *corev1.Secret, owner *keymintv1alpha1.APIKey, in Issue) []byte {
	expires := keymintv1alpha1.ExpiresNever
	if in.ExpiresAt != nil {
		expires = in.ExpiresAt.UTC().Format(time.RFC3339)
	}
	list := []string{
		"keymint.io/v1", string(owner.UID), secret.Namespace, secret.Name, string(secret.Type),
		in.KeyHash, in.KeyID, string(secret.Data[keymintv1alpha1.DataUser]), in.IssuedAt.UTC().Format(time.RFC3339), expires,
	}
	if in.Revision > 0 {
		list[0] = "keymint.io/v2"
		list = append(list, strconv.FormatInt(in.Revision, 10))
	}
	if in.PreviousKeyHash != "" {
		// The previous key works while this Secret says so: signed, so
		// that no one can name another key as this one's predecessor.
		list[0] = "keymint.io/v3"
		list = append(list, in.PreviousKeyHash)
	}
	fields, _ := json.Marshal(list)
	h := s.macs.Get().(hash.Hash)
	defer s.macs.Put(h)
	h.Reset()
	h.Write(fields)
	return h.Sum(nil)
}
