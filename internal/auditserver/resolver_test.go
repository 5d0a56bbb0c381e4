package auditserver

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	toolscache "k8s.io/client-go/tools/cache"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
)

func TestCacheResolverRemembersDeletionsAndFindsKeysByStatus(t *testing.T) {
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = keymintv1alpha1.AddToScheme(scheme)
	issued := &keymintv1alpha1.APIKey{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "ci", UID: "uid-ci"},
		Spec:       keymintv1alpha1.APIKeySpec{User: "alice", SecretName: "ci-secret"},
		Status:     keymintv1alpha1.APIKeyStatus{SecretName: "ci-secret", KeyID: "kid_ci"},
	}
	// A key whose Secret name is taken by someone else: never issued.
	blocked := &keymintv1alpha1.APIKey{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "blocked", UID: "uid-blocked"},
		Spec:       keymintv1alpha1.APIKeySpec{User: "bob", SecretName: "theirs"},
	}
	reader := fake.NewClientBuilder().WithScheme(scheme).WithObjects(issued, blocked).
		WithIndex(&keymintv1alpha1.APIKey{}, indexSecretName, func(obj client.Object) []string {
			if name := obj.(*keymintv1alpha1.APIKey).Status.SecretName; name != "" {
				return []string{name}
			}
			return nil
		}).Build()
	clk := clocktesting.NewFakeClock(time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC))
	r := &CacheResolver{reader: reader, clock: clk, tombstones: map[tombstoneKey]tombstone{}, pruned: clk.Now()}

	// Not cached, not deleted lately: the issued key's status names it.
	if ref, ok := r.Secret("team", "ci-secret"); !ok || ref.Name != "ci" || ref.KeyID != "kid_ci" {
		t.Fatalf("Secret(ci-secret) = %+v, %v", ref, ok)
	}
	// Someone else's Secret is no key's, whatever a spec says.
	if ref, ok := r.Secret("team", "theirs"); ok {
		t.Fatalf("Secret(theirs) = %+v, want none", ref)
	}

	// A deleted Secret names the key it held, until the tombstone expires.
	old := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "ci-secret",
			Labels:          map[string]string{keymintv1alpha1.LabelManagedBy: keymintv1alpha1.ManagedBy, keymintv1alpha1.LabelAPIKey: "ci"},
			OwnerReferences: []metav1.OwnerReference{{Kind: "APIKey", Name: "ci", UID: "uid-ci", Controller: new(true)}}},
		Type: keymintv1alpha1.SecretType,
		Data: map[string][]byte{keymintv1alpha1.DataKeyID: []byte("kid_old"), keymintv1alpha1.DataUser: []byte("alice")},
	}
	r.deleted(toolscache.DeletedFinalStateUnknown{Obj: old})
	if ref, ok := r.DeletedSecret("team", "ci-secret"); !ok || ref.KeyID != "kid_old" || ref.UID != "uid-ci" {
		t.Fatalf("DeletedSecret = %+v, %v; want the revoked key", ref, ok)
	}
	if got := r.Secrets("team"); len(got) != 1 || got[0].Deleted.IsZero() {
		t.Fatalf("Secrets = %+v, want the deleted one, marked deleted", got)
	}
	clk.Step(TombstoneTTL + time.Second)
	if ref, _ := r.DeletedSecret("team", "ci-secret"); ref.KeyID != "kid_ci" {
		t.Fatalf("after the TTL DeletedSecret = %+v, want the status's key", ref)
	}
	if got := r.Secrets("team"); len(got) != 0 {
		t.Fatalf("after the TTL Secrets = %+v, want none", got)
	}

	// A deleted APIKey stays resolvable, as not live.
	r.deleted(issued)
	if _, live, ok := r.APIKey("team", "gone"); ok || live {
		t.Fatal("an unknown APIKey resolved")
	}
	if err := reader.Delete(t.Context(), issued); err != nil {
		t.Fatal(err)
	}
	if ref, live, ok := r.APIKey("team", "ci"); !ok || live || ref.User != "alice" {
		t.Fatalf("APIKey(ci) = %+v, live %v, ok %v", ref, live, ok)
	}
}
