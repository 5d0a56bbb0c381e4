// Package verify answers a gateway's question "is this key good, and whose
// is it?" from the manager's cache: over HTTP (forward auth: nginx
// auth_request, ingress-nginx auth-url, Traefik ForwardAuth, Envoy's HTTP
// ext_authz) and over gRPC (Envoy's ext_authz Authorization/Check). It
// holds hashes only: a presented key is hashed and looked up by
// status.keyHash, and neither the key nor its hash is ever logged.
package verify

import (
	"slices"
	"time"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/keysecret"
)

// Reason says why a key was refused; it is the JSON body's "reason".
type Reason string

// The reasons, part of the verifier's contract.
const (
	ReasonMissing   Reason = "missing"
	ReasonMalformed Reason = "malformed"
	ReasonUnknown   Reason = "unknown"
	ReasonExpired   Reason = "expired"
	ReasonSuspended Reason = "suspended"
	// ReasonInactive: the key is switched off (spec.state Inactive), from
	// the moment the APIKey says so.
	ReasonInactive       Reason = "inactive"
	ReasonWrongNamespace Reason = "wrong_namespace"
	// ReasonNoScope: an ext_authz check named no namespaces (no
	// keymint-namespace context extension) where the verifier requires it
	// (--ext-authz-require-namespace); gRPC PERMISSION_DENIED, HTTP 403.
	ReasonNoScope Reason = "no_scope"
)

// ResultValid labels a valid key in keymint_verifications_total.
const ResultValid = "valid"

// Verdict is the answer about one presented key.
type Verdict struct {
	// Reason is empty for a valid key.
	Reason Reason
	// Key is the APIKey the key belongs to; nil when none was found. It is
	// the cache's copy: read it, never change it.
	Key *keymintv1alpha1.APIKey
	// Previous: the key presented is the APIKey's previous key (renewed,
	// and working until status.previousKey.expiresAt), not its current one.
	Previous bool
	// Next, when set, is the key presented: the successor a renewal wrote
	// into the Secret, which the APIKey's status does not name yet.
	Next *keysecret.Issue
}

// KeyID is the ID of the key presented: the previous key's, the
// successor's, or the current one's.
func (v Verdict) KeyID() string {
	switch {
	case v.Previous:
		return v.Key.Status.PreviousKey.KeyID
	case v.Next != nil:
		return v.Next.KeyID
	}
	return v.Key.Status.KeyID
}

// Valid reports whether the key may pass.
func (v Verdict) Valid() bool { return v.Reason == "" }

// Result is the metric label of the verdict.
func (v Verdict) Result() string {
	if v.Valid() {
		return ResultValid
	}
	return string(v.Reason)
}

// decide is the verdict on a well-formed key whose hash status.keyHash of
// key matches, or status.previousKey.keyHash when previous (key nil: no
// APIKey does), at now, for a gateway that accepts
// only the namespaces in scope (nil: any). inSecret says the key's Secret
// exists, signed by keymint, with this key. It reads nothing but its
// arguments.
//
// A key from outside the scope is refused as such before anything else
// about it is told. Expiry is the verifier's own clock against expiresAt:
// it does not wait for the controller to expire the key, nor to report a
// key switched off: spec.state decides at once.
//
// A previous key is refused from its own expiresAt, on the same clock.
func decide(now time.Time, scope []string, key *keymintv1alpha1.APIKey, previous, inSecret bool) Reason {
	switch {
	case key == nil:
		return ReasonUnknown
	case scope != nil && !slices.Contains(scope, key.Namespace):
		return ReasonWrongNamespace
	case !key.DeletionTimestamp.IsZero():
		return ReasonUnknown // revoked: its APIKey is being deleted
	case key.Status.Phase == keymintv1alpha1.PhaseExpired, key.DueAt(now), previous && !key.PreviousValidAt(now):
		return ReasonExpired
	case key.Status.Phase == keymintv1alpha1.PhaseSuspended:
		return ReasonSuspended
	case key.Inactive():
		return ReasonInactive
	case !key.Status.Phase.Issued(), !inSecret:
		return ReasonUnknown // revoked: its Secret was deleted, or it lost its slot
	}
	return ""
}
