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

build() { # module-dir output package...
	local dir=$1 bin=$2
	shift 2
	if [[ -x $out/$bin ]]; then
		return
	fi
	echo "building $bin into $out (first time only: several minutes)" >&2
	(cd "$root/hack/controlplane/$dir" && go build -trimpath -ldflags "$LDFLAGS" -o "$out/$bin.tmp" "$@")
	mv "$out/$bin.tmp" "$out/$bin"
}

minor=${K8S_VERSION#v1.}
minor=${minor%%.*}
LDFLAGS="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
build kube kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
build kube kubectl k8s.io/kubernetes/cmd/kubectl
LDFLAGS="-s -w"
build etcd etcd go.etcd.io/etcd/server/v3
