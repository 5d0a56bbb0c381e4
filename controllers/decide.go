package controllers

import (
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/slots"
)

// Action is what act does for a Plan.
type Action string

// The actions, one a Plan.
const (
	// ActStall records a key that needs a person's change; it holds nothing.
	ActStall Action = "Stall"
	// ActFreeSlots frees the slots an Expired key still holds.
	ActFreeSlots Action = "FreeSlots"
	// ActSettled writes nothing: the key is where it should be.
	ActSettled Action = "Settled"
	// ActExpire deletes the Secret, then frees the slot and records Expired.
	ActExpire Action = "Expire"
	// ActDeny takes away what a user without access holds.
	ActDeny Action = "Deny"
	// ActConflict frees the slot of a key blocked by someone else's Secret.
	ActConflict Action = "Conflict"
	// ActWait records a key waiting for a slot; one that lost its slot
	// loses its Secret too.
	ActWait Action = "Wait"
	// ActClaim claims a slot, then mints or adopts the Secret.
	ActClaim Action = "Claim"
	// ActIssue mints or adopts the Secret of a key holding a slot.
	ActIssue Action = "Issue"
	// ActRenew mints the successor of an issued key into its Secret; the
	// previous key works on for the plan's grace, in a second slot.
	ActRenew Action = "Renew"
	// ActBlockRotation records a renewal that waits for a slot; the key
	// stays issued.
	ActBlockRotation Action = "BlockRotation"
	// ActRetire retires a previous key at its expiry and frees the slots
	// the key holds beyond what it needs.
	ActRetire Action = "Retire"
)

// Plan is what decide chose for a key.
type Plan struct {
	// Check names the check that decided.
	Check string
	Do    Action
	// Reason and Message are the Ready condition's, for the actions that
	// set one without a write's outcome (Stall, Conflict, Deny, Wait).
	Reason, Message string
	// Reclaim are slots whose holder is gone, freed before the action.
	Reclaim []coordinationv1.Lease
	// Grace is how long a renewal's previous key keeps working (none: it
	// is revoked at once); Scheduled renewals keep it until its own
	// expiry. Request is the rotation request a renewal acts on.
	Grace     time.Duration
	Scheduled bool
	Request   string
}

// check is one link of the chain: it decides, or passes (ok false).
type check struct {
	name   string
	decide func(in *Input) (Plan, bool)
}

// chain is decide's order. The first check that decides ends it; the
// requeue time follows from the state the action leaves (requeueAfter).
var chain = []check{
	{"ReservedNamespace", reservedNamespace},
	{"InvalidExpiration", invalidExpiration},
	{"ExpiredOrDue", expiredOrDue},
	{"AccessDeniedOrRemoved", accessDeniedOrRemoved},
	{"SecretConflict", secretConflict},
	{"NoSlotOrNotYourTurn", noSlotOrNotYourTurn},
	{"PreviousKeyDue", previousKeyDue},
	{"RotationRequested", rotationRequested},
	{"RenewalDue", renewalDue},
	{"SurplusSlots", surplusSlots},
	{"ClaimMintOrAdopt", claimMintOrAdopt},
}

// decide is the key's state machine: it reads nothing but in.
func decide(in *Input) Plan {
	for _, c := range chain {
		if p, ok := c.decide(in); ok {
			p.Check = c.name
			return p
		}
	}
	return Plan{Check: "none", Do: ActSettled} // not reached: the last check always decides
}

// reservedNamespace: the slot namespace holds the signing key and the
// slots, so no key is ever issued there, and none is granted a Secret
// there (the keymint-self-service policy refuses such APIKeys too).
func reservedNamespace(in *Input) (Plan, bool) {
	if in.Key.Namespace != in.SlotNamespace {
		return Plan{}, false
	}
	return Plan{Do: ActDeny, Reason: keymintv1alpha1.ReasonReservedNamespace,
		Message: "namespace " + in.Key.Namespace + " is keymint's own (it holds the signing key and the slots): create APIKeys in another namespace"}, true
}

// invalidExpiration: spec.expiration.at is immutable, so such a key never
// held a slot, and never will.
func invalidExpiration(in *Input) (Plan, bool) {
	if !invalidAt(in.Key) {
		return Plan{}, false
	}
	return Plan{Do: ActStall, Reason: keymintv1alpha1.ReasonInvalidExpiration,
		Message: "spec.expiration.at " + in.Key.Spec.Expiration.At.UTC().Format(time.RFC3339) +
			" is not after the APIKey's creation " + in.Key.CreationTimestamp.UTC().Format(time.RFC3339)}, true
}

// expiredOrDue: an Expired key only gives back a slot it still holds; a
// key at its expiry expires, issued or not.
func expiredOrDue(in *Input) (Plan, bool) {
	switch {
	case in.Key.Status.Phase == keymintv1alpha1.PhaseExpired && slots.HeldBy(in.Slots, in.Key):
		return Plan{Do: ActFreeSlots}, true
	case in.Key.Status.Phase == keymintv1alpha1.PhaseExpired:
		return Plan{Do: ActSettled}, true
	case in.Key.DueAt(in.Now):
		return Plan{Do: ActExpire}, true
	}
	return Plan{}, false
}

// accessDeniedOrRemoved: a key never issued stays Pending without access;
// an issued one is Suspended. Both wait for an administrator.
func accessDeniedOrRemoved(in *Input) (Plan, bool) {
	if in.Allowed {
		return Plan{}, false
	}
	k := in.Key
	if k.Status.KeyID == "" {
		return Plan{Do: ActDeny, Reason: keymintv1alpha1.ReasonAccessDenied,
			Message: "user " + k.Spec.User + ` is not authorised for "use" on apikeys in namespace ` + k.Namespace +
				"; an administrator grants it by binding the keymint-user ClusterRole"}, true
	}
	return Plan{Do: ActDeny, Reason: keymintv1alpha1.ReasonAccessRemoved,
		Message: "key " + k.Status.KeyID + " is suspended: user " + k.Spec.User +
			` is no longer authorised for "use" on apikeys; a fresh key is issued when access is granted again`}, true
}

// secretConflict: someone else's Secret has the key's Secret name.
func secretConflict(in *Input) (Plan, bool) {
	if !in.SecretConflict {
		return Plan{}, false
	}
	return Plan{Do: ActConflict, Reason: keymintv1alpha1.ReasonSecretConflict, Message: conflictMessage(in.Key)}, true
}

// invalidAt reports whether spec.expiration.at is not after the APIKey's
// creation, which issues nothing.
func invalidAt(key *keymintv1alpha1.APIKey) bool {
	at := key.Spec.Expiration.At
	return at != nil && !at.After(key.CreationTimestamp.Time)
}

// noSlotOrNotYourTurn: a key without a slot waits while its user's slots
// are all held, or while older keys of the user, or renewals, wait ahead
// of it.
func noSlotOrNotYourTurn(in *Input) (Plan, bool) {
	if slots.HeldBy(in.Slots, in.Key) {
		return Plan{}, false
	}
	held := heldSlots(in)
	if free := in.MaxKeys - len(held); free > 0 && slots.Eligible(candidate(in.Key), in.Waiting, free) {
		return Plan{}, false
	}
	return Plan{Do: ActWait, Reason: keymintv1alpha1.ReasonKeyLimitReached,
		Message: waitMessage(in.Key.Spec.User, slots.HolderNames(held), in.MaxKeys, slots.Ahead(candidate(in.Key), in.Waiting)), Reclaim: in.Stale}, true
}

// claimMintOrAdopt: the key holds a slot, or may claim one.
func claimMintOrAdopt(in *Input) (Plan, bool) {
	if slots.HeldBy(in.Slots, in.Key) {
		return Plan{Do: ActIssue}, true
	}
	return Plan{Do: ActClaim, Reclaim: in.Stale}, true
}

// heldSlots are the user's slots whose holder exists.
func heldSlots(in *Input) []coordinationv1.Lease {
	var held []coordinationv1.Lease
	for _, l := range in.Slots {
		stale := false
		for _, s := range in.Stale {
			stale = stale || s.UID == l.UID
		}
		if !stale {
			held = append(held, l)
		}
	}
	return held
}
