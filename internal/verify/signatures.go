package verify

import (
	"sync"

	"k8s.io/apimachinery/pkg/types"
)

// maxCheckedSignatures bounds the memo of checked signatures, whatever the
// number of keys: past it, the memo starts again.
const maxCheckedSignatures = 16384

// checkedSignatures remembers the minted Secrets whose signature the
// verifier checked: minted Secrets are immutable, so a version once found
// signed for a key stays so, and the HMAC need not be computed on every
// request.
type checkedSignatures struct {
	mu sync.RWMutex
	ok map[signedVersion]struct{}
}

// signedVersion is one version of a Secret, for one APIKey and key hash.
type signedVersion struct {
	secret          types.UID
	resourceVersion string
	owner           types.UID
	keyHash         string
}

func (c *checkedSignatures) has(v signedVersion) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	_, ok := c.ok[v]
	return ok
}

func (c *checkedSignatures) add(v signedVersion) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ok == nil || len(c.ok) >= maxCheckedSignatures {
		c.ok = make(map[signedVersion]struct{}, 64)
	}
	c.ok[v] = struct{}{}
}
