package main

import (
	"os"
	"strings"
	"testing"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
)

// TestConfigRepeatsTheContract: the YAML in config/ that repeats a
// contract string of api/v1alpha1 repeats it exactly, so a rename in Go
// cannot leave the admission policy or the user role behind.
func TestConfigRepeatsTheContract(t *testing.T) {
	for _, c := range []struct{ file, want string }{
		{"config/admission/requester.yaml", `"` + keymintv1alpha1.Finalizer + `"`},
		{"config/access/roles.yaml", `"` + keymintv1alpha1.VerbUse + `"]`},
	} {
		raw, err := os.ReadFile(c.file)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(raw), c.want) {
			t.Errorf("%s does not contain %s", c.file, c.want)
		}
	}
}
