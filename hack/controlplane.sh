#!/usr/bin/env bash
# Builds the control plane that tests and the demo run on, from the Go module
# proxy, into bin/k8s (once; later runs find it there):
#   kube-apiserver and kubectl from k8s.io/kubernetes (hack/controlplane/kube),
#   etcd from go.etcd.io/etcd/server/v3 (hack/controlplane/etcd).
# No binary download site is needed. The versions are pinned by the go.mod
# files of the two tool modules; K8S_VERSION must match the one in kube/go.mod.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/bin/k8s}
K8S_VERSION=v1.37.2
mkdir -p "$out"

# build DIR LDFLAGS NAME=PACKAGE...: the missing binaries of one tool module,
# in one go build (kube-apiserver and kubectl share most of their packages).
build() {
	local dir=$1 ldflags=$2 tmp target pkgs=() names=()
	shift 2
	for spec in "$@"; do
		[[ -x $out/${spec%%=*} ]] || { names+=("${spec%%=*}"); pkgs+=("${spec#*=}"); }
	done
	((${#pkgs[@]})) || return 0
	echo "building ${names[*]} into $out (first time only: several minutes)" >&2
	tmp=$(mktemp -d "$out/.build.XXXXXX")
	# Several packages build into a directory, named as their commands are;
	# one is named here (etcd's command is its module's server/v3).
	target=$tmp/
	((${#pkgs[@]} > 1)) || target=$tmp/${names[0]}
	(cd "$root/hack/controlplane/$dir" && go build -trimpath -ldflags "$ldflags" -o "$target" "${pkgs[@]}")
	mv "$tmp"/* "$out/"
	rmdir "$tmp"
}

minor=${K8S_VERSION#v1.}
minor=${minor%%.*}
KUBE_LDFLAGS="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
# The two modules build side by side.
build kube "$KUBE_LDFLAGS" kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver kubectl=k8s.io/kubernetes/cmd/kubectl &
kube=$!
build etcd "-s -w" etcd=go.etcd.io/etcd/server/v3 &
etcd=$!
status=0
wait $kube || status=$?
wait $etcd || status=$?
exit $status
