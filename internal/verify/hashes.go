package verify

import (
	"context"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"

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
	synced toolscache.InformerSynced
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
	return h, nil
}

// set replaces old's hash by obj's.
func (h *hashes) set(old, obj any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if k, ok := old.(*keymintv1alpha1.APIKey); ok {
		if sum, ok := parseHash(k.Status.KeyHash); ok && h.byHash[sum] == (types.NamespacedName{Namespace: k.Namespace, Name: k.Name}) {
			delete(h.byHash, sum)
		}
	}
	if k, ok := obj.(*keymintv1alpha1.APIKey); ok {
		if sum, ok := parseHash(k.Status.KeyHash); ok {
			h.byHash[sum] = types.NamespacedName{Namespace: k.Namespace, Name: k.Name}
		}
	}
}

// get names the APIKey whose status holds the hash s.
func (h *hashes) get(s string) (types.NamespacedName, bool) {
	sum, ok := parseHash(s)
	if !ok {
		return types.NamespacedName{}, false
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	name, ok := h.byHash[sum]
	return name, ok
}
