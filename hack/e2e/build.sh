#!/usr/bin/env bash
# Builds what `make e2e`'s node runs, from the Go module proxy, into bin/node
# (once; later runs find it there):
#   kubelet, kube-controller-manager, kube-scheduler, kube-proxy (hack/controlplane/node),
#   containerd, ctr, containerd-shim-runc-v2, crane and the CNI plugins (hack/controlplane/runtime).
# kube-apiserver, etcd and kubectl come from hack/controlplane.sh (bin/k8s).
# Debian's runc and iptables are installed by hack/e2e/need-packages.sh.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$root/bin/node}
# shellcheck source=hack/lib/gobuild.sh
source "$root/hack/lib/gobuild.sh"

k=k8s.io/kubernetes/cmd
gobuild node "$out" "$KUBE_LDFLAGS" kubelet=$k/kubelet kube-controller-manager=$k/kube-controller-manager \
	kube-scheduler=$k/kube-scheduler kube-proxy=$k/kube-proxy &
kube=$!
{
	c=github.com/containerd/containerd/v2/cmd
	gobuild runtime "$out" "-s -w" containerd=$c/containerd ctr=$c/ctr containerd-shim-runc-v2=$c/containerd-shim-runc-v2 \
		crane=github.com/google/go-containerregistry/cmd/crane
	p=github.com/containernetworking/plugins/plugins
	gobuild runtime "$out/cni" "-s -w" bridge=$p/main/bridge loopback=$p/main/loopback host-local=$p/ipam/host-local \
		portmap=$p/meta/portmap
} &
runtime=$!
status=0
wait $kube || status=$?
wait $runtime || status=$?
exit $status
