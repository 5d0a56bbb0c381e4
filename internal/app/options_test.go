package app

import (
	"flag"
	"strings"
	"testing"
	"time"
)

// TestValidate: every problem of a set of flags at once, each naming its
// flags; the defaults are valid.
func TestValidate(t *testing.T) {
	if err := NewOptions().Validate(); err != nil {
		t.Fatalf("the defaults: %v", err)
	}
	for _, tt := range []struct {
		name string
		args []string
		want []string
	}{
		{"audit endpoint without TLS or client auth", []string{"--audit-bind-address=:9443"}, []string{
			"--audit-bind-address needs --audit-tls-cert-file and --audit-tls-key-file",
			"--audit-bind-address needs --audit-webhook-client-ca-file or --audit-webhook-token-file",
		}},
		{"client CA without names", []string{"--audit-bind-address=:9443", "--audit-tls-cert-file=c", "--audit-tls-key-file=k", "--audit-webhook-client-ca-file=ca"},
			[]string{"--audit-webhook-client-ca-file needs --audit-webhook-client-name"}},
		{"verifier cert without key", []string{"--verify-tls-cert-file=c"}, []string{"--verify-tls-cert-file and --verify-tls-key-file go together"}},
		{"no keys, no workers, no namespace", []string{"--max-keys-per-user=0", "--max-concurrent-reconciles=0", "--slot-namespace="}, []string{
			"--max-keys-per-user must be at least 1", "--max-concurrent-reconciles must be at least 1", "--slot-namespace must name a namespace",
		}},
	} {
		o := NewOptions()
		fs := flag.NewFlagSet("manager", flag.ContinueOnError)
		o.AddFlags(fs)
		if err := fs.Parse(tt.args); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		err := o.Validate()
		if err == nil {
			t.Errorf("%s: valid", tt.name)
			continue
		}
		if got := strings.Count(err.Error(), "\n") + 1; got != len(tt.want) {
			t.Errorf("%s: %d problems, want %d: %v", tt.name, got, len(tt.want), err)
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q does not say %q", tt.name, err, w)
			}
		}
	}
}

// TestFlagsFillOptions: the flags reach the options the manager is built
// from, repeatable ones included, and --expiry-warning takes days.
func TestFlagsFillOptions(t *testing.T) {
	o := NewOptions()
	fs := flag.NewFlagSet("manager", flag.ContinueOnError)
	o.AddFlags(fs)
	err := fs.Parse([]string{"--expiry-warning=7d", "--audit-ignore-user=a", "--audit-ignore-user=b",
		"--audit-webhook-client-name=kube-apiserver", "--max-keys-per-user=3", "--verify-bind-address=0"})
	if err != nil {
		t.Fatal(err)
	}
	if o.ExpiryWarning != 7*24*time.Hour || o.MaxKeysPerUser != 3 || o.Verify.HTTPAddr != "0" ||
		strings.Join(o.Audit.IgnoredUsers, ",") != "a,b" || strings.Join(o.Audit.ClientNames, ",") != "kube-apiserver" {
		t.Fatalf("options: %+v", o)
	}
	if got := fs.Lookup("expiry-warning").DefValue; got != "14d" {
		t.Errorf("--expiry-warning's default shows as %q, want 14d", got)
	}
	if err := fs.Parse([]string{"--expiry-warning=soon"}); err == nil {
		t.Error("--expiry-warning=soon was accepted")
	}
}
