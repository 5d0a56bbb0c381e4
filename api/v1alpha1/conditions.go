package v1alpha1

// Condition types, as kstatus (Argo CD, Flux) reads them.
const (
	// ConditionReady is True when the key is Active and its Secret exists.
	ConditionReady = "Ready"
	// ConditionReconciling is True while the controller works toward Active,
	// such as while the key waits for a slot (kstatus: InProgress).
	ConditionReconciling = "Reconciling"
	// ConditionStalled is True when the key cannot progress without a
	// change by a person (kstatus: Failed).
	ConditionStalled = "Stalled"
	// ConditionExpiringSoon is True from --expiry-warning before an Active
	// key's expiry. It does not change the key's health.
	ConditionExpiringSoon = "ExpiringSoon"
	// ConditionRotationBlocked is True while a due renewal cannot happen
	// (reasons KeyLimitReached, InvalidRenewBefore). The key stays Ready.
	ConditionRotationBlocked = "RotationBlocked"
	// ConditionPreviousKeyInUse is True when the previous key was presented
	// at the gateway more than PreviousKeyInUseAfter after its successor
	// was written to the Secret: a workload has not picked up the new key.
	ConditionPreviousKeyInUse = "PreviousKeyInUse"
)

// Condition reasons. The same words name the Events the controller records.
const (
	// ReasonIssued: a key was minted into its Secret.
	ReasonIssued = "Issued"
	// ReasonReissued: the Secret was deleted by someone and a fresh key minted.
	ReasonReissued = "Reissued"
	// ReasonKeyLimitReached: the user already holds the maximum of Active keys.
	ReasonKeyLimitReached = "KeyLimitReached"
	// ReasonExpired: the key reached its expiration and its Secret was deleted.
	ReasonExpired = "Expired"
	// ReasonDeleted: the APIKey was deleted and its key revoked.
	ReasonDeleted = "Deleted"
	// ReasonInvalidExpiration: spec.expiration.at is not after the APIKey's creation.
	ReasonInvalidExpiration = "InvalidExpiration"
	// ReasonReservedNamespace: the APIKey is in keymint's own namespace
	// (the slot namespace, which holds the signing key): no key is issued.
	ReasonReservedNamespace = "ReservedNamespace"
	// ReasonSecretConflict: a Secret of that name exists and is not this APIKey's.
	ReasonSecretConflict = "SecretConflict"
	// ReasonAccessDenied: the user is not authorised for "use" on apikeys in
	// the namespace, so no key is issued.
	ReasonAccessDenied = "AccessDenied"
	// ReasonAccessRemoved: the user of an issued key lost access; the key is
	// Suspended and its Secret deleted.
	ReasonAccessRemoved = "AccessRemoved"
	// ReasonSuspended names the Event of a key suspended for lost access.
	ReasonSuspended = "Suspended"
	// ReasonUntrustedSecret names the Event of a Secret that claimed the
	// APIKey without keymint's signature, and was deleted.
	ReasonUntrustedSecret = "UntrustedSecret"
	// ReasonExpiringSoon: the key expires within the warning window; it
	// also names the Warning Event recorded when the window opens.
	ReasonExpiringSoon = "ExpiringSoon"
	// ReasonInactive: the key is switched off (spec.state Inactive), as its
	// spec asks, so Ready is True (kstatus Current); the message gives who
	// switched it off and spec.stateReason.
	ReasonInactive = "Inactive"
	// ReasonDeactivated and ReasonReactivated name the Events and audit
	// records of a key switched off and on again; their actor is
	// spec.stateChangedBy.
	ReasonDeactivated = "Deactivated"
	ReasonReactivated = "Reactivated"
	// ReasonRenewed names the Event and record of a key renewed into its
	// Secret (on schedule or on request).
	ReasonRenewed = "Renewed"
	// ReasonPreviousKeyRetired names the Event and record of a previous key
	// that stopped working at its expiry, or at once on a rotation request.
	ReasonPreviousKeyRetired = "PreviousKeyRetired"
	// ReasonRotationBlocked names the Warning Event of a blocked renewal.
	ReasonRotationBlocked = "RotationBlocked"
	// ReasonInvalidRenewBefore: spec.rotation.renewBefore is more than half
	// of the key's lifetime; the key expires as without rotation.
	ReasonInvalidRenewBefore = "InvalidRenewBefore"
	// ReasonPreviousKeyInUse names the condition's reason and its Warning Event.
	ReasonPreviousKeyInUse = "PreviousKeyInUse"
	// ReasonProgressing: the controller is working on the key (or retrying an error).
	ReasonProgressing = "Progressing"
)
