# shellcheck shell=bash
# Sourced by hack/controlplane.sh and hack/e2e/build.sh: builds the commands
# pinned by the tools modules under hack/controlplane from the Go module
# proxy, each once (a later run finds it built).

# The Kubernetes release of hack/controlplane/{kube,node}/go.mod, and the
# link flags that give its binaries their version.
K8S_VERSION=v1.37.2
_minor=${K8S_VERSION#v1.}
_minor=${_minor%%.*}
# shellcheck disable=SC2034 # used by the scripts that source this one
KUBE_LDFLAGS="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$_minor -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
_tools=$(cd "$(dirname "${BASH_SOURCE[0]}")/../controlplane" && pwd)

# gobuild DIR OUT LDFLAGS NAME=PACKAGE...: the commands of tools module
# hack/controlplane/DIR whose binary NAME is missing from OUT, in one go
# build (they share most of their packages). A command is named as its
# package unless it builds alone (etcd's package is its module's server/v3).
gobuild() {
	local dir=$1 out=$2 ldflags=$3 tmp target spec pkgs=() names=()
	shift 3
	for spec in "$@"; do
		[[ -x $out/${spec%%=*} ]] || { names+=("${spec%%=*}"); pkgs+=("${spec#*=}"); }
	done
	((${#pkgs[@]})) || return 0
	echo "building ${names[*]} into $out (first time only: several minutes)" >&2
	mkdir -p "$out"
	tmp=$(mktemp -d "$out/.build.XXXXXX")
	target=$tmp/
	((${#pkgs[@]} > 1)) || target=$tmp/${names[0]}
	(cd "$_tools/$dir" && go build -trimpath -ldflags "$ldflags" -o "$target" "${pkgs[@]}")
	mv "$tmp"/* "$out/"
	rmdir "$tmp"
}
