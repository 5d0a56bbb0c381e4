package app

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keymint/keymint/internal/audit"
	"github.com/keymint/keymint/internal/testenv"
)

// TestNewFailsCleanly: a failure after the manager is created (here the
// audit log cannot be opened) is an error that says what failed, not a
// panic, and what New opened is closed.
func TestNewFailsCleanly(t *testing.T) {
	testenv.RequireControlPlane(t)
	ctx := context.Background()
	env, err := testenv.Start(ctx, filepath.Join("..", "..", "config"), Scheme)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })

	o := TestOptions(testenv.SlotNamespace)
	o.AuditPath = filepath.Join(t.TempDir(), "missing", "audit.log")
	m, err := New(ctx, env.Config, o, Deps{AuditOut: audit.Multi{}, SeveralManagers: true})
	if err == nil || m != nil {
		t.Fatalf("New = %v, %v; want an error", m, err)
	}
	if !strings.Contains(err.Error(), "opening the audit log") {
		t.Errorf("the error does not say what failed: %v", err)
	}

	// The same options with a log it can open build every component the
	// options turn on.
	o.AuditPath = filepath.Join(t.TempDir(), "audit.log")
	o.ProbeAddr = "127.0.0.1:0"
	if m, err = New(ctx, env.Config, o, Deps{AuditOut: audit.Multi{}, SeveralManagers: true}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(m.Components, ","); got != ComponentController+","+ComponentProbes {
		t.Errorf("components %s", got)
	}
	m.close()
}
