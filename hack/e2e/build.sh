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
K8S_VERSION=v1.37.2 # as in hack/controlplane.sh and hack/controlplane/node/go.mod
mkdir -p "$out/cni"

# build DIR OUT LDFLAGS PACKAGE...: the packages whose binary is missing from OUT.
build() {
	local dir=$1 dest=$2 ldflags=$3 tmp pkgs=()
	shift 3
	for pkg in "$@"; do
		[[ -x $dest/${pkg##*/} ]] || pkgs+=("$pkg")
	done
	((${#pkgs[@]})) || return 0
	echo "building ${pkgs[*]##*/} into $dest (first time only: several minutes)" >&2
	tmp=$(mktemp -d "$out/.build.XXXXXX")
	if ((${#pkgs[@]} > 1)); then
		(cd "$root/hack/controlplane/$dir" && nice go build -trimpath -ldflags "$ldflags" -o "$tmp/" "${pkgs[@]}")
	else
		(cd "$root/hack/controlplane/$dir" && nice go build -trimpath -ldflags "$ldflags" -o "$tmp/${pkgs[0]##*/}" "${pkgs[0]}")
	fi
	mv "$tmp"/* "$dest/"
	rmdir "$tmp"
}

minor=${K8S_VERSION#v1.}
minor=${minor%%.*}
KUBE_LDFLAGS="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
build node "$out" "$KUBE_LDFLAGS" k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-controller-manager \
	k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kube-proxy &
kube=$!
{
	build runtime "$out" "-s -w" github.com/containerd/containerd/v2/cmd/containerd github.com/containerd/containerd/v2/cmd/ctr \
		github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 github.com/google/go-containerregistry/cmd/crane
	build runtime "$out/cni" "-s -w" github.com/containernetworking/plugins/plugins/main/bridge \
		github.com/containernetworking/plugins/plugins/main/loopback github.com/containernetworking/plugins/plugins/ipam/host-local \
		github.com/containernetworking/plugins/plugins/meta/portmap
} &
runtime=$!
status=0
wait $kube || status=$?
wait $runtime || status=$?
exit $status
