#!/usr/bin/env bash
# Builds the control plane that tests and the demo run on, from the Go module
# proxy, into bin/k8s (once; later runs find it there), with hack/lib/gobuild.sh:
#   kube-apiserver and kubectl from k8s.io/kubernetes (hack/controlplane/kube),
#   etcd from go.etcd.io/etcd/server/v3 (hack/controlplane/etcd).
# No binary download site is needed. The versions are pinned by the go.mod
# files of the two tool modules; K8S_VERSION (gobuild.sh) must match kube/go.mod's.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/bin/k8s}
# shellcheck source=hack/lib/gobuild.sh
source "$root/hack/lib/gobuild.sh"

# The two modules build side by side.
gobuild kube "$out" "$KUBE_LDFLAGS" kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver kubectl=k8s.io/kubernetes/cmd/kubectl &
kube=$!
gobuild etcd "$out" "-s -w" etcd=go.etcd.io/etcd/server/v3 &
etcd=$!
status=0
wait $kube || status=$?
wait $etcd || status=$?
exit $status
