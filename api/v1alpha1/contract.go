package v1alpha1

import corev1 "k8s.io/api/core/v1"

// The strings other tools depend on: RBAC rules, admission policies,
// kustomize and Helm manifests, workloads that mount a key's Secret, and
// gateways. config/ repeats some of them in YAML; tests check they agree.

// Finalizer holds an APIKey until its Secret is deleted and its slot freed,
// so that revocation does not depend on the garbage collector.
const Finalizer = "keymint.io/revoke"

// VerbUse on apikeys is what "has access to API keys" means: a key is
// issued, and stays Active, only while its user holds it.
const VerbUse = "use"

// VerbDelegate on apikeys lets a user create and update APIKeys for other
// users (the keymint-self-service admission policy checks it): the manager
// holds it, and so do administrators.
const VerbDelegate = "delegate"

// ReasonActive is the Ready reason of an Active key.
const ReasonActive = "Active"

// The minted Secret.
const (
	// SecretType is the type of every minted Secret.
	SecretType corev1.SecretType = "keymint.io/api-key"

	// The Secret's data keys: a workload mounts DataKey.
	DataKey       = "api-key"
	DataKeyID     = "key-id"
	DataUser      = "user"
	DataExpiresAt = "expires-at"

	// ExpiresNever is the expires-at value of a key that never expires.
	ExpiresNever = "never"

	// LabelManagedBy and ManagedBy mark every object keymint owns; the
	// manager caches only Secrets with this label.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedBy      = "keymint"
	// LabelAPIKey holds the name of the APIKey an object belongs to.
	LabelAPIKey = "keymint.io/apikey"
	// AnnotationIssuedAt records when the key was first issued, so that a
	// status lost before it was written can be rebuilt from the Secret.
	AnnotationIssuedAt = "keymint.io/issued-at"
	// AnnotationKeyHash is the key's hash (as in the APIKey's status), so
	// that a Secret read without its key still tells which key it holds.
	AnnotationKeyHash = "keymint.io/key-hash"
	// AnnotationRevision numbers the keys issued to an APIKey (1 for the
	// first, +1 per issue), as status.revision does. It is signed, so a
	// copy of an earlier Secret is told from the current one.
	AnnotationRevision = "keymint.io/revision"
	// AnnotationPreviousKeyHash, on a Secret a key was renewed into, is
	// the hash of the key it succeeded, which keeps working until its own
	// expiry (status.previousKey). It is signed.
	AnnotationPreviousKeyHash = "keymint.io/previous-key-hash"

	// AnnotationRotateRequestedAt, on an APIKey, asks for an in-place
	// rotation (kubectl apikey rotate --in-place): an RFC 3339 time, acted
	// on once (status.lastRotationRequest).
	AnnotationRotateRequestedAt = "keymint.io/rotate-requested-at"
	// AnnotationRotateGrace is how long the previous key keeps working
	// after an in-place rotation: a Go duration, DefaultRotateGrace when
	// absent; 0s revokes it at once.
	AnnotationRotateGrace = "keymint.io/rotate-grace"
)
