package controllers

import (
	"cmp"
	"context"
	"fmt"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/log"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/audit"
)

// transition is one change of a key's state worth an Event and an audit
// record.
type transition struct {
	eventType, reason, note string
	// actor is who caused it, when the API server vouched for them (the
	// admission policy's stamp); "unknown" when empty.
	actor string
}

// warnings are the Ready reasons whose arrival is an Event of that name.
var warnings = []string{
	keymintv1alpha1.ReasonReservedNamespace,
	keymintv1alpha1.ReasonInvalidExpiration,
	keymintv1alpha1.ReasonSecretConflict,
	keymintv1alpha1.ReasonAccessDenied,
	keymintv1alpha1.ReasonKeyLimitReached,
}

// transitions compares a key's status before a reconcile with the key
// after it: the road that decides which Events and records a change of
// state is worth. Each is emitted on the change only, never again while the key
// stays in that state.
func transitions(before *keymintv1alpha1.APIKeyStatus, after *keymintv1alpha1.APIKey) []transition {
	st := &after.Status
	var out []transition
	switch {
	case st.Phase.Issued() && before.KeyID != "" && st.KeyID != before.KeyID && renewed(before, st):
		out = append(out, renewal(before, after))
	case st.Phase.Issued() && st.KeyID != before.KeyID:
		reason := issueEvent(before.KeyID, st.KeyID)
		out = append(out, transition{eventType: corev1.EventTypeNormal, reason: reason,
			note: fmt.Sprintf("key %s issued for user %s in Secret %s, %s%s%s", st.KeyID, after.Spec.User, st.SecretName,
				expiryText(after.KnownExpiry()), inactiveText(st.Phase), reissueText(reason))})
	case st.Phase == keymintv1alpha1.PhaseInactive && before.Phase == keymintv1alpha1.PhaseActive:
		out = append(out, switched(after, keymintv1alpha1.ReasonDeactivated, "deactivated"))
	case st.Phase == keymintv1alpha1.PhaseActive && before.Phase == keymintv1alpha1.PhaseInactive:
		out = append(out, switched(after, keymintv1alpha1.ReasonReactivated, "reactivated"))
	case st.Phase == keymintv1alpha1.PhaseExpired && before.Phase != keymintv1alpha1.PhaseExpired:
		out = append(out, transition{eventType: corev1.EventTypeNormal, reason: keymintv1alpha1.ReasonExpired,
			note: fmt.Sprintf("key %s of user %s expired at %s", keyIDText(after), after.Spec.User, st.ExpiresAt.UTC().Format(time.RFC3339))})
	case st.Phase == keymintv1alpha1.PhaseSuspended && before.Phase != keymintv1alpha1.PhaseSuspended:
		out = append(out, transition{eventType: corev1.EventTypeWarning, reason: keymintv1alpha1.ReasonSuspended,
			note: fmt.Sprintf("key %s of user %s suspended: the user lost access to API keys; its Secret is deleted", st.KeyID, after.Spec.User)})
	}
	if apimeta.IsStatusConditionTrue(st.Conditions, keymintv1alpha1.ConditionExpiringSoon) &&
		!apimeta.IsStatusConditionTrue(before.Conditions, keymintv1alpha1.ConditionExpiringSoon) {
		c := apimeta.FindStatusCondition(st.Conditions, keymintv1alpha1.ConditionExpiringSoon)
		out = append(out, transition{eventType: corev1.EventTypeWarning, reason: keymintv1alpha1.ReasonExpiringSoon, note: c.Message})
	}
	out = append(out, rotationTransitions(before, after)...)
	reason, was := after.Status.ReadyReason(), before.ReadyReason()
	for _, w := range warnings {
		if reason == w && was != w {
			out = append(out, transition{eventType: corev1.EventTypeWarning, reason: w, note: after.Status.ReadyMessage()})
		}
	}
	return out
}

// The second road: what keymint observes that no status change shows, an
// APIKey gone or a Secret planted, one function each. Their records go
// through lifecycle.record like the transitions'.

// deletion is the revocation of a deleted key; how says how it went.
func deletion(key *keymintv1alpha1.APIKey, how string) transition {
	return transition{eventType: corev1.EventTypeNormal, reason: keymintv1alpha1.ReasonDeleted,
		note: fmt.Sprintf("key %s of user %s revoked: %s", keyIDText(key), key.Spec.User, how)}
}

// untrustedSecret is a Secret that claimed key but is not its current one
// (why says how it fails), deleted without its key being trusted.
func untrustedSecret(secret *corev1.Secret, why string) transition {
	return transition{eventType: corev1.EventTypeWarning, reason: keymintv1alpha1.ReasonUntrustedSecret,
		note: fmt.Sprintf("Secret %s/%s claimed this APIKey but %s; it was deleted and its key is not this APIKey's",
			secret.Namespace, secret.Name, why)}
}

// switched is a key switched off or on, by the user the admission policy
// stamped in spec.stateChangedBy, for spec.stateReason.
func switched(key *keymintv1alpha1.APIKey, reason, how string) transition {
	note := fmt.Sprintf("key %s of user %s %s by %s", key.Status.KeyID, key.Spec.User, how, cmp.Or(key.Spec.StateChangedBy, audit.UnknownActor))
	if key.Spec.StateReason != "" {
		note += ": " + key.Spec.StateReason
	}
	return transition{eventType: corev1.EventTypeNormal, reason: reason, note: note, actor: key.Spec.StateChangedBy}
}

// inactiveText tells that a key was issued switched off.
func inactiveText(phase keymintv1alpha1.Phase) string {
	if phase == keymintv1alpha1.PhaseInactive {
		return "; it is inactive (spec.state) until switched on"
	}
	return ""
}

// reissueText warns that a reissue does not reach running Pods: the Secret
// is immutable, and the kubelet does not refresh what it mounted of it
// (make e2e, TestAMountedKeyAfterAReissue).
func reissueText(reason string) string {
	if reason == keymintv1alpha1.ReasonReissued {
		return "; Pods that mount the Secret keep the previous key until they are replaced"
	}
	return ""
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

// lifecycle records what happens to keys: an audit record, durable first,
// then the Event that mirrors it. It owns the records' IDs. Messages name
// key IDs, users and expiries, never a key.
type lifecycle struct {
	events events.EventRecorder
	// audit receives the records; nil records nothing.
	audit audit.Writer
}

// record writes the record of something that happened to key at now,
// then emits its Event. The controller cannot know who caused what it sees,
// so the actor is "unknown"; the API server's audit stream names it. An
// error means the record is not durable yet: the caller must not show the
// change (write status, remove a finalizer) until a retry writes it.
func (l lifecycle) record(ctx context.Context, key *keymintv1alpha1.APIKey, now time.Time, t transition) error {
	return l.recordAbout(ctx, key, now, t, "")
}

// recordAbout is record for what happened to an object of the key's
// (about: its UID), such as a Secret found planted: one record per object.
func (l lifecycle) recordAbout(ctx context.Context, key *keymintv1alpha1.APIKey, now time.Time, t transition, about string) error {
	if l.audit != nil {
		id := recordID(key, t.reason, about)
		err := l.audit.Write([]audit.Record{{
			ID:        id,
			Time:      now.UTC(),
			Action:    audit.Action(t.reason),
			Actor:     audit.Actor{Username: cmp.Or(t.actor, audit.UnknownActor)},
			Namespace: key.Namespace,
			Name:      key.Name,
			UID:       string(key.UID),
			User:      key.Spec.User,
			KeyID:     key.Status.KeyID,
			AuditID:   id,
			Message:   t.note,
		}})
		if err != nil {
			log.FromContext(ctx).Error(err, "writing an audit record failed; retrying", "action", t.reason)
			return fmt.Errorf("writing the audit record %s: %w", t.reason, err)
		}
	}
	l.events.Eventf(key, nil, t.eventType, t.reason, t.reason, "%s", t.note)
	return nil
}

// recordID names what a record is about, the same on every replica and
// every retry, so that the audit log keeps one record and a reader of stdout
// can drop the repeats: an issue or a suspension per key ID, an expiry or a
// deletion per APIKey, a rotation's records per revision, and a warning, which can recur, per the APIKey's
// version it was seen on (a retry sees the same version, since the status
// is written only after the record), or per object it is about.
func recordID(key *keymintv1alpha1.APIKey, reason, about string) string {
	uid := string(key.UID)
	if about != "" {
		return audit.KeyRecordID(uid, reason, about)
	}
	switch reason {
	case keymintv1alpha1.ReasonIssued, keymintv1alpha1.ReasonReissued, keymintv1alpha1.ReasonSuspended:
		return audit.KeyRecordID(uid, reason, key.Status.KeyID)
	case keymintv1alpha1.ReasonExpired, keymintv1alpha1.ReasonDeleted, keymintv1alpha1.ReasonExpiringSoon:
		return audit.KeyRecordID(uid, reason, "")
	case keymintv1alpha1.ReasonRenewed, keymintv1alpha1.ReasonPreviousKeyRetired, keymintv1alpha1.ReasonPreviousKeyInUse:
		return audit.KeyRecordID(uid, reason, "revision-"+strconv.FormatInt(key.Status.Revision, 10))
	case keymintv1alpha1.ReasonRotationBlocked:
		why := ""
		if c := apimeta.FindStatusCondition(key.Status.Conditions, keymintv1alpha1.ConditionRotationBlocked); c != nil {
			why = "/" + c.Reason
		}
		return audit.KeyRecordID(uid, reason, "revision-"+strconv.FormatInt(key.Status.Revision, 10)+why)
	}
	return audit.KeyRecordID(uid, reason, "rv"+key.ResourceVersion)
}

func (r *APIKeyReconciler) lifecycle() lifecycle {
	return lifecycle{events: r.Recorder, audit: r.Audit}
}
