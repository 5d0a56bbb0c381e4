#!/usr/bin/env bash
# The gateway end-to-end test (internal/verify/nginx_test.go) runs Debian's
# nginx in front of the verifier. `make test` calls this first: it installs
# nginx when it is missing and we are root, or else stops at once with one
# line that says what to install.
set -euo pipefail
if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then
	exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
	echo "make test needs nginx for the gateway test: install Debian's nginx package (sudo apt-get install nginx), then run make test again" >&2
	exit 1
fi
echo "installing nginx (Debian's package) for the gateway end-to-end test" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq nginx >/dev/null 2>&1 ||
	{ apt-get update -qq && apt-get install -y -qq nginx >/dev/null; }
