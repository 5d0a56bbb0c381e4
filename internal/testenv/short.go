package testenv

import "testing"

// RequireControlPlane skips t under -short (`make test-unit`), which runs
// only the tests that need neither a control plane nor the tools built
// into bin/. A package's TestMain starts no control plane under -short.
func RequireControlPlane(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a control plane or bin/ tools; -short runs without them")
	}
}
