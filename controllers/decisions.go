package controllers

import (
	"fmt"
	"strings"
	"time"

	"k8s.io/utils/ptr"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/expiry"
)

// The functions in this file decide; they read nothing but their arguments.

// invalidAt reports whether spec.expiration.at is not after the APIKey's
// creation, which issues nothing.
func invalidAt(key *keymintv1alpha1.APIKey) bool {
	at := key.Spec.Expiration.At
	return at != nil && !at.After(key.CreationTimestamp.Time)
}

// knownExpiry is when the key expires, as far as it is known before
// issuance: the recorded expiry once issued, else spec.expiration.at. A key
// that expires after some months has no expiry until it is issued.
func knownExpiry(key *keymintv1alpha1.APIKey) *time.Time {
	switch {
	case key.Status.ExpiresAt != nil:
		return &key.Status.ExpiresAt.Time
	case key.Spec.Expiration.At != nil:
		return &key.Spec.Expiration.At.Time
	}
	return nil
}

// issuance is the issue time and expiry of a key minted at now. A reissue
// keeps the first issue's times: it never extends a key's life.
func issuance(key *keymintv1alpha1.APIKey, now time.Time) (issuedAt time.Time, expiresAt *time.Time) {
	if key.Status.IssuedAt != nil {
		return key.Status.IssuedAt.Time, knownExpiry(key)
	}
	// Status and Secret hold seconds; so does the expiry computed here.
	issuedAt = now.UTC().Truncate(time.Second)
	exp := key.Spec.Expiration
	switch {
	case exp.Months != nil:
		t := expiry.AddMonths(issuedAt, int(*exp.Months))
		return issuedAt, &t
	case exp.At != nil:
		t := exp.At.UTC()
		return issuedAt, &t
	}
	return issuedAt, nil
}

// issueEvent is the Event reason for finding key ID newID in the Secret of
// a key whose status last recorded prevID: Issued the first time, Reissued
// when the key changed, nothing when it did not.
func issueEvent(prevID, newID string) string {
	switch prevID {
	case newID:
		return ""
	case "":
		return keymintv1alpha1.ReasonIssued
	}
	return keymintv1alpha1.ReasonReissued
}

// expiryText is an expiry for messages.
func expiryText(t *time.Time) string {
	if t == nil {
		return "never expires"
	}
	return "expires " + t.UTC().Format(time.RFC3339)
}

// keyIDText is the key ID for messages.
func keyIDText(key *keymintv1alpha1.APIKey) string {
	if key.Status.KeyID == "" {
		return "(never issued)"
	}
	return key.Status.KeyID
}

// waitMessage says why a key of user waits for a slot.
func waitMessage(user string, holders []string, maxKeys int) string {
	list := strings.Join(holders, ", ")
	if len(holders) >= maxKeys {
		return fmt.Sprintf("user %s already holds %d active keys (%s); this key is issued when one of them is deleted or expires",
			user, len(holders), list)
	}
	return fmt.Sprintf("user %s holds %d of %d active keys (%s); older keys of the user wait ahead of this one", user, len(holders), maxKeys, list)
}

// expiresShown is status.expires: the known expiry in RFC 3339, "never",
// or nothing while a months expiry waits for its issue.
func expiresShown(key *keymintv1alpha1.APIKey) string {
	if t := knownExpiry(key); t != nil {
		return t.UTC().Format(time.RFC3339)
	}
	if ptr.Deref(key.Spec.Expiration.Never, false) {
		return "never"
	}
	return ""
}
