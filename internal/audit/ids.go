package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"strings"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
)

// Record IDs name what a record is about, the same on every replica and
// every retry, so that the audit log keeps one record of it and a reader of
// stdout can drop the repeats. Every producer names its records here: the
// controller and the verifier's usage writer with KeyRecordID, the audit
// webhook with RequestRecordID.

// KeyRecordID is the ID of keymint's own record of what happened to the
// APIKey with uid: what is the record's reason or action, about what tells
// one such record from the next (a key ID, an object's UID, a time bucket;
// empty for what happens once to an APIKey, such as its deletion).
func KeyRecordID(uid, what, about string) string {
	if about == "" {
		return recordID("keymint", uid, what)
	}
	return recordID("keymint", uid, what, about)
}

// RequestRecordID is the ID of the record of what one audited request did
// to one key (about: its APIKey UID and key ID; none for a request about a
// scope). vouched is what the API server vouches for about the request:
// who, what, on which object, at which stage and when. A client chooses
// its Audit-ID header, so an audit ID alone names nothing: two requests
// that share one are two records, and only the same event sent again (a
// retried batch) is one.
func RequestRecordID(vouched any, about ...string) string {
	raw, _ := json.Marshal([]any{vouched, about})
	sum := sha256.Sum256(raw)
	return recordID("request", hex.EncodeToString(sum[:20]))
}

func recordID(parts ...string) string { return strings.Join(parts, "/") }

// Name names the record r wherever it is kept or served: a hash of its ID,
// or, for a record without one, of all it says, which a retry says again.
// A record written twice has one name, so it is stored once.
func Name(r Record) string {
	id := []byte(r.ID)
	if r.ID == "" {
		id, _ = json.Marshal(r)
	}
	sum := sha256.Sum256(id)
	return "r-" + hex.EncodeToString(sum[:20])
}

// Labels are what the trail is selected and kept by: the APIKey's
// namespace and name (an APIKey name is at most 63 characters), the action,
// and the record's day (YYYYMMDD, UTC) and time (Unix seconds).
func Labels(r Record) map[string]string {
	t := r.Time.UTC()
	l := map[string]string{
		keymintv1alpha1.LabelAuditNamespace: r.Namespace,
		keymintv1alpha1.LabelAuditAction:    string(r.Action),
		keymintv1alpha1.LabelAuditDay:       t.Format("20060102"),
		keymintv1alpha1.LabelAuditTime:      strconv.FormatInt(t.Unix(), 10),
	}
	if len(r.Name) <= 63 {
		l[keymintv1alpha1.LabelAPIKey] = r.Name
	}
	return l
}
