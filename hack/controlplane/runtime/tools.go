//go:build tools

// Package runtime pins the container runtime of `make e2e`'s node: containerd
// with ctr and its runc shim, the CNI plugins, and crane (which makes the
// images without a registry or an engine). hack/e2e/build.sh builds them into
// bin/node.
package runtime

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
	_ "github.com/containerd/containerd/v2/cmd/ctr"
	_ "github.com/containernetworking/plugins/plugins/ipam/host-local"
	_ "github.com/containernetworking/plugins/plugins/main/bridge"
	_ "github.com/containernetworking/plugins/plugins/main/loopback"
	_ "github.com/containernetworking/plugins/plugins/meta/portmap"
	_ "github.com/google/go-containerregistry/cmd/crane"
)
