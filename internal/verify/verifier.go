package verify

import (
	"context"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/keys"
	"github.com/keymint/keymint/internal/keysecret"
	"github.com/keymint/keymint/internal/metrics"
)

// Verifier decides on presented keys from the manager's cache, on every
// replica: it never asks the API server.
type Verifier struct {
	// Cache is the manager's cache.
	Cache      client.Reader
	hashes     *hashes
	signatures checkedSignatures
	Signer     *keysecret.Signer
	Clock      clock.PassiveClock
	// Usage, when set, hears of every verdict on a key that exists.
	Usage *Usage
}

// waitForSync waits until the verifier knows every APIKey's hash: until
// then it would refuse valid keys as unknown.
func (v *Verifier) waitForSync(ctx context.Context) error {
	if v.hashes == nil || toolscache.WaitForCacheSync(ctx.Done(), v.hashes.synced) {
		return nil
	}
	return ctx.Err()
}

// Caller is what the verifier knows of who presented a key, for the usage
// records.
type Caller struct {
	// Address is the client's: the first X-Forwarded-For hop, or the
	// connection's (Envoy's source address).
	Address   string
	UserAgent string
}

// Verify decides on presented, the key a client sent (empty: none), for a
// gateway that accepts the namespaces in scope (nil: any).
func (v *Verifier) Verify(ctx context.Context, presented string, scope []string, caller Caller) Verdict {
	start := v.Clock.Now()
	verdict := v.verdict(ctx, presented, scope, start)
	metrics.Verifications.WithLabelValues(verdict.Result()).Inc()
	if v.Usage != nil && verdict.Key != nil {
		v.Usage.Saw(verdict, caller, start)
	}
	return verdict
}

func (v *Verifier) verdict(ctx context.Context, presented string, scope []string, now time.Time) Verdict {
	if presented == "" {
		return Verdict{Reason: ReasonMissing}
	}
	if keys.Validate(presented) != nil {
		return Verdict{Reason: ReasonMalformed}
	}
	hash := keys.Hash(presented)
	key, previous, err := v.lookup(ctx, hash)
	if err == nil && key == nil {
		return v.successor(ctx, hash, scope, now)
	}
	if err != nil {
		// A cache that cannot answer refuses, as for a key it has not seen.
		return Verdict{Reason: ReasonUnknown}
	}
	return Verdict{Reason: decide(now, scope, key, previous, v.inSecret(ctx, key, hash, previous)), Key: key, Previous: previous}
}

// successor decides on a key no APIKey's status names, which may be the
// successor a renewal has just written into its Secret: the Secret, signed
// by keymint for its APIKey, holds it as the revision after the status's.
// Anything else is unknown.
func (v *Verifier) successor(ctx context.Context, hash string, scope []string, now time.Time) Verdict {
	ref, ok := v.hashes.secretOf(hash)
	if !ok {
		return Verdict{Reason: ReasonUnknown}
	}
	secret := &corev1.Secret{}
	if err := v.Cache.Get(ctx, ref, secret, client.UnsafeDisableDeepCopy); err != nil || !secret.DeletionTimestamp.IsZero() {
		return Verdict{Reason: ReasonUnknown}
	}
	key := &keymintv1alpha1.APIKey{}
	name := types.NamespacedName{Namespace: ref.Namespace, Name: secret.Labels[keymintv1alpha1.LabelAPIKey]}
	if err := v.Cache.Get(ctx, name, key, client.UnsafeDisableDeepCopy); err != nil || key.Status.SecretName != ref.Name {
		return Verdict{Reason: ReasonUnknown}
	}
	in, err := v.Signer.Verify(secret, key)
	if err != nil || in.KeyHash != hash || in.Revision != key.Status.Revision+1 || in.PreviousKeyHash == "" {
		return Verdict{Reason: ReasonUnknown}
	}
	reason := decide(now, scope, key, false, true)
	if reason == "" && in.ExpiresAt != nil && !now.Before(*in.ExpiresAt) {
		reason = ReasonExpired
	}
	return Verdict{Reason: reason, Key: key, Next: &in}
}

// lookup finds the APIKey whose status holds hash, as its current key or
// its previous one. The cache's own copy is read, not a deep copy: this
// runs for every request.
func (v *Verifier) lookup(ctx context.Context, hash string) (key *keymintv1alpha1.APIKey, previous bool, err error) {
	name, ok := v.hashes.get(hash)
	if !ok {
		return nil, false, nil
	}
	key = &keymintv1alpha1.APIKey{}
	if err := v.Cache.Get(ctx, name, key, client.UnsafeDisableDeepCopy); err != nil {
		return nil, false, client.IgnoreNotFound(err)
	}
	// The map follows the cache's events; the cache holds the last word.
	switch {
	case key.Status.KeyHash == hash:
		return key, false, nil
	case key.Status.PreviousKey != nil && key.Status.PreviousKey.KeyHash == hash:
		return key, true, nil
	}
	return nil, false, nil
}

// inSecret reports whether key's Secret exists in the cache, signed by
// keymint for key, and vouches for hash: a deleted Secret is a revoked key,
// and a planted one proves nothing. The Secret vouches for the key it
// holds, and for the key that one succeeded by a renewal (its signed
// keymint.io/previous-key-hash): the status's previous key, or, for the
// moment between the Secret's update and the status's, its current one.
func (v *Verifier) inSecret(ctx context.Context, key *keymintv1alpha1.APIKey, hash string, previous bool) bool {
	secret := &corev1.Secret{}
	ref := types.NamespacedName{Namespace: key.Namespace, Name: key.Status.SecretName}
	if err := v.Cache.Get(ctx, ref, secret, client.UnsafeDisableDeepCopy); err != nil || !secret.DeletionTimestamp.IsZero() {
		return false
	}
	version := signedVersion{secret: secret.UID, resourceVersion: secret.ResourceVersion, owner: key.UID, keyHash: hash}
	if v.signatures.has(version) {
		return true
	}
	in, err := v.Signer.Verify(secret, key)
	if err != nil || !vouches(in, key.Status.Revision, hash, previous) {
		return false
	}
	v.signatures.add(version)
	return true
}

// vouches reports whether a Secret that says in vouches for hash, the
// status's previous key or its current one, of status revision revision.
func vouches(in keysecret.Issue, revision int64, hash string, previous bool) bool {
	succeeded := in.PreviousKeyHash == hash
	if previous {
		return succeeded && in.Revision == revision
	}
	return in.KeyHash == hash || succeeded && in.Revision == revision+1
}

// ParseScope reads the namespaces a gateway's verify path accepts. Only
// three forms mean anything, so that a typo can never widen what a gateway
// accepts:
//   - /verify and /verify/: every namespace (scope nil);
//   - /verify/all[/<anything>]: every namespace, for gateways that append
//     the client's path (Envoy's HTTP path_prefix);
//   - /verify/ns/<namespace>[,<namespace>...][/<anything>]: those.
//
// Any other path, or a namespace that is not a valid name, is no scope at
// all (ok false), and the verifier answers 404.
func ParseScope(path string) (scope []string, ok bool) {
	switch path {
	case VerifyPath, VerifyPath + "/", VerifyPath + "/all":
		return nil, true
	}
	if strings.HasPrefix(path, VerifyPath+"/all/") {
		return nil, true
	}
	rest, found := strings.CutPrefix(path, VerifyPath+"/ns/")
	if !found {
		return nil, false
	}
	list, _, _ := strings.Cut(rest, "/")
	scope = []string{}
	for ns := range strings.SplitSeq(list, ",") {
		if len(validation.IsDNS1123Label(ns)) > 0 {
			return nil, false
		}
		scope = append(scope, ns)
	}
	return scope, true
}

// UnknownPathMessage is the one line of a 404 for a path ParseScope refuses.
const UnknownPathMessage = "keymint: not a verify path: use /verify (every namespace), /verify/all/<path> or /verify/ns/<namespace>[,<namespace>...]\n"

// expiresAtHeader is X-Keymint-Expires-At of the key presented: RFC
// 3339, or "never".
func expiresAtHeader(v Verdict) string {
	switch {
	case v.Previous:
		return v.Key.Status.PreviousKey.ExpiresAt.UTC().Format(time.RFC3339)
	case v.Next != nil && v.Next.ExpiresAt == nil:
		return keymintv1alpha1.ExpiresNever
	case v.Next != nil:
		return v.Next.ExpiresAt.UTC().Format(time.RFC3339)
	case v.Key.Status.ExpiresAt == nil:
		return keymintv1alpha1.ExpiresNever
	}
	return v.Key.Status.ExpiresAt.UTC().Format(time.RFC3339)
}

// Identity headers a valid key's request carries upstream.
const (
	HeaderUser      = "X-Keymint-User"
	HeaderNamespace = "X-Keymint-Namespace"
	HeaderName      = "X-Keymint-Name"
	HeaderKeyID     = "X-Keymint-Key-Id"
	HeaderExpiresAt = "X-Keymint-Expires-At"
	// HeaderAPIKey is one of the two headers a key is read from, with
	// Authorization: Bearer.
	HeaderAPIKey = "X-API-Key"
)

// identity calls set with each header of a valid key, in a fixed order:
// the one list of them, for HTTP and gRPC, that allocates nothing itself.
// The key ID and expiry are those of the key presented, so a gateway's log
// shows who still uses a previous key.
func identity(v Verdict, set func(name, value string)) {
	key := v.Key
	set(HeaderUser, key.Spec.User)
	set(HeaderNamespace, key.Namespace)
	set(HeaderName, key.Name)
	set(HeaderKeyID, v.KeyID())
	set(HeaderExpiresAt, expiresAtHeader(v))
}

// presentedKey reads a key from an Authorization: Bearer header or, when
// there is none, from X-API-Key.
func presentedKey(authorization, apiKey string) string {
	if scheme, token, ok := strings.Cut(strings.TrimSpace(authorization), " "); ok && strings.EqualFold(scheme, "Bearer") {
		return strings.TrimSpace(token)
	}
	return strings.TrimSpace(apiKey)
}

// firstHop is the first address of an X-Forwarded-For header, or "".
func firstHop(xff string) string {
	first, _, _ := strings.Cut(xff, ",")
	return strings.TrimSpace(first)
}
