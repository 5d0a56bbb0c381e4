#!/usr/bin/env bash
# make e2e: keymint installed with its Helm chart on a one-node cluster
# (hack/e2e/cluster.sh), and the tests of test/e2e against it. The cluster
# is torn down however the run ends: a failure, Ctrl-C or SIGTERM.
#   E2E_TEST_FLAGS   flags for the test binary, e.g. -test.run=TestGatewayPod
#   E2E_KEEP=1       leave the cluster up after the tests (hack/e2e/cluster.sh down removes it)
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
export E2E_DIR=${E2E_DIR:-/tmp/keymint-e2e}
[[ $(id -u) == 0 ]] || { echo "make e2e needs root (a network namespace, a kubelet, containerd): run it as root" >&2; exit 1; }
"$root/hack/need-packages.sh" "make e2e's node" runc=runc iptables=iptables nginx=nginx

start=$SECONDS
"$root/hack/controlplane.sh" "$root/bin/k8s" &
controlplane=$!
"$root/hack/e2e/build.sh" "$root/bin/node" &
node=$!
make -s -C "$root" helm &
helm=$!
(cd "$root" && go test -c -tags e2e -o bin/e2e.test ./test/e2e && go build -o bin/kubectl-apikey ./cmd/kubectl-apikey) &
tests=$!
status=0
for job in $controlplane $node $helm $tests; do
	wait "$job" || status=$?
done
((status == 0)) || { echo "e2e: a build failed (see above)" >&2; exit "$status"; }
echo "e2e: built in $((SECONDS - start)) s" >&2

if [[ ${E2E_KEEP:-} != 1 ]]; then
	trap '"$root/hack/e2e/cluster.sh" down' EXIT
	trap 'exit 130' INT TERM
fi
"$root/hack/e2e/cluster.sh" up
cd "$root/test/e2e"
# shellcheck disable=SC2086 # E2E_TEST_FLAGS holds several flags
"$root/hack/e2e/cluster.sh" exec env KEYMINT_E2E=1 KUBECONFIG="$E2E_DIR/admin.kubeconfig" E2E_DIR="$E2E_DIR" \
	"$root/bin/e2e.test" -test.v -test.timeout=20m ${E2E_TEST_FLAGS:-}
echo "e2e: passed in $((SECONDS - start)) s" >&2
