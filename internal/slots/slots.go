// Package slots names and orders the per-user key slots that enforce the
// cap on Active keys.
//
// A slot is a Lease with a deterministic name, one per (user, index). A key
// becomes Active only after it creates one of its user's slot Leases, and
// the API server lets exactly one create of a name succeed, so the cap holds
// however stale a cache is and however many reconciles run at once.
package slots

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// Labels and annotations on slot Leases.
const (
	// LabelUserHash selects a user's slots; a username may hold characters
	// a label value cannot, so the label holds a hash.
	LabelUserHash = "keymint.io/user-hash"
	// LabelHolderNamespace and LabelHolderName name the APIKey holding a slot.
	LabelHolderNamespace = "keymint.io/holder-namespace"
	LabelHolderName      = "keymint.io/holder-name"
	// AnnotationUser is the user in clear, for people; the manager's
	// cache drops it and goes by LabelUserHash.
	AnnotationUser = "keymint.io/user"
)

// UserHash is the first 160 bits of the SHA-256 of the user, in hex: short
// enough for a label value and a Lease name.
func UserHash(user string) string {
	sum := sha256.Sum256([]byte(user))
	return hex.EncodeToString(sum[:20])
}

// Name is the Lease name of a user's slot number index.
func Name(user string, index int) string {
	return fmt.Sprintf("apikey-slot-%s-%d", UserHash(user), index)
}

// Candidate is one of a user's keys as the queue sees it.
type Candidate struct {
	Key     types.NamespacedName
	Created time.Time
	// Renewal: an issued key whose renewal waits for a slot. It is served
	// before every key that waits for its first issue: it expires if it
	// waits too long.
	Renewal bool
}

// compare orders candidates renewals first, then oldest first, then by
// namespace and name, so that every reconcile agrees on the order.
func compare(a, b Candidate) int {
	if a.Renewal != b.Renewal {
		if a.Renewal {
			return -1
		}
		return 1
	}
	if c := a.Created.Compare(b.Created); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Key.Namespace, b.Key.Namespace); c != 0 {
		return c
	}
	return cmp.Compare(a.Key.Name, b.Key.Name)
}

// Eligible reports whether self may claim a slot: only the free oldest
// waiting keys may, so that a freed slot goes to the key that waited
// longest. waiting may or may not contain self. This is fairness only; the
// cap itself rests on the Leases.
func Eligible(self Candidate, waiting []Candidate, free int) bool {
	return free > 0 && len(Ahead(self, waiting)) < free
}

// Ahead returns the waiting keys that come before self, oldest first.
func Ahead(self Candidate, waiting []Candidate) []Candidate {
	var out []Candidate
	for _, c := range waiting {
		if c.Key != self.Key && compare(c, self) < 0 {
			out = append(out, c)
		}
	}
	slices.SortFunc(out, compare)
	return out
}

// Sorted returns the candidates oldest first.
func Sorted(cs []Candidate) []Candidate {
	out := slices.Clone(cs)
	slices.SortFunc(out, compare)
	return out
}
