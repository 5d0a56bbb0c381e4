package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestShortChaos is the short chaos run of `make test`: 10 SIGKILLs during
// churn and audit traffic, two managers for 9 s, and a 30 s API server
// outage, with every invariant checked. `make test` runs it on its own,
// after the other packages, so that it does not load their timing.
func TestShortChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("a minute and more")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	// Kept until the test ends, for the logs a failure points at.
	keepDir = t.TempDir()
	var out bytes.Buffer
	violations, err := run(ctx, config{kills: 10, users: 30, twoManagers: 9 * time.Second, outages: durations{30 * time.Second}}, &out)
	t.Log("\n" + out.String())
	if err != nil {
		for _, log := range []string{"manager.log", "kube-apiserver.log"} {
			raw, _ := os.ReadFile(filepath.Join(keepDir, log))
			t.Logf("the last of %s:\n%s", log, raw[max(0, len(raw)-4000):])
		}
		t.Fatal(err)
	}
	if violations > 0 {
		t.Fatalf("%d invariant violations", violations)
	}
}
