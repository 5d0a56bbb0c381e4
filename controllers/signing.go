package controllers

import (
	"context"
	"crypto/rand"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keymint/keymint/internal/keysecret"
)

// SigningKeySecret is the Secret, in the slot namespace, that holds the key
// the manager signs minted Secrets with. It carries no managed-by label, so
// the manager does not cache it, and only those who may read Secrets in the
// manager's namespace can read it.
const SigningKeySecret = "keymint-signing-key"

// signingKeyData is the data key of the signing key.
const signingKeyData = "hmac-sha256"

// LoadSigner reads the signing key, creating it at the first start. Its
// Secret is immutable; replicas that race to create it all read the one
// that was created.
func LoadSigner(ctx context.Context, reader client.Reader, writer client.Writer, namespace string) (*keysecret.Signer, error) {
	ref := types.NamespacedName{Namespace: namespace, Name: SigningKeySecret}
	secret := &corev1.Secret{}
	err := reader.Get(ctx, ref, secret)
	if apierrors.IsNotFound(err) {
		secret, err = createSigningKey(ctx, reader, writer, ref)
	}
	if err != nil {
		return nil, fmt.Errorf("loading the signing key Secret %s: %w", ref, err)
	}
	signer, err := keysecret.NewSigner(secret.Data[signingKeyData])
	if err != nil {
		return nil, fmt.Errorf("the signing key Secret %s: %w; delete it to have a new one made (every key is then reissued)", ref, err)
	}
	return signer, nil
}

func createSigningKey(ctx context.Context, reader client.Reader, writer client.Writer, ref types.NamespacedName) (*corev1.Secret, error) {
	key := make([]byte, keysecret.SigningKeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ref.Namespace, Name: ref.Name},
		Type:       corev1.SecretTypeOpaque,
		Immutable:  new(true),
		Data:       map[string][]byte{signingKeyData: key},
	}
	err := writer.Create(ctx, secret)
	if apierrors.IsAlreadyExists(err) {
		secret = &corev1.Secret{}
		err = reader.Get(ctx, ref, secret)
	}
	return secret, err
}
