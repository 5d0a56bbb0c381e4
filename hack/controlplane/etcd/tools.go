//go:build tools

// Package etcd pins the etcd server that tests and the demo run.
// hack/controlplane.sh builds it from the Go module proxy into bin/.
package etcd

import (
	_ "go.etcd.io/etcd/server/v3"
)
