package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
)

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
	return "request/" + hex.EncodeToString(sum[:20])
}
