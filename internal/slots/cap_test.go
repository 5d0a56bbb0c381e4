package slots

import (
	"context"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
)

const ns = "keymint-system"

var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func apikey(name, uid string) *keymintv1alpha1.APIKey {
	return &keymintv1alpha1.APIKey{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: name, UID: types.UID(uid)},
		Spec:       keymintv1alpha1.APIKeySpec{User: "alice"},
	}
}

func newCap(t *testing.T, funcs interceptor.Funcs, objs ...client.Object) (*Cap, client.Client) {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := keymintv1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	base := fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).Build()
	c := interceptor.NewClient(base, funcs)
	return &Cap{Cache: c, Live: c, Writer: c, Namespace: ns, Max: 2}, base
}

// newRacingCap is a Cap whose first slot create finds the slot just taken
// by holder, as a concurrent reconcile would take it after the list.
func newRacingCap(t *testing.T, holder *keymintv1alpha1.APIKey) (*Cap, client.Client) {
	var sc *Cap
	raced := false
	sc, base := newCap(t, interceptor.Funcs{Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
		if !raced {
			raced = true
			if err := c.Create(ctx, sc.lease(holder, obj.GetName(), now)); err != nil {
				t.Fatal(err)
			}
		}
		return c.Create(ctx, obj, opts...)
	}})
	return sc, base
}

func heldBy(t *testing.T, c client.Client, key *keymintv1alpha1.APIKey) int {
	t.Helper()
	list := &coordinationv1.LeaseList{}
	if err := c.List(context.Background(), list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	n := 0
	for i := range list.Items {
		if Holds(&list.Items[i], key) {
			n++
		}
	}
	return n
}

// TestClaimFindsItsOwnSlotBehindAlreadyExists: a slot this key took in a
// reconcile that stopped before it wrote status, created after the list,
// is found through the AlreadyExists and kept: the key never holds two.
func TestClaimFindsItsOwnSlotBehindAlreadyExists(t *testing.T) {
	key := apikey("k", "uid-k")
	sc, base := newRacingCap(t, key)
	got, err := sc.Claim(context.Background(), key, now)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Held || heldBy(t, base, key) != 1 {
		t.Fatalf("claim %+v, %d slots held; want held, 1", got, heldBy(t, base, key))
	}
}

// TestClaimTakesTheNextSlotBehindSomeoneElses: a slot another key took
// after the list is passed over for the next free one.
func TestClaimTakesTheNextSlotBehindSomeoneElses(t *testing.T) {
	key, other := apikey("k", "uid-k"), apikey("o", "uid-o")
	sc, base := newRacingCap(t, other)
	got, err := sc.Claim(context.Background(), key, now)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Held || heldBy(t, base, key) != 1 || heldBy(t, base, other) != 1 {
		t.Fatalf("claim %+v; want the key and the other each holding one slot", got)
	}
	// The user's slots are full now: a third key is told who holds them.
	third, err := sc.Claim(context.Background(), apikey("t", "uid-t"), now)
	if err != nil {
		t.Fatal(err)
	}
	if third.Held || len(third.Holders) != 2 || third.Holders[0] != "team/k" || third.Holders[1] != "team/o" {
		t.Fatalf("third claim %+v; want held by team/k and team/o", third)
	}
}

// TestStaleAndReclaim: a slot is stale only when the API server confirms
// its holder is gone or is another APIKey of that name; a holder missing
// from the cache alone keeps it. Reclaim deletes that very Lease.
func TestStaleAndReclaim(t *testing.T) {
	alive, gone, renamed := apikey("alive", "uid-alive"), apikey("gone", "uid-gone"), apikey("renamed", "uid-old")
	var sc *Cap
	sc, base := newCap(t, interceptor.Funcs{}, alive, &keymintv1alpha1.APIKey{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "renamed", UID: "uid-new"},
	})
	leases := []coordinationv1.Lease{}
	for i, k := range []*keymintv1alpha1.APIKey{alive, gone, renamed} {
		l := sc.lease(k, Name("alice", i), now)
		if err := base.Create(context.Background(), l); err != nil {
			t.Fatal(err)
		}
		leases = append(leases, *l)
	}
	// The cache has not seen the live holder yet.
	sc.Cache = interceptor.NewClient(base.(client.WithWatch), interceptor.Funcs{Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
		if _, ok := obj.(*keymintv1alpha1.APIKey); ok {
			return c.Get(ctx, types.NamespacedName{Namespace: "nowhere", Name: key.Name}, obj, opts...)
		}
		return c.Get(ctx, key, obj, opts...)
	}})
	stale, err := sc.Stale(context.Background(), leases)
	if err != nil {
		t.Fatal(err)
	}
	if len(stale) != 2 || stale[0].Name != leases[1].Name || stale[1].Name != leases[2].Name {
		t.Fatalf("stale = %v; want the slots of the gone and the renamed holders", HolderNames(stale))
	}
	if err := sc.Reclaim(context.Background(), stale); err != nil {
		t.Fatal(err)
	}
	if heldBy(t, base, alive) != 1 || heldBy(t, base, gone) != 0 || heldBy(t, base, renamed) != 0 {
		t.Fatal("reclaim freed the wrong slots")
	}
}

// TestReleaseListsTheAPIServer: a slot the cache has not seen is freed too.
func TestReleaseListsTheAPIServer(t *testing.T) {
	key := apikey("k", "uid-k")
	sc, base := newCap(t, interceptor.Funcs{})
	if err := base.Create(context.Background(), sc.lease(key, Name("alice", 0), now)); err != nil {
		t.Fatal(err)
	}
	sc.Cache = fake.NewClientBuilder().Build() // sees nothing
	if err := sc.Release(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	if n := heldBy(t, base, key); n != 0 {
		t.Fatalf("%d slots still held after Release", n)
	}
}

// TestARenewalHoldsTwoSlotsAndReleasesTheSurplus: ClaimUpTo takes a second
// slot for a renewed key's previous key, once however often it is retried,
// and never past the cap; ReleaseSurplus gives back all but keep.
func TestARenewalHoldsTwoSlotsAndReleasesTheSurplus(t *testing.T) {
	ctx := context.Background()
	key, other := apikey("k", "uid-k"), apikey("o", "uid-o")
	sc, base := newCap(t, interceptor.Funcs{})
	for range 2 {
		if c, err := sc.ClaimUpTo(ctx, key, now, 2); err != nil || !c.Held {
			t.Fatalf("ClaimUpTo 2 = %+v, %v", c, err)
		}
	}
	if n := heldBy(t, base, key); n != 2 {
		t.Fatalf("the key holds %d slots after two claims of two, want 2", n)
	}
	if c, err := sc.Claim(ctx, other, now); err != nil || c.Held {
		t.Fatalf("another key of the user took a slot while a renewal holds both: %+v, %v", c, err)
	}
	if err := sc.ReleaseSurplus(ctx, key, 1); err != nil {
		t.Fatal(err)
	}
	if n := heldBy(t, base, key); n != 1 {
		t.Fatalf("the key holds %d slots after ReleaseSurplus(1), want 1", n)
	}
	if c, err := sc.Claim(ctx, other, now); err != nil || !c.Held {
		t.Fatalf("the freed slot was not free: %+v, %v", c, err)
	}
	if c, err := sc.ClaimUpTo(ctx, key, now, 2); err != nil || c.Held {
		t.Fatalf("a renewal took a slot past the cap: %+v, %v", c, err)
	}
}
