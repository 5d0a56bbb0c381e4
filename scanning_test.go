package main

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/keymint/keymint/internal/keys"
)

// TestGitleaksRuleFindsKeymintKeys runs the regular expression of
// config/scanning/gitleaks.toml over a fixture: a real key is found, a key
// with a broken checksum has the shape (the rule cannot compute a CRC, and
// `kubectl apikey check` tells them apart), and look-alikes are not found.
func TestGitleaksRuleFindsKeymintKeys(t *testing.T) {
	raw, err := os.ReadFile("config/scanning/gitleaks.toml")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^regex = '''(.*)'''$`).FindSubmatch(raw)
	if m == nil {
		t.Fatal("no regex in config/scanning/gitleaks.toml")
	}
	rule := regexp.MustCompile(string(m[1]))
	real, err := keys.Mint()
	if err != nil {
		t.Fatal(err)
	}
	swap := "a"
	if strings.HasSuffix(real.Value, "a") {
		swap = "b"
	}
	broken := real.Value[:len(real.Value)-1] + swap
	if keys.Validate(broken) == nil {
		t.Fatal("the broken key validates")
	}
	body := real.Value[len(keys.Prefix):]
	fixture := map[string]bool{
		"API_KEY=" + real.Value + "\n":       true,
		`{"token": "` + real.Value + `"}`:    true,
		"export KEY=" + broken:               true, // the shape; check refuses it
		"kmk_short":                          false,
		"kmk_" + body[:len(body)-1]:          false, // one short
		"kmk_" + body + "x":                  false, // one long
		"xkmk_" + body:                       false, // inside another token
		"kmk_" + body[:20] + "-" + body[21:]: false, // not base62
		"sha256:" + strings.Repeat("a", 64):  false,
		"kid_" + strings.Repeat("A", 13):     false,
	}
	for text, want := range fixture {
		got := rule.FindString(text)
		if (got != "") != want {
			t.Errorf("the rule on %q found %q, want a finding: %v", redact(text), redact(got), want)
		}
		if want && got != "" && !strings.HasPrefix(got, keys.Prefix) {
			t.Errorf("the finding %q is not a key", redact(got))
		}
	}
}

// redact keeps a key out of the test's output.
func redact(s string) string {
	if i := strings.Index(s, keys.Prefix); i >= 0 && len(s) > i+12 {
		return s[:i+8] + "..."
	}
	return s
}
