package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestPluginLinksNeitherTheServerNorTheManager: the plugin is a client. It
// must not carry the audit webhook, the certificate watcher or the
// controller-runtime manager into every user's kubectl.
func TestPluginLinksNeitherTheServerNorTheManager(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for pkg := range strings.FieldsSeq(string(out)) {
		for _, banned := range []string{
			"github.com/keymint/keymint/internal/auditserver",
			"github.com/keymint/keymint/controllers",
			"sigs.k8s.io/controller-runtime/pkg/manager",
			"sigs.k8s.io/controller-runtime/pkg/certwatcher",
		} {
			if pkg == banned {
				t.Errorf("the plugin links %s", pkg)
			}
		}
	}
}
