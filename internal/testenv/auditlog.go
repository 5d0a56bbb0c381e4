package testenv

import (
	"path/filepath"
	"testing"

	"github.com/keymint/keymint/internal/audit"
)

// OpenLog opens an audit log of the test's own, closed when it ends.
func OpenLog(t testing.TB) *audit.File {
	t.Helper()
	f, err := audit.OpenFile(filepath.Join(t.TempDir(), "audit.log"), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return f
}

// Records returns the records with action on log about keys in namespace.
func Records(t testing.TB, log *audit.File, namespace string, action audit.Action) []audit.Record {
	t.Helper()
	var out []audit.Record
	if err := log.Each(audit.Filter{Namespace: namespace, Action: action}, func(r audit.Record) error {
		out = append(out, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}
