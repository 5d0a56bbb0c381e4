// Package audit keeps the audit trail of API keys: one JSON record per
// issue, view, expiry or deletion, written durably to an append-only file
// (and to stdout), and exported with filters as JSON lines or CSV. Records
// never hold key material.
package audit

import (
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
)

// Action is what happened to a key.
type Action string

// Actions. The controller writes the lifecycle ones; the API server's audit
// stream supplies views and the actors of deletions.
// The lifecycle actions are the controller's Event reasons.
const (
	ActionIssued            Action = keymintv1alpha1.ReasonIssued
	ActionReissued          Action = keymintv1alpha1.ReasonReissued
	ActionKeyLimitReached   Action = keymintv1alpha1.ReasonKeyLimitReached
	ActionExpired           Action = keymintv1alpha1.ReasonExpired
	ActionDeleted           Action = keymintv1alpha1.ReasonDeleted
	ActionSuspended         Action = keymintv1alpha1.ReasonSuspended
	ActionUntrustedSecret   Action = keymintv1alpha1.ReasonUntrustedSecret
	ActionInvalidExpiration Action = keymintv1alpha1.ReasonInvalidExpiration
	ActionSecretConflict    Action = keymintv1alpha1.ReasonSecretConflict
	ActionAccessDenied      Action = keymintv1alpha1.ReasonAccessDenied
	ActionViewed            Action = "Viewed"
	ActionViewDenied        Action = "ViewDenied"
	ActionMounted           Action = "Mounted"
	ActionExpiringSoon      Action = keymintv1alpha1.ReasonExpiringSoon
	ActionDeactivated       Action = keymintv1alpha1.ReasonDeactivated
	ActionReactivated       Action = keymintv1alpha1.ReasonReactivated
	// ActionUsed: a valid key was presented to the verifier (once per key
	// per --last-used-interval).
	ActionUsed Action = "Used"
	// ActionRejectedUse: an expired, suspended or inactive key was presented (as
	// often at the most).
	ActionRejectedUse Action = "RejectedUse"
)

// Actions are every action a record can have.
var Actions = []Action{
	ActionIssued, ActionReissued, ActionKeyLimitReached, ActionExpired, ActionDeleted, ActionSuspended,
	ActionInvalidExpiration, ActionSecretConflict, ActionAccessDenied, ActionUntrustedSecret,
	ActionViewed, ActionMounted, ActionViewDenied, ActionExpiringSoon, ActionUsed, ActionRejectedUse,
	ActionDeactivated, ActionReactivated,
}

// ValidAction says whether a is an action records have, and lists them if
// not.
func ValidAction(a Action) error {
	if slices.Contains(Actions, a) {
		return nil
	}
	return fmt.Errorf("no record has action %q; the actions are %s", a, ActionNames())
}

// ActionNames lists Actions for people: "Issued, Reissued, ...".
func ActionNames() string {
	names := make([]string, len(Actions))
	for i, a := range Actions {
		names[i] = string(a)
	}
	return strings.Join(names, ", ")
}

// UnknownActor is the actor of a record only the API server could name.
const UnknownActor = "unknown"

// Actor is who did it.
type Actor struct {
	Username string   `json:"username"`
	Groups   []string `json:"groups,omitempty"`
}

// Scope is what a refused list or watch asked for: it returned nothing, so
// it names no key.
type Scope struct {
	// Namespace is empty for a request across all namespaces.
	Namespace     string `json:"namespace,omitempty"`
	LabelSelector string `json:"labelSelector,omitempty"`
	FieldSelector string `json:"fieldSelector,omitempty"`
	// Keys is the number of keys whose Secrets the request could have
	// returned.
	Keys int `json:"keys"`
}

// Repeats summarises the refusals of one actor after its first, within
// one window: each refused request is counted, none written on its own.
type Repeats struct {
	Count int       `json:"count"`
	First time.Time `json:"first"`
	Last  time.Time `json:"last"`
}

// Record is one entry of the audit trail.
type Record struct {
	// ID names the event the record is about, the same on every replica
	// and every retry (see WithIDs): a reader of stdout, where a record can
	// appear more than once, keeps one per ID.
	ID     string    `json:"id,omitempty"`
	Time   time.Time `json:"time"`
	Action Action    `json:"action"`
	Actor  Actor     `json:"actor"`
	// Impersonator is the authenticated user who acted as Actor.
	Impersonator *Actor   `json:"impersonator,omitempty"`
	Namespace    string   `json:"namespace"`
	Name         string   `json:"name"`
	UID          string   `json:"uid,omitempty"`
	User         string   `json:"user"`
	KeyID        string   `json:"keyID,omitempty"`
	SourceIPs    []string `json:"sourceIPs,omitempty"`
	UserAgent    string   `json:"userAgent,omitempty"`
	AuditID      string   `json:"auditID,omitempty"`
	Message      string   `json:"message,omitempty"`
	Scope        *Scope   `json:"scope,omitempty"`
	Repeats      *Repeats `json:"repeats,omitempty"`
}

// MaxTextBytes bounds each free-text field a request supplies (user agent,
// selectors, names others choose), so no request can make its record big.
const MaxTextBytes = 256

// Truncate cuts s to MaxTextBytes, at a character boundary.
func Truncate(s string) string {
	if len(s) <= MaxTextBytes {
		return s
	}
	cut := MaxTextBytes
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

// Filter selects records for export; zero fields match everything.
type Filter struct {
	From, To  time.Time
	User      string
	Namespace string
	Name      string
	Action    Action
}

// Match reports whether r passes f. From is inclusive, To exclusive.
func (f Filter) Match(r Record) bool {
	switch {
	case !f.From.IsZero() && r.Time.Before(f.From),
		!f.To.IsZero() && !r.Time.Before(f.To),
		f.User != "" && r.User != f.User,
		f.Namespace != "" && r.Namespace != f.Namespace,
		f.Name != "" && r.Name != f.Name,
		f.Action != "" && r.Action != f.Action:
		return false
	}
	return true
}

// dedupKey identifies the event a record is about: the API server's audit
// ID (or the controller's record ID) and the key, since one request (a list)
// can be a view of many keys, and one watch a view of several keys of one
// APIKey (a Secret deleted and minted again). A record without an audit ID
// is never deduplicated.
func (r Record) dedupKey() string {
	switch {
	case r.ID != "":
		return r.ID
	case r.AuditID == "":
		return ""
	}
	return r.AuditID + "/" + r.UID + "/" + r.KeyID
}

// WithIDs gives every record with an audit ID its stable ID.
func WithIDs(records []Record) []Record {
	for i := range records {
		if records[i].ID == "" {
			records[i].ID = records[i].dedupKey()
		}
	}
	return records
}
