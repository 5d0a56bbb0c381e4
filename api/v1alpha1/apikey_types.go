package v1alpha1

import (
	"time"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// APIKeySpec is what a user asks for: a key for a user, with an expiration.
// +kubebuilder:validation:XValidation:rule="has(self.requester) == has(oldSelf.requester)",message="requester is immutable",fieldPath=".requester"
// +kubebuilder:validation:XValidation:rule="has(self.secretName) == has(oldSelf.secretName) && (!has(self.secretName) || self.secretName == oldSelf.secretName)",message="secretName is immutable",fieldPath=".secretName"
// +kubebuilder:validation:XValidation:rule="!has(self.rotation) || has(self.expiration.months)",message="spec.rotation: automatic renewal needs expiration.months",fieldPath=".rotation"
// +kubebuilder:validation:XValidation:rule="!has(self.rotation) || !has(self.rotation.renewBefore) || !has(self.expiration.months) || duration(self.rotation.renewBefore).getSeconds() <= self.expiration.months * 1339200",message="spec.rotation.renewBefore: at most half of the key's lifetime, and expiration.months × 372h (15.5 days a month) is more than half of any",fieldPath=".rotation.renewBefore"
type APIKeySpec struct {
	// User is the Kubernetes username that owns the key.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="user is immutable"
	User string `json:"user"`

	// Expiration says when the key expires: after a number of calendar months,
	// at a given time, or never.
	// +required
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="expiration is immutable"
	Expiration Expiration `json:"expiration"`

	// SecretName is the Secret the key is minted into, in the APIKey's
	// namespace. Defaults to the APIKey's name.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	SecretName string `json:"secretName,omitempty"`

	// Rotation renews the key before it expires, into the same Secret: a
	// successor key is minted renewBefore its expiry, and the previous key
	// keeps working at the gateway until its own expiry, so that workloads
	// that re-read the mounted Secret never see a refusal. It needs
	// expiration.months, and may be added or removed at any time.
	// +optional
	Rotation *Rotation `json:"rotation,omitempty"`

	// Description is free text for people, such as what the key is for.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Description string `json:"description,omitempty"`

	// State switches the key off and on without deleting it. An Inactive
	// key keeps its Secret, its slot (it counts toward the cap) and its
	// expiry, and its owner can still reveal it, but the verifier refuses
	// it (reason inactive) until it is Active again: the same key, not a
	// new one. An Expired key stays Expired.
	// +optional
	// +kubebuilder:default=Active
	State KeyState `json:"state,omitempty"`

	// StateReason says why the state was set; it is shown in the Ready
	// condition, the Events and the audit records.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	StateReason string `json:"stateReason,omitempty"`

	// StateChangedBy is who last set spec.state (or created the APIKey), as
	// the API server authenticated them. The keymint-state-actor
	// MutatingAdmissionPolicy sets it and the keymint-self-service
	// ValidatingAdmissionPolicy refuses any other value.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	StateChangedBy string `json:"stateChangedBy,omitempty"`

	// Requester is who created the APIKey, as the API server saw it. The
	// keymint-requester MutatingAdmissionPolicy sets it on creation and the
	// keymint-self-service ValidatingAdmissionPolicy refuses any other
	// value, as CertificateSigningRequest does with spec.username.
	// +optional
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="requester is immutable"
	Requester *Requester `json:"requester,omitempty"`
}

// Requester is the identity that created an APIKey.
type Requester struct {
	// Username of the requester.
	// +kubebuilder:validation:MaxLength=253
	Username string `json:"username"`
	// Groups of the requester.
	// +optional
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MaxLength=253
	// +listType=atomic
	Groups []string `json:"groups,omitempty"`
}

// Rotation says when a key renews itself.
type Rotation struct {
	// RenewBefore is how long before its expiry the key is renewed: the
	// renewal time is expiresAt - renewBefore, and the previous key keeps
	// working until expiresAt. A Go duration, at least 1h and at most half
	// of the key's lifetime (issuedAt to expiresAt); one third of the
	// lifetime when absent.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1h')",message="renewBefore must be at least 1h"
	RenewBefore *metav1.Duration `json:"renewBefore,omitempty"`
}

// Expiration holds exactly one of Months, At or Never.
// +kubebuilder:validation:XValidation:rule="(has(self.months) ? 1 : 0) + (has(self.at) ? 1 : 0) + (has(self.never) ? 1 : 0) == 1",message="exactly one of months, at or never must be set"
type Expiration struct {
	// Months expires the key that many calendar months after issuance, at the
	// same time of day (UTC); a day missing in the target month clamps to
	// that month's last day.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=120
	Months *int32 `json:"months,omitempty"`

	// At expires the key at this time (RFC 3339). It must be after the
	// APIKey's creation.
	// +optional
	At *metav1.Time `json:"at,omitempty"`

	// Never, when true, makes a key that never expires. true is its only
	// valid value.
	// +optional
	// +kubebuilder:validation:Enum=true
	Never *bool `json:"never,omitempty"`
}

// KeyState is what the key's owner or an administrator wants: the key
// on (Active) or off (Inactive).
// +kubebuilder:validation:Enum=Active;Inactive
type KeyState string

const (
	// StateActive: the key works while it is issued and not expired.
	StateActive KeyState = "Active"
	// StateInactive: the key is switched off; the verifier refuses it.
	StateInactive KeyState = "Inactive"
)

// Phase is where an APIKey is in its life.
// +kubebuilder:validation:Enum=Pending;Active;Inactive;Suspended;Expired
type Phase string

const (
	// PhasePending means no key is issued yet: the key waits for a slot or
	// for a problem to be fixed.
	PhasePending Phase = "Pending"
	// PhaseActive means the key is issued and its Secret exists.
	PhaseActive Phase = "Active"
	// PhaseInactive means the key is issued and its Secret exists, but it
	// is switched off (spec.state Inactive): the verifier refuses it.
	PhaseInactive Phase = "Inactive"
	// PhaseSuspended means the key was issued but its user lost access to
	// API keys: its Secret is gone until access is granted again, when a
	// fresh key is issued.
	PhaseSuspended Phase = "Suspended"
	// PhaseExpired means the key reached its expiration; its Secret is gone.
	PhaseExpired Phase = "Expired"
)

// Issued reports whether the phase is of an issued key whose Secret
// exists: Active, or Inactive (switched off).
func (p Phase) Issued() bool { return p == PhaseActive || p == PhaseInactive }

// APIKeyStatus is what the controller observed and did. It never holds key
// material.
type APIKeyStatus struct {
	// Phase is Pending, Active, Inactive, Suspended or Expired.
	// +optional
	Phase Phase `json:"phase,omitempty"`

	// KeyID is a public identifier of the issued key; it reveals no secret bits.
	// +optional
	KeyID string `json:"keyID,omitempty"`

	// KeyHash is "sha256:" followed by the lowercase hex SHA-256 of the full
	// key, so a verifier can check a key without the plaintext.
	// +optional
	KeyHash string `json:"keyHash,omitempty"`

	// SecretName is the Secret that holds the key.
	// +optional
	SecretName string `json:"secretName,omitempty"`

	// IssuedAt is when the key was first issued.
	// +optional
	IssuedAt *metav1.Time `json:"issuedAt,omitempty"`

	// ExpiresAt is when the key expires; absent when it never does.
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`

	// Expires is when the key expires, for people and columns: an RFC 3339
	// time, or "never"; absent while it depends on an issue yet to come.
	// +optional
	Expires string `json:"expires,omitempty"`

	// LastUsedAt is when the key was last presented to keymint's verifier
	// and found valid, to within --last-used-interval (1h by default):
	// check it before deleting the old key of a rollover.
	// +optional
	LastUsedAt *metav1.Time `json:"lastUsedAt,omitempty"`

	// Revision counts the keys issued to this APIKey: 1 for the first, +1
	// for each new key (a renewal, a rotation, a reissue). The Secret's
	// keymint.io/revision annotation says which issue it holds; a Secret of
	// an earlier revision is never adopted.
	// +optional
	Revision int64 `json:"revision,omitempty"`

	// RenewalTime is when the key renews itself (expiresAt -
	// spec.rotation.renewBefore); absent without spec.rotation, or while
	// the renewal is blocked by an invalid renewBefore.
	// +optional
	RenewalTime *metav1.Time `json:"renewalTime,omitempty"`

	// PreviousKey is the key the current one succeeded, while it still
	// works at the gateway (until its expiresAt). It holds one of the
	// user's slots until then. The Secret never holds its plaintext.
	// +optional
	PreviousKey *PreviousKey `json:"previousKey,omitempty"`

	// LastRotationRequest is the keymint.io/rotate-requested-at value of
	// the last in-place rotation request acted on: each request is acted
	// on once.
	// +optional
	LastRotationRequest string `json:"lastRotationRequest,omitempty"`

	// ObservedGeneration is the generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions are Ready, Reconciling and Stalled, as kstatus reads them,
	// and ExpiringSoon, RotationBlocked and PreviousKeyInUse, which kstatus
	// ignores; those three are present only while they apply.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// PreviousKey is a renewed key that still works until its expiry.
type PreviousKey struct {
	// KeyID is the previous key's public identifier.
	KeyID string `json:"keyID"`
	// KeyHash is the previous key's hash, as status.keyHash.
	KeyHash string `json:"keyHash"`
	// ExpiresAt is when the previous key stops working and is retired.
	ExpiresAt metav1.Time `json:"expiresAt"`
	// LastUsedAt is when the previous key was last presented to the
	// verifier and found valid, to within --last-used-interval.
	// +optional
	LastUsedAt *metav1.Time `json:"lastUsedAt,omitempty"`
}

// APIKey is a user's API key. The key itself lives only in the Secret the
// controller mints; the APIKey holds its public identity and state.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=ak,categories=keymint
// +kubebuilder:printcolumn:name="User",type=string,JSONPath=`.spec.user`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="KeyID",type=string,JSONPath=`.status.keyID`
// +kubebuilder:printcolumn:name="Expires",type=string,JSONPath=`.status.expires`
// +kubebuilder:printcolumn:name="Last Used",type=date,JSONPath=`.status.lastUsedAt`,priority=1
// +kubebuilder:printcolumn:name="Renews",type=string,JSONPath=`.status.renewalTime`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 63",message="metadata.name must be at most 63 characters: it is the value of the Secret's keymint.io/apikey label"
type APIKey struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec   APIKeySpec   `json:"spec"`
	Status APIKeyStatus `json:"status,omitempty"`
}

// APIKeyList is a list of APIKeys.
// +kubebuilder:object:root=true
type APIKeyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []APIKey `json:"items"`
}

// SecretNameOrDefault is the Secret this APIKey mints into.
func (k *APIKey) SecretNameOrDefault() string {
	if k.Spec.SecretName != "" {
		return k.Spec.SecretName
	}
	return k.Name
}

// KnownExpiry is when the key expires, as far as it is known: the recorded
// expiry once issued, else spec.expiration.at. A key that expires after
// some months has no expiry until it is issued, and one that never
// expires has none at all (nil).
func (k *APIKey) KnownExpiry() *time.Time {
	switch {
	case k.Status.ExpiresAt != nil:
		return &k.Status.ExpiresAt.Time
	case k.Spec.Expiration.At != nil:
		return &k.Spec.Expiration.At.Time
	}
	return nil
}

// DueAt reports whether the key has reached its known expiry at now: the
// controller expires it then, and the verifier refuses it from that
// instant, whether the controller has run or not.
func (k *APIKey) DueAt(now time.Time) bool {
	exp := k.KnownExpiry()
	return exp != nil && !now.Before(*exp)
}

// Ready is the Ready condition, or nil before the first reconcile.
func (s *APIKeyStatus) Ready() *metav1.Condition {
	return apimeta.FindStatusCondition(s.Conditions, ConditionReady)
}

// ReadyReason is the Ready condition's reason, or "".
func (s *APIKeyStatus) ReadyReason() string {
	if c := s.Ready(); c != nil {
		return c.Reason
	}
	return ""
}

// ReadyMessage is the Ready condition's message, or "".
func (s *APIKeyStatus) ReadyMessage() string {
	if c := s.Ready(); c != nil {
		return c.Message
	}
	return ""
}

// Inactive reports whether the key is switched off (spec.state Inactive).
func (k *APIKey) Inactive() bool { return k.Spec.State == StateInactive }

// StateNote is who set spec.state and why, for messages:
// " (set by alice): rotating"; empty when neither is known.
func (k *APIKey) StateNote() string {
	note := ""
	if k.Spec.StateChangedBy != "" {
		note += " (set by " + k.Spec.StateChangedBy + ")"
	}
	if k.Spec.StateReason != "" {
		note += ": " + k.Spec.StateReason
	}
	return note
}
