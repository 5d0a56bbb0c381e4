package verify

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/keys"
	"github.com/keymint/keymint/internal/keysecret"
)

// BenchmarkHandler is one forward-auth check of a valid key, against a
// handler that answers 200: what the verifier adds per request.
func BenchmarkHandler(b *testing.B) {
	signer, _ := keysecret.NewSigner(bytes.Repeat([]byte{1}, keysecret.SigningKeySize))
	key := &keymintv1alpha1.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "k", UID: "uid"},
		Spec: keymintv1alpha1.APIKeySpec{User: "alice", Expiration: keymintv1alpha1.Expiration{Never: new(true)}}}
	minted, _ := keys.Mint()
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	secret := keysecret.Build(key, minted, keysecret.Issue{Revision: 1, IssuedAt: now})
	_ = signer.Sign(secret, key)
	in, _ := keysecret.Read(secret)
	key.Status = keymintv1alpha1.APIKeyStatus{Phase: keymintv1alpha1.PhaseActive, KeyID: in.KeyID, KeyHash: in.KeyHash, SecretName: secret.Name}
	keysecret.WithoutKey(secret)
	c := objectsReader{key: key, secret: secret}
	h := &hashes{byHash: map[hash]types.NamespacedName{}}
	h.set(nil, key)
	v := &Verifier{Cache: c, hashes: h, Signer: signer, Clock: clocktesting.NewFakePassiveClock(now)}
	for name, handler := range map[string]http.Handler{
		"floor":   http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }),
		"keymint": v.Handler(),
	} {
		b.Run(name, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, "/verify/ns/ns", nil)
			req.Header.Set("Authorization", "Bearer "+minted.Value)
			for b.Loop() {
				w := httptest.NewRecorder()
				handler.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatalf("status %d: %s", w.Code, w.Body)
				}
			}
		})
	}
}

// objectsReader serves two objects as the manager's cache does with
// UnsafeDisableDeepCopy: the stored object itself, no copy, no encoding.
type objectsReader struct {
	client.Reader
	key    *keymintv1alpha1.APIKey
	secret *corev1.Secret
}

func (r objectsReader) Get(_ context.Context, _ client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	switch o := obj.(type) {
	case *keymintv1alpha1.APIKey:
		*o = *r.key
	case *corev1.Secret:
		*o = *r.secret
	}
	return nil
}
