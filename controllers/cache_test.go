package controllers_test

import (
	"context"
	"fmt"
	goruntime "runtime"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/controllers"
	"github.com/keymint/keymint/internal/slots"
	"github.com/keymint/keymint/internal/testenv"
)

// TestCacheHoldsOnlyWhatKeymintOwns starts a cache with the manager's
// options against the API server: unrelated Secrets and Leases never enter
// it, and what does enter it has no managedFields.
func TestCacheHoldsOnlyWhatKeymintOwns(t *testing.T) {
	testenv.RequireControlPlane(t)
	g := NewWithT(t)
	ns := newNamespace(t)
	owned := map[string]string{keymintv1alpha1.LabelManagedBy: keymintv1alpha1.ManagedBy}
	mine := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "mine", Labels: owned,
			Annotations: map[string]string{corev1.LastAppliedConfigAnnotation: `{"kind":"Secret"}`, "kept": "yes"}},
		Data: map[string][]byte{keymintv1alpha1.DataKey: []byte("kmk_value"), keymintv1alpha1.DataKeyID: []byte("kid_1")},
	}
	unrelated := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "unrelated"}}
	elsewhere := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "elsewhere", Labels: owned}}
	slot := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: slotNamespace, Name: "cache-test-" + ns, Labels: owned,
		Annotations: map[string]string{slots.AnnotationUser: "alice"}}}
	for _, obj := range []client.Object{mine, unrelated, elsewhere, slot} {
		g.Expect(k8sClient.Create(ctx, obj)).To(Succeed())
	}

	opts := controllers.CacheOptions(slotNamespace)
	opts.Scheme = testScheme
	c, err := cache.New(restConfig, opts)
	g.Expect(err).NotTo(HaveOccurred())
	cctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	go func() { _ = c.Start(cctx) }()
	g.Expect(c.WaitForCacheSync(cctx)).To(BeTrue())

	g.Eventually(func(g Gomega) {
		got := &corev1.Secret{}
		g.Expect(c.Get(ctx, client.ObjectKeyFromObject(mine), got)).To(Succeed())
		g.Expect(got.ManagedFields).To(BeEmpty())
		g.Expect(got.Data).NotTo(HaveKey(keymintv1alpha1.DataKey), "no key in the manager's memory")
		g.Expect(got.Data).To(HaveKeyWithValue(keymintv1alpha1.DataKeyID, []byte("kid_1")))
		g.Expect(got.Annotations).To(Equal(map[string]string{"kept": "yes"}), "no last-applied copy")
	}).Should(Succeed())
	err = c.Get(ctx, client.ObjectKeyFromObject(unrelated), &corev1.Secret{})
	g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "an unlabelled Secret is not cached: %v", err)
	secrets := &corev1.SecretList{}
	g.Expect(c.List(ctx, secrets, client.InNamespace(ns))).To(Succeed())
	g.Expect(secrets.Items).To(HaveLen(1))
	g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(unrelated), &corev1.Secret{})).To(Succeed(), "it exists on the API server")

	// Leases are cached only in the slot namespace, by their labels.
	cachedSlot := &coordinationv1.Lease{}
	g.Expect(c.Get(ctx, client.ObjectKeyFromObject(slot), cachedSlot)).To(Succeed())
	g.Expect(cachedSlot.Labels).To(Equal(owned))
	g.Expect(cachedSlot.Annotations).To(BeNil(), "the user annotation is for people, not for the cache")
	g.Expect(k8sClient.Delete(ctx, slot)).To(Succeed())
	err = c.Get(ctx, client.ObjectKeyFromObject(elsewhere), &coordinationv1.Lease{})
	g.Expect(err).To(HaveOccurred(), "a Lease outside the slot namespace is not cached")
}

// TestStripCopiesKeepsWhatItShares: sharing the metadata strings changes no
// value; only the copies (managedFields, last-applied) go.
func TestStripCopiesKeepsWhatItShares(t *testing.T) {
	g := NewWithT(t)
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:       "team-a",
			Name:            "ci",
			Labels:          map[string]string{keymintv1alpha1.LabelManagedBy: keymintv1alpha1.ManagedBy, keymintv1alpha1.LabelAPIKey: "ci"},
			Annotations:     map[string]string{corev1.LastAppliedConfigAnnotation: "{}", keymintv1alpha1.AnnotationIssuedAt: "2026-01-31T10:00:00Z"},
			Finalizers:      []string{"example.com/hold"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "keymint.io/v1alpha1", Kind: "APIKey", Name: "ci", UID: "uid-1"}},
			ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
		},
	}
	want := secret.DeepCopy()
	want.ManagedFields = nil
	delete(want.Annotations, corev1.LastAppliedConfigAnnotation)

	got, err := controllers.StripCopies(secret)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got).To(Equal(want))

	onlyLastApplied := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{corev1.LastAppliedConfigAnnotation: "{}"}}}
	got, err = controllers.StripCopies(onlyLastApplied)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got.(*corev1.Secret).Annotations).To(BeNil(), "an emptied map is dropped, not kept")
}

// TestInternForgetsWhatUsersWrote: metadata keys a user chose, however
// many, are not kept once the objects that held them are gone.
func TestInternForgetsWhatUsersWrote(t *testing.T) {
	liveHeap := func() uint64 {
		var m goruntime.MemStats
		for range 3 {
			goruntime.GC()
		}
		goruntime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	baseline := liveHeap()
	var held []any
	for i := range 20 {
		key := &keymintv1alpha1.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: fmt.Sprint("k", i), Annotations: map[string]string{}}}
		for j := range 2000 {
			key.Annotations[fmt.Sprintf("example.com/%d-%d-%s", i, j, strings.Repeat("x", 64))] = "v"
		}
		obj, err := controllers.StripCopies(key)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, obj)
	}
	holding := liveHeap()
	goruntime.KeepAlive(held)
	clear(held) // the objects, no longer referenced, can go
	after := liveHeap()
	t.Logf("live heap: %d KiB before, %d KiB holding the objects, %d KiB after", baseline>>10, holding>>10, after>>10)
	if holding < baseline+2<<20 {
		t.Fatalf("the objects held %d KiB only: the test measures nothing", (holding-baseline)>>10)
	}
	if after > baseline+1<<20 {
		t.Fatalf("%d KiB more live heap after the objects are gone", (after-baseline)>>10)
	}
}
