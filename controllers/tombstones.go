package controllers

import (
	"sync"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
)

// maxTombstones bounds the APIKeys remembered between their deletion and
// the pass that records it; past it, that pass records what the key's
// Secret says.
const maxTombstones = 10_000

// tombstones remember the last state of APIKeys that went away, so that the
// pass over a key deleted without keymint's finalizer (by an administrator
// who removed it) can still record who the key was: the APIKey is gone by
// then. A pass that recorded the deletion forgets its tombstone.
type tombstones struct {
	mu   sync.Mutex
	keys map[types.NamespacedName][]*keymintv1alpha1.APIKey
	// finalized are the APIKeys whose deletion finalize recorded, whose
	// tombstones are not needed.
	finalized map[types.UID]struct{}
}

// recorded notes that the deletion of the APIKey uid is on record.
func (t *tombstones) recorded(uid types.UID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.finalized == nil || len(t.finalized) >= maxTombstones {
		t.finalized = map[types.UID]struct{}{}
	}
	t.finalized[uid] = struct{}{}
}

// wasRecorded reports whether the deletion of the APIKey uid is on record,
// as far as this manager knows.
func (t *tombstones) wasRecorded(uid types.UID) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.finalized[uid]
	return ok
}

func (t *tombstones) remember(key *keymintv1alpha1.APIKey) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.finalized[key.UID]; ok {
		delete(t.finalized, key.UID)
		return
	}
	if t.keys == nil {
		t.keys = map[types.NamespacedName][]*keymintv1alpha1.APIKey{}
	}
	name := client.ObjectKeyFromObject(key)
	if len(t.keys) >= maxTombstones && t.keys[name] == nil {
		return
	}
	t.keys[name] = append(t.keys[name], key)
}

// of returns the tombstones of the APIKeys once named name.
func (t *tombstones) of(name types.NamespacedName) []*keymintv1alpha1.APIKey {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]*keymintv1alpha1.APIKey(nil), t.keys[name]...)
}

// forget drops the tombstone of the APIKey uid once named name.
func (t *tombstones) forget(name types.NamespacedName, uid types.UID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var kept []*keymintv1alpha1.APIKey
	for _, k := range t.keys[name] {
		if k.UID != uid {
			kept = append(kept, k)
		}
	}
	if len(kept) == 0 {
		delete(t.keys, name)
		return
	}
	t.keys[name] = kept
}
