//go:build tools

// Package node pins the node and cluster components of `make e2e`'s one-node
// cluster (the same Kubernetes release as hack/controlplane/kube).
// hack/e2e/build.sh builds them from the Go module proxy into bin/node.
package node

import (
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
