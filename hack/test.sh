#!/usr/bin/env bash
# The tests of `make test`, arranged for a fresh machine, where building
# the tools is most of the run. The test packages run one at a time and
# leave much of the CPU idle while they wait on their API servers, so
# what they do not need at once runs beside them at the lowest CPU
# priority (nice 19), on that idle CPU: the lint (and building
# golangci-lint), and building helm and kustomize, which only the root
# package's tests use; those run last. With warm caches all of it takes
# seconds. Usage: hack/test.sh (GOTEST_FLAGS from the environment).
set -euo pipefail
cd "$(dirname "$0")/.."
flags=(${GOTEST_FLAGS:-})
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

background() { # name command...
	local name=$1
	shift
	(nice -n 19 "$@" >"$logs/$name.log" 2>&1 && echo 0 >"$logs/$name.rc" || echo $? >"$logs/$name.rc") &
}
finish() { # name: waits for it, shows its output, and fails if it failed
	while [[ ! -f $logs/$1.rc ]]; do sleep 1; done
	cat "$logs/$1.log"
	[[ $(cat "$logs/$1.rc") == 0 ]] || { echo "hack/test.sh: $1 failed" >&2; return 1; }
}

background lint make --no-print-directory lint
background root-tools make --no-print-directory -j2 helm kustomize

failed=0
module=$(go list -m)
mapfile -t packages < <(go list ./... | grep -vx "$module")
echo "go test -p 1 ${flags[*]} <every package but the root> -skip '^TestShortChaos\$' -coverprofile cover.out"
go test -p 1 "${flags[@]}" "${packages[@]}" -skip '^TestShortChaos$' -coverprofile cover.out || failed=1
finish root-tools || failed=1
echo "go test ${flags[*]} . -coverprofile cover-root.out"
go test "${flags[@]}" . -coverprofile cover-root.out || failed=1
echo "go test ${flags[*]} ./hack/chaos -run '^TestShortChaos\$' -count=1"
go test "${flags[@]}" ./hack/chaos -run '^TestShortChaos$' -count=1 || failed=1
echo "golangci-lint (run beside the tests):"
finish lint || failed=1
exit $failed
