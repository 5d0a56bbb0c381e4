package slots

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
)

// ErrCacheStale says the cache is behind the API server: a decision that
// takes a slot or mints a key waits for it to catch up.
var ErrCacheStale = errors.New("the cache is behind the API server")

// Cap claims, releases and reclaims the slot Leases of users' keys. It is
// the one place that writes slots. Only a successful create of a slot Lease
// takes a slot, so the cap holds however stale the cache; the cache only
// decides whose turn it is. Every release lists from the API server: a
// slot taken a moment ago may not be in the cache yet, and must not stay
// behind.
type Cap struct {
	// Cache serves the reads that only order the queue.
	Cache client.Reader
	// Live is the API server, for the reads a write depends on.
	Live client.Reader
	// Writer creates and deletes slot Leases.
	Writer client.Writer
	// Namespace holds the slot Leases.
	Namespace string
	// Max is the number of slots of each user.
	Max int
}

// Taken lists user's slots from the cache. The label selector scans the
// slot namespace's cached Leases; an index would cost memory for every
// slot, and the scan costs well under a millisecond for 20,000.
func (c *Cap) Taken(ctx context.Context, user string) ([]coordinationv1.Lease, error) {
	return c.list(ctx, c.Cache, client.MatchingLabels{LabelUserHash: UserHash(user)})
}

func (c *Cap) list(ctx context.Context, r client.Reader, labels client.MatchingLabels) ([]coordinationv1.Lease, error) {
	list := &coordinationv1.LeaseList{}
	err := r.List(ctx, list, client.InNamespace(c.Namespace), labels)
	return list.Items, err
}

// Claim is what Claim found on the API server.
type Claim struct {
	// Held: the key holds a slot.
	Held bool
	// Holders names the keys holding the user's slots when key holds none.
	Holders []string
}

// Claim makes key the holder of one of its user's free slots, from the
// API server's list: a slot this key claimed a moment ago, not yet in the
// cache, is found and kept, so that the key never holds two.
func (c *Cap) Claim(ctx context.Context, key *keymintv1alpha1.APIKey, now time.Time) (Claim, error) {
	return c.ClaimUpTo(ctx, key, now, 1)
}

// ClaimUpTo makes key the holder of want of its user's slots, claiming
// those it lacks: two while a renewed key's previous key still works. Slots
// the key claimed in a pass that did not finish count, so a retry never
// takes more than want.
func (c *Cap) ClaimUpTo(ctx context.Context, key *keymintv1alpha1.APIKey, now time.Time, want int) (Claim, error) {
	taken, err := c.list(ctx, c.Live, client.MatchingLabels{LabelUserHash: UserHash(key.Spec.User)})
	if err != nil {
		return Claim{}, err
	}
	held := HeldCount(taken, key)
	if held >= want {
		return Claim{Held: true}, nil
	}
	if len(taken) >= c.Max {
		return Claim{Holders: HolderNames(taken)}, nil
	}
	for i := range c.Max {
		name := Name(key.Spec.User, i)
		if slices.ContainsFunc(taken, func(l coordinationv1.Lease) bool { return l.Name == name }) {
			continue
		}
		err := c.Writer.Create(ctx, c.lease(key, name, now))
		if err == nil {
			if held++; held >= want {
				return Claim{Held: true}, nil
			}
			continue
		}
		if !apierrors.IsAlreadyExists(err) {
			return Claim{}, fmt.Errorf("claiming slot %s: %w", name, err)
		}
		// Taken since the list, by another reconcile; perhaps of this
		// key, one that stopped before it wrote status.
		existing := &coordinationv1.Lease{}
		if err := c.Live.Get(ctx, types.NamespacedName{Namespace: c.Namespace, Name: name}, existing); err != nil {
			if apierrors.IsNotFound(err) {
				return Claim{}, ErrCacheStale
			}
			return Claim{}, err
		}
		if Holds(existing, key) {
			if held++; held >= want {
				return Claim{Held: true}, nil
			}
		}
		taken = append(taken, *existing)
	}
	return Claim{Holders: HolderNames(taken)}, nil
}

// lease is the Lease that makes key the holder of slot name.
func (c *Cap) lease(key *keymintv1alpha1.APIKey, name string, now time.Time) *coordinationv1.Lease {
	acquired := metav1.NewMicroTime(now)
	return &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{
			Name:      name,
			Namespace: c.Namespace,
			Labels: map[string]string{
				keymintv1alpha1.LabelManagedBy: keymintv1alpha1.ManagedBy,
				LabelUserHash:                  UserHash(key.Spec.User),
				LabelHolderNamespace:           key.Namespace,
				LabelHolderName:                key.Name,
			},
			Annotations: map[string]string{AnnotationUser: key.Spec.User},
		},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity: new(string(key.UID)),
			AcquireTime:    &acquired,
		},
	}
}

// Release frees every slot key holds.
func (c *Cap) Release(ctx context.Context, key *keymintv1alpha1.APIKey) error {
	return c.ReleaseOf(ctx, client.ObjectKeyFromObject(key), func(l *coordinationv1.Lease) bool { return Holds(l, key) })
}

// ReleaseSurplus frees the slots key holds beyond keep, from the API
// server's list: the slot of a previous key that is retired, or one a
// renewal claimed before it stopped. The first keep, by name, stay.
func (c *Cap) ReleaseSurplus(ctx context.Context, key *keymintv1alpha1.APIKey, keep int) error {
	kept := 0
	return c.ReleaseOf(ctx, client.ObjectKeyFromObject(key), func(l *coordinationv1.Lease) bool {
		if !Holds(l, key) {
			return false
		}
		kept++
		return kept > keep
	})
}

// ReleaseOf frees the slots labelled with the APIKey name for which
// release says so, such as those of an APIKey of that name that is gone.
func (c *Cap) ReleaseOf(ctx context.Context, name types.NamespacedName, release func(*coordinationv1.Lease) bool) error {
	leases, err := c.list(ctx, c.Live, client.MatchingLabels{
		LabelHolderNamespace: name.Namespace,
		LabelHolderName:      name.Name,
	})
	if err != nil {
		return err
	}
	slices.SortFunc(leases, func(a, b coordinationv1.Lease) int { return strings.Compare(a.Name, b.Name) })
	for i := range leases {
		if release(&leases[i]) {
			if err := c.delete(ctx, &leases[i]); err != nil {
				return err
			}
		}
	}
	return nil
}

// Reclaim frees slots whose holder is gone (see Stale).
func (c *Cap) Reclaim(ctx context.Context, stale []coordinationv1.Lease) error {
	for i := range stale {
		log.FromContext(ctx).Info("freeing a slot whose APIKey is gone", "lease", stale[i].Name,
			"holder", HolderRef(&stale[i]).String(), "holderUID", ptr.Deref(stale[i].Spec.HolderIdentity, ""))
		if err := c.delete(ctx, &stale[i]); err != nil {
			return err
		}
	}
	return nil
}

// Stale returns the slots among taken whose holder no longer exists, such
// as one whose finalizer was removed by hand. The cache only vouches that a
// holder exists; its absence is confirmed with the API server.
func (c *Cap) Stale(ctx context.Context, taken []coordinationv1.Lease) ([]coordinationv1.Lease, error) {
	var stale []coordinationv1.Lease
	for i := range taken {
		lease := &taken[i]
		holder := &keymintv1alpha1.APIKey{}
		if err := c.Cache.Get(ctx, HolderRef(lease), holder); err == nil && Holds(lease, holder) {
			continue
		}
		err := c.Live.Get(ctx, HolderRef(lease), holder)
		if err == nil && Holds(lease, holder) {
			continue
		}
		if err != nil && !apierrors.IsNotFound(err) {
			return nil, err
		}
		stale = append(stale, *lease)
	}
	return stale, nil
}

// delete deletes lease, and only that Lease: the UID precondition keeps a
// slot claimed again since it was read.
func (c *Cap) delete(ctx context.Context, lease *coordinationv1.Lease) error {
	err := c.Writer.Delete(ctx, lease, client.Preconditions{UID: &lease.UID})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// Holds reports whether lease is held by key, by UID: an earlier APIKey of
// the same name does not count.
func Holds(lease *coordinationv1.Lease, key *keymintv1alpha1.APIKey) bool {
	return ptr.Deref(lease.Spec.HolderIdentity, "") == string(key.UID)
}

// HeldCount is how many of leases key holds: two while a renewed key's
// previous key still works.
func HeldCount(leases []coordinationv1.Lease, key *keymintv1alpha1.APIKey) int {
	n := 0
	for i := range leases {
		if Holds(&leases[i], key) {
			n++
		}
	}
	return n
}

// HeldBy reports whether one of leases is held by key.
func HeldBy(leases []coordinationv1.Lease, key *keymintv1alpha1.APIKey) bool {
	return slices.ContainsFunc(leases, func(l coordinationv1.Lease) bool { return Holds(&l, key) })
}

// HolderRef names the APIKey a slot's labels say holds it.
func HolderRef(lease *coordinationv1.Lease) types.NamespacedName {
	return types.NamespacedName{Namespace: lease.Labels[LabelHolderNamespace], Name: lease.Labels[LabelHolderName]}
}

// HolderNames names the holders of leases, sorted.
// A key that holds two slots (a renewed key and its previous key) is
// named once for each: "ns/k" and "ns/k (its previous key)".
func HolderNames(leases []coordinationv1.Lease) []string {
	names := make([]string, 0, len(leases))
	for i := range leases {
		names = append(names, HolderRef(&leases[i]).String())
	}
	slices.Sort(names)
	for i := 1; i < len(names); i++ {
		if names[i] == names[i-1] {
			names[i] += " (its previous key)"
		}
	}
	return names
}
