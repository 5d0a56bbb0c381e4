#!/usr/bin/env bash
# The images of `make e2e`, made without a registry on the network or an
# engine: static binaries (and Debian's nginx with its libraries) are put in
# layers with crane against its in-memory registry on the namespace's
# loopback, then imported into the node's containerd.
#   keymint.io/e2e/keymint:dev   the manager, built from this repository (the chart's image)
#   keymint.io/e2e/app:1         hack/e2e/app: the backend and the workload client
#   keymint.io/e2e/nginx:1       Debian's nginx, the gateway
#   keymint.io/e2e/pause:1       the sandbox image (hack/e2e/app as pause)
# Called by cluster.sh up, inside the running cluster's namespace.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
E2E_DIR=${E2E_DIR:-/tmp/keymint-e2e}
NETNS=${E2E_NETNS:-keymint-e2e}
NODE_BIN=$root/bin/node
work=$E2E_DIR/images
rm -rf "$work"
mkdir -p "$work"

# Root filesystems.
mkdir -p "$work/keymint" "$work/app" "$work/pause" "$work/nginx/tmp" "$work/nginx/usr/sbin"
(cd "$root" && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o "$work/keymint/manager" .)
(cd "$root" && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o "$work/app/app" ./hack/e2e/app)
cp "$work/app/app" "$work/pause/pause"
nginx=$(command -v nginx || echo /usr/sbin/nginx)
cp "$nginx" "$work/nginx/usr/sbin/nginx"
# nginx's shared libraries and the dynamic loader, at their paths.
ldd "$nginx" | grep -oE '/[^ ]+' | while read -r lib; do
	mkdir -p "$work/nginx$(dirname "$lib")"
	cp -L "$lib" "$work/nginx$lib"
done
chmod 1777 "$work/nginx/tmp"
# nginx looks its user up even when it runs as root, as here.
mkdir -p "$work/nginx/etc"
printf 'root:x:0:0:root:/:/sbin/nologin\nnobody:x:65534:65534:nobody:/:/sbin/nologin\n' >"$work/nginx/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$work/nginx/etc/group"

port=5000
nsenter --net="/run/netns/$NETNS" "$NODE_BIN/crane" registry serve --address "127.0.0.1:$port" >"$work/registry.log" 2>&1 &
registry=$!
trap 'kill $registry 2>/dev/null || true' EXIT
crane() { nsenter --net="/run/netns/$NETNS" "$NODE_BIN/crane" "$@"; }
until crane catalog --insecure "127.0.0.1:$port" >/dev/null 2>&1; do sleep 0.1; done

# image NAME:TAG DIR ENTRYPOINT USER
image() {
	local ref=127.0.0.1:$port/$1
	tar -C "$work/$2" --owner=0 --group=0 -cf "$work/$2.tar" .
	{
		crane append --insecure -f "$work/$2.tar" -t "$ref-layer"
		crane mutate --insecure "$ref-layer" --entrypoint "$3" --user "$4" --set-platform linux/amd64 -t "$ref"
		crane pull --insecure "$ref" "$work/$2.image.tar"
	} >>"$work/crane.log" 2>&1 || { cat "$work/crane.log" >&2; return 1; }
	nsenter --net="/run/netns/$NETNS" "$NODE_BIN/ctr" -a "$E2E_DIR/containerd/containerd.sock" -n k8s.io images import "$work/$2.image.tar" >>"$work/crane.log" 2>&1
	nsenter --net="/run/netns/$NETNS" "$NODE_BIN/ctr" -a "$E2E_DIR/containerd/containerd.sock" -n k8s.io images tag --force "$ref" "keymint.io/e2e/$1" >>"$work/crane.log" 2>&1
}
image keymint:dev keymint /manager 65532:65532
image app:1 app /app 65532:65532
image pause:1 pause /pause 65535:65535
image nginx:1 nginx /usr/sbin/nginx 0:0
echo "e2e: images imported: keymint.io/e2e/{keymint:dev,app:1,nginx:1,pause:1}" >&2
