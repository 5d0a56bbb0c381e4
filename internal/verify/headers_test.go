package verify

import (
	"net/textproto"
	"testing"
)

// TestHeaderNamesAreCanonical: the handler sets them without
// canonicalising; a name not in canonical form would be sent as written
// and missed by gateways that look it up canonically.
func TestHeaderNamesAreCanonical(t *testing.T) {
	for _, h := range []string{HeaderUser, HeaderNamespace, HeaderName, HeaderKeyID, HeaderExpiresAt, "Cache-Control", "Www-Authenticate", "Content-Type"} {
		if c := textproto.CanonicalMIMEHeaderKey(h); c != h {
			t.Errorf("%s is not canonical: %s", h, c)
		}
	}
}
