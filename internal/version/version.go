// Package version is keymint's release, shared by the manager and the
// plugin; a release sets it with
// -ldflags "-X github.com/keymint/keymint/internal/version.Version=v...".
package version

// Version is the release of this build.
var Version = "v0.1.0"
