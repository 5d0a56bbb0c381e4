package verify

import (
	"context"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/keys"
)

// hash is a key's SHA-256, as status.keyHash writes it in hex.
type hash [32]byte

// parseHash reads a status.keyHash: "sha256:" and 64 hex digits.
func parseHash(s string) (hash, bool) {
	var h hash
	raw, ok := strings.CutPrefix(s, keys.HashPrefix)
	if !ok || hex.DecodedLen(len(raw)) != len(h) {
		return h, false
	}
	_, err := hex.Decode(h[:], []byte(raw))
	return h, err == nil
}

// hashes maps the key hash of every APIKey's status to that APIKey, kept
// by the APIKey informer's events: one small entry a key (32 bytes and the
// name the cache already holds), where a field index of the cache would
// hold a set per hash.
type hashes struct {
	mu     sync.RWMutex
	byHash map[hash]types.NamespacedName
	// bySecret maps the key hash of every minted Secret to that Secret.
	bySecret map[hash]types.NamespacedName
	synced   toolscache.InformerSynced
}

// watchHashes keeps a hashes from the APIKey informer of c.
func watchHashes(ctx context.Context, c cache.Cache) (*hashes, error) {
	inf, err := c.GetInformer(ctx, &keymintv1alpha1.APIKey{})
	if err != nil {
		return nil, err
	}
	h := &hashes{byHash: map[hash]types.NamespacedName{}}
	reg, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { h.set(nil, obj) },
		UpdateFunc: func(old, obj any) {
			h.set(old, obj)
		},
		DeleteFunc: func(obj any) {
			if tomb, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			h.set(obj, nil)
		},
	})
	if err != nil {
		return nil, fmt.Errorf("watching APIKeys for the verifier: %w", err)
	}
	h.synced = reg.HasSynced
	return h, h.watchSecrets(ctx, c)
}

// watchSecrets keeps bySecret, the hash of the key each minted Secret
// holds, from the Secret informer: a renewal writes its successor into the
// Secret a moment before the APIKey's status names it, and a client that
// reads the Secret in that moment must not be refused.
func (h *hashes) watchSecrets(ctx context.Context, c cache.Cache) error {
	inf, err := c.GetInformer(ctx, &corev1.Secret{})
	if err != nil {
		return err
	}
	h.bySecret = map[hash]types.NamespacedName{}
	set := func(obj any, add bool) {
		if tomb, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
			obj = tomb.Obj
		}
		s, ok := obj.(*corev1.Secret)
		if !ok || s.Type != keymintv1alpha1.SecretType {
			return
		}
		sum, ok := parseHash(s.Annotations[keymintv1alpha1.AnnotationKeyHash])
		if !ok {
			return
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		if add {
			h.bySecret[sum] = types.NamespacedName{Namespace: s.Namespace, Name: s.Name}
		} else if h.bySecret[sum] == (types.NamespacedName{Namespace: s.Namespace, Name: s.Name}) {
			delete(h.bySecret, sum)
		}
	}
	_, err = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { set(obj, true) },
		UpdateFunc: func(old, obj any) {
			set(old, false)
			set(obj, true)
		},
		DeleteFunc: func(obj any) { set(obj, false) },
	})
	return err
}

// secretOf names the minted Secret that holds the key of hash s.
func (h *hashes) secretOf(s string) (types.NamespacedName, bool) { return h.lookup(s, true) }

// set replaces old's hashes by obj's: the current key's, and the
// previous key's while status.previousKey holds it.
func (h *hashes) set(old, obj any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if k, ok := old.(*keymintv1alpha1.APIKey); ok {
		name := types.NamespacedName{Namespace: k.Namespace, Name: k.Name}
		for _, s := range keyHashes(k) {
			if sum, ok := parseHash(s); ok && h.byHash[sum] == name {
				delete(h.byHash, sum)
			}
		}
	}
	if k, ok := obj.(*keymintv1alpha1.APIKey); ok {
		for _, s := range keyHashes(k) {
			if sum, ok := parseHash(s); ok {
				h.byHash[sum] = types.NamespacedName{Namespace: k.Namespace, Name: k.Name}
			}
		}
	}
}

// keyHashes are the hashes k's status names.
func keyHashes(k *keymintv1alpha1.APIKey) [2]string {
	out := [2]string{k.Status.KeyHash}
	if p := k.Status.PreviousKey; p != nil {
		out[1] = p.KeyHash
	}
	return out
}

// get names the APIKey whose status holds the hash s.
func (h *hashes) get(s string) (types.NamespacedName, bool) { return h.lookup(s, false) }

// lookup reads the hash s in bySecret (secrets) or byHash.
func (h *hashes) lookup(s string, secrets bool) (types.NamespacedName, bool) {
	sum, ok := parseHash(s)
	if !ok {
		return types.NamespacedName{}, false
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	m := h.byHash
	if secrets {
		m = h.bySecret
	}
	name, ok := m[sum]
	return name, ok
}
