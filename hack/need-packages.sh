#!/usr/bin/env bash
# need-packages.sh WHAT COMMAND=PACKAGE...: installs the Debian packages of
# the commands that are missing, when we are root, or else stops at once with
# one line that says what to install. WHAT says what needs them.
#   make test:  hack/need-packages.sh "the gateway test" nginx=nginx
#   make e2e:   hack/need-packages.sh "make e2e's node" runc=runc iptables=iptables nginx=nginx
set -euo pipefail
what=$1
shift
missing=()
for spec in "$@"; do
	cmd=${spec%%=*}
	command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || missing+=("${spec#*=}")
done
((${#missing[@]})) || exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
	echo "$what needs Debian's ${missing[*]}: sudo apt-get install ${missing[*]}, then run it again" >&2
	exit 1
fi
echo "installing ${missing[*]} (Debian's packages) for $what" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 ||
	{ apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null; }
