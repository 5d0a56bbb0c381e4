package controllers

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/keysecret"
	"github.com/keymint/keymint/internal/slots"
)

// The functions in this file only change an APIKey's status in memory; the
// reconciler writes it once, at the end. They never see key material.

func setCondition(key *keymintv1alpha1.APIKey, now time.Time, typ string, status metav1.ConditionStatus, reason, message string) {
	apimeta.SetStatusCondition(&key.Status.Conditions, metav1.Condition{
		Type:               typ,
		Status:             status,
		Reason:             reason,
		Message:            message,
		ObservedGeneration: key.Generation,
		LastTransitionTime: metav1.NewTime(now),
	})
}

// setActive records an issued key: Ready, neither Reconciling nor Stalled;
// or, switched off, Inactive, with the same key kept. An Inactive key is
// where its spec wants it, so it is Ready too, with reason Inactive: kstatus
// reads a Ready condition that is False as still in progress, and GitOps
// tools waiting on a deliberately switched-off key would never finish.
func setActive(key *keymintv1alpha1.APIKey, now time.Time, secretName string, in keysecret.Issue) {
	key.Status.Phase = keymintv1alpha1.PhaseActive
	defer func() {
		apimeta.RemoveStatusCondition(&key.Status.Conditions, keymintv1alpha1.ConditionReconciling)
		apimeta.RemoveStatusCondition(&key.Status.Conditions, keymintv1alpha1.ConditionStalled)
	}()
	if key.Inactive() {
		key.Status.Phase = keymintv1alpha1.PhaseInactive
		setCondition(key, now, keymintv1alpha1.ConditionReady, metav1.ConditionTrue, keymintv1alpha1.ReasonInactive, inactiveMessage(key, in.KeyID, secretName))
	}
	key.Status.KeyID = in.KeyID
	key.Status.KeyHash = in.KeyHash
	key.Status.Revision = in.Revision
	key.Status.SecretName = secretName
	key.Status.IssuedAt = ptrTime(&in.IssuedAt)
	key.Status.ExpiresAt = ptrTime(in.ExpiresAt)
	if !key.Inactive() {
		setCondition(key, now, keymintv1alpha1.ConditionReady, metav1.ConditionTrue, keymintv1alpha1.ReasonActive,
			"key "+in.KeyID+" is active in Secret "+secretName)
	}
}

// setExpiringSoon makes the ExpiringSoon condition of an Active key say
// whether it expires within window of now: present and True while it does,
// absent otherwise, and for a key with a renewal time. It does not touch
// the key's health.
func setExpiringSoon(key *keymintv1alpha1.APIKey, now time.Time, window time.Duration) {
	exp := key.Status.ExpiresAt
	// A key that renews itself needs nobody's successor: RotationBlocked
	// says when its renewal cannot happen.
	renews := key.Status.RenewalTime != nil
	if !key.Status.Phase.Issued() || exp == nil || renews || now.Before(exp.Add(-window)) {
		apimeta.RemoveStatusCondition(&key.Status.Conditions, keymintv1alpha1.ConditionExpiringSoon)
		return
	}
	if apimeta.IsStatusConditionTrue(key.Status.Conditions, keymintv1alpha1.ConditionExpiringSoon) {
		return
	}
	setCondition(key, now, keymintv1alpha1.ConditionExpiringSoon, metav1.ConditionTrue, keymintv1alpha1.ReasonExpiringSoon,
		"key "+key.Status.KeyID+" of user "+key.Spec.User+" expires at "+exp.UTC().Format(time.RFC3339)+
			", within "+windowText(window)+"; create its successor and switch to it before then")
}

// windowText is a warning window for people: "14 days", or a duration.
func windowText(d time.Duration) string {
	const day = 24 * time.Hour
	switch {
	case d == day:
		return "1 day"
	case d > 0 && d%day == 0:
		return strconv.Itoa(int(d/day)) + " days"
	}
	return d.String()
}

// setWaiting records a key that has no key yet but will get one without a
// person's help when a slot frees (kstatus: InProgress).
func setWaiting(key *keymintv1alpha1.APIKey, now time.Time, message string) {
	endRotation(key)
	reason := keymintv1alpha1.ReasonKeyLimitReached
	key.Status.Phase = keymintv1alpha1.PhasePending
	setCondition(key, now, keymintv1alpha1.ConditionReady, metav1.ConditionFalse, reason, message)
	setCondition(key, now, keymintv1alpha1.ConditionReconciling, metav1.ConditionTrue, reason, message)
	apimeta.RemoveStatusCondition(&key.Status.Conditions, keymintv1alpha1.ConditionStalled)
}

// setStalled records a key that cannot be issued until a person changes
// something (kstatus: Failed). It holds no key and no slot.
func setStalled(key *keymintv1alpha1.APIKey, now time.Time, reason, message string) {
	endRotation(key)
	key.Status.Phase = keymintv1alpha1.PhasePending
	setCondition(key, now, keymintv1alpha1.ConditionReady, metav1.ConditionFalse, reason, message)
	setCondition(key, now, keymintv1alpha1.ConditionStalled, metav1.ConditionTrue, reason, message)
	apimeta.RemoveStatusCondition(&key.Status.Conditions, keymintv1alpha1.ConditionReconciling)
}

// setExpired records a key at its end. The key will never work again and
// the controller can do nothing about it, so it is Stalled (kstatus:
// Failed): a GitOps tool shows it until someone removes or replaces it.
func setExpired(key *keymintv1alpha1.APIKey, now time.Time, expiresAt *time.Time, message string) {
	endRotation(key)
	key.Status.Phase = keymintv1alpha1.PhaseExpired
	apimeta.RemoveStatusCondition(&key.Status.Conditions, keymintv1alpha1.ConditionExpiringSoon)
	key.Status.ExpiresAt = ptrTime(expiresAt)
	setCondition(key, now, keymintv1alpha1.ConditionReady, metav1.ConditionFalse, keymintv1alpha1.ReasonExpired, message)
	setCondition(key, now, keymintv1alpha1.ConditionStalled, metav1.ConditionTrue, keymintv1alpha1.ReasonExpired, message)
	apimeta.RemoveStatusCondition(&key.Status.Conditions, keymintv1alpha1.ConditionReconciling)
}

// setSuspended records an issued key whose user lost access: no Secret, no
// slot, until an administrator grants access again (kstatus: Failed).
func setSuspended(key *keymintv1alpha1.APIKey, now time.Time, message string) {
	endRotation(key)
	key.Status.Phase = keymintv1alpha1.PhaseSuspended
	setCondition(key, now, keymintv1alpha1.ConditionReady, metav1.ConditionFalse, keymintv1alpha1.ReasonAccessRemoved, message)
	setCondition(key, now, keymintv1alpha1.ConditionStalled, metav1.ConditionTrue, keymintv1alpha1.ReasonAccessRemoved, message)
	apimeta.RemoveStatusCondition(&key.Status.Conditions, keymintv1alpha1.ConditionReconciling)
}

// maxErrorMessage bounds an error shown in a condition: an API server's
// error can run to kilobytes, and a status is read by people.
const maxErrorMessage = 256

// setRetrying records an error the controller will retry. An issued key
// keeps its state: its Secret still works while, say, the API server is
// away.
func setRetrying(key *keymintv1alpha1.APIKey, now time.Time, message string) {
	if key.Status.Phase.Issued() {
		return
	}
	if r := []rune(message); len(r) > maxErrorMessage {
		message = string(r[:maxErrorMessage-1]) + "…"
	}
	if key.Status.Phase == "" {
		key.Status.Phase = keymintv1alpha1.PhasePending
	}
	setCondition(key, now, keymintv1alpha1.ConditionReconciling, metav1.ConditionTrue, keymintv1alpha1.ReasonProgressing, message)
	if !apimeta.IsStatusConditionPresentAndEqual(key.Status.Conditions, keymintv1alpha1.ConditionReady, metav1.ConditionFalse) {
		setCondition(key, now, keymintv1alpha1.ConditionReady, metav1.ConditionFalse, keymintv1alpha1.ReasonProgressing, message)
	}
}

func ptrTime(t *time.Time) *metav1.Time {
	if t == nil {
		return nil
	}
	mt := metav1.NewTime(t.UTC())
	return &mt
}

// keyIDText is the key ID for messages.
func keyIDText(key *keymintv1alpha1.APIKey) string {
	if key.Status.KeyID == "" {
		return "(never issued)"
	}
	return key.Status.KeyID
}

// waitMessage says why a key of user waits for a slot: the keys that hold
// the user's slots, and those that wait ahead of it.
func waitMessage(user string, holders []string, maxKeys int, ahead []slots.Candidate) string {
	if len(holders) >= maxKeys {
		return fmt.Sprintf("user %s already holds %d active keys (%s); this key is issued when one of them is deleted or expires",
			user, len(holders), strings.Join(holders, ", "))
	}
	held := "none"
	if len(holders) > 0 {
		held = strings.Join(holders, ", ")
	}
	names := make([]string, 0, len(ahead))
	for _, c := range ahead {
		names = append(names, c.Key.String())
	}
	return fmt.Sprintf("user %s holds %d of %d active keys (%s); older keys of the user wait ahead of this one: %s",
		user, len(holders), maxKeys, held, strings.Join(names, ", "))
}

func conflictMessage(key *keymintv1alpha1.APIKey) string {
	return fmt.Sprintf("Secret %s/%s exists and does not belong to this APIKey; delete it or choose another spec.secretName",
		key.Namespace, key.SecretNameOrDefault())
}

// expiryText is an expiry for messages.
func expiryText(t *time.Time) string {
	if t == nil {
		return "never expires"
	}
	return "expires " + t.UTC().Format(time.RFC3339)
}

// expiresShown is status.expires: the known expiry in RFC 3339, "never",
// or nothing while a months expiry waits for its issue.
func expiresShown(key *keymintv1alpha1.APIKey) string {
	if t := key.KnownExpiry(); t != nil {
		return t.UTC().Format(time.RFC3339)
	}
	if ptr.Deref(key.Spec.Expiration.Never, false) {
		return "never"
	}
	return ""
}

// inactiveMessage is the Ready message of an Inactive key: who switched it
// off and why, and that it is kept.
func inactiveMessage(key *keymintv1alpha1.APIKey, keyID, secretName string) string {
	return "key " + keyID + " is inactive" + key.StateNote() +
		"; Secret " + secretName + " keeps it and the verifier refuses it until spec.state is Active"
}

// endRotation drops what only an issued key has: its previous key (it
// stops working with the current one), its renewal and its rotation
// conditions.
func endRotation(key *keymintv1alpha1.APIKey) {
	key.Status.PreviousKey = nil
	key.Status.RenewalTime = nil
	apimeta.RemoveStatusCondition(&key.Status.Conditions, keymintv1alpha1.ConditionRotationBlocked)
	apimeta.RemoveStatusCondition(&key.Status.Conditions, keymintv1alpha1.ConditionPreviousKeyInUse)
}
