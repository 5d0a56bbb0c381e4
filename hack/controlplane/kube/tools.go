//go:build tools

// Package kube pins the kube-apiserver and kubectl that tests and the demo run.
// hack/controlplane.sh builds them from the Go module proxy into bin/.
package kube

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
