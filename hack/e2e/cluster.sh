#!/usr/bin/env bash
# A one-node Kubernetes cluster for `make e2e`, inside a network namespace of
# its own: etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# kube-proxy (iptables), the aggregation layer (front-proxy certificates, as
# kubeadm sets them up), containerd with Debian's runc and the CNI bridge,
# and a kubelet. Every address it uses (node 10.99.0.1, Pods 10.88.0.0/24,
# Services 10.0.0.0/24) exists only in that namespace; nothing it starts
# listens outside it.
#
#   cluster.sh up       start it (state in $E2E_DIR), wait for the node to be Ready
#   cluster.sh down     stop it and remove every process, mount, cgroup and the namespace
#   cluster.sh exec CMD run CMD inside the namespace (kubectl, helm, the tests)
#   cluster.sh restart-apiserver [FLAG...]  kube-apiserver again, with FLAGs added
#
# Needs root, bin/k8s (make controlplane) and bin/node (hack/e2e/build.sh).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
E2E_DIR=${E2E_DIR:-/tmp/keymint-e2e}
NETNS=${E2E_NETNS:-keymint-e2e}
K8S=$root/bin/k8s
NODE_BIN=$root/bin/node
NODE=keymint-e2e
NODE_IP=10.99.0.1
POD_CIDR=10.88.0.0/24
SERVICE_CIDR=10.0.0.0/24
CGROUP_ROOT=keymint-e2e
export KUBECONFIG=$E2E_DIR/admin.kubeconfig

inns() { nsenter --net="/run/netns/$NETNS" "$@"; }
kubectl() { inns "$K8S/kubectl" "$@"; }

# start NAME CMD...: a daemon inside the namespace, its pid in pids/NAME
# (written by the daemon's own process, which then becomes the daemon).
start() {
	local name=$1
	shift
	# shellcheck disable=SC2016
	inns sh -c 'echo $$ >"$0"; exec "$@"' "$E2E_DIR/pids/$name" "$@" >"$E2E_DIR/logs/$name.log" 2>&1 </dev/null &
}

# wait_for WHAT SECONDS CMD...: poll CMD until it succeeds.
wait_for() {
	local what=$1 deadline=$((SECONDS + $2))
	shift 2
	until "$@" >/dev/null 2>&1; do
		if ((SECONDS > deadline)); then
			echo "e2e: $what not ready after $((SECONDS - deadline + $2)) s; logs in $E2E_DIR/logs" >&2
			return 1
		fi
		sleep 0.3
	done
}

certs() {
	local p=$E2E_DIR/pki
	mkdir -p "$p"
	openssl req -x509 -newkey rsa:2048 -nodes -keyout "$p/ca.key" -out "$p/ca.crt" -days 2 -subj "/CN=keymint-e2e-ca" 2>/dev/null
	# The aggregation layer's own CA, as kubeadm makes it: a client
	# certificate of the cluster CA must never pass for the front proxy.
	openssl req -x509 -newkey rsa:2048 -nodes -keyout "$p/front-proxy-ca.key" -out "$p/front-proxy-ca.crt" -days 2 -subj "/CN=front-proxy-ca" 2>/dev/null
	# leaf NAME SUBJECT EXTENSIONS [CA]
	leaf() {
		local ca=${4:-ca}
		openssl req -newkey rsa:2048 -nodes -keyout "$p/$1.key" -out "$p/$1.csr" -subj "$2" 2>/dev/null
		printf '%b' "$3" >"$p/$1.ext"
		openssl x509 -req -in "$p/$1.csr" -CA "$p/$ca.crt" -CAkey "$p/$ca.key" -CAcreateserial -out "$p/$1.crt" -days 2 -extfile "$p/$1.ext" 2>/dev/null
	}
	local client='extendedKeyUsage=clientAuth\n'
	leaf apiserver /CN=kube-apiserver "extendedKeyUsage=serverAuth\nsubjectAltName=IP:$NODE_IP,IP:10.0.0.1,IP:127.0.0.1,DNS:kubernetes.default.svc,DNS:localhost\n"
	leaf kubelet-serving "/CN=$NODE" "extendedKeyUsage=serverAuth\nsubjectAltName=IP:$NODE_IP,DNS:$NODE\n"
	# The operator of the cluster (helm install, the tests' administrator).
	leaf admin /O=system:masters/CN=e2e-admin "$client"
	leaf kubelet "/O=system:nodes/CN=system:node:$NODE" "$client"
	leaf kcm /CN=system:kube-controller-manager "$client"
	leaf scheduler /CN=system:kube-scheduler "$client"
	leaf proxy /CN=system:kube-proxy "$client"
	leaf apiserver-kubelet-client /O=system:masters/CN=kube-apiserver-kubelet-client "$client"
	leaf front-proxy-client /CN=front-proxy-client "$client" front-proxy-ca
	openssl genrsa -out "$p/sa.key" 2048 2>/dev/null
	openssl rsa -in "$p/sa.key" -pubout -out "$p/sa.pub" 2>/dev/null
	for u in admin kubelet kcm scheduler proxy; do
		cat >"$E2E_DIR/$u.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: e2e, cluster: {server: "https://$NODE_IP:6443", certificate-authority: "$p/ca.crt"}}]
users: [{name: $u, user: {client-certificate: "$p/$u.crt", client-key: "$p/$u.key"}}]
contexts: [{name: e2e, context: {cluster: e2e, user: $u}}]
current-context: e2e
EOF
	done
}

configs() {
	local d=$E2E_DIR
	mkdir -p "$d/containerd" "$d/cni/net.d" "$d/kubelet"
	cat >"$d/containerd/config.toml" <<EOF
version = 3
root = "$d/containerd/root"
state = "$d/containerd/state"

[grpc]
  address = "$d/containerd/containerd.sock"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "keymint.io/e2e/pause:1"

[plugins."io.containerd.cri.v1.runtime"]
  # Without CAP_SYS_RESOURCE (as in this VM) runc cannot lower oom_score_adj,
  # and every sandbox fails with "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  # Pod network namespaces under the state directory, not /run/netns.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["$NODE_BIN/cni"]
    conf_dir = "$d/cni/net.d"
EOF
	cat >"$d/cni/net.d/10-keymint-e2e.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "keymint-e2e",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}],
              "dataDir": "$d/cni/ipam"}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
	cat >"$d/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$d/containerd/containerd.sock
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $d/pki/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $d/pki/kubelet-serving.crt
tlsPrivateKeyFile: $d/pki/kubelet-serving.key
address: $NODE_IP
port: 10250
healthzBindAddress: 127.0.0.1
failSwapOn: false
# A mounted Secret is refreshed at the latest one syncFrequency after it
# changes (with the default 1m, 72-84 s were measured here; with 10s, 0.5-15 s).
syncFrequency: 10s
resolvConf: ""
clusterDomain: cluster.local
# The Pods' cgroups under a root of their own, which down removes: never
# another kubelet's kubepods.
cgroupRoot: /$CGROUP_ROOT
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {}
serializeImagePulls: false
EOF
}

# start_apiserver [FLAG...]: kube-apiserver, with FLAGs added, until it is ready.
start_apiserver() {
	local p=$E2E_DIR/pki
	start kube-apiserver "$K8S/kube-apiserver" --etcd-servers=http://127.0.0.1:2379 \
		--bind-address=$NODE_IP --advertise-address=$NODE_IP --secure-port=6443 --cert-dir="$p" \
		--tls-cert-file="$p/apiserver.crt" --tls-private-key-file="$p/apiserver.key" --client-ca-file="$p/ca.crt" \
		--service-account-issuer=https://kubernetes.default.svc --service-account-key-file="$p/sa.pub" \
		--service-account-signing-key-file="$p/sa.key" --service-cluster-ip-range=$SERVICE_CIDR \
		--authorization-mode=Node,RBAC --allow-privileged=true \
		--kubelet-client-certificate="$p/apiserver-kubelet-client.crt" --kubelet-client-key="$p/apiserver-kubelet-client.key" \
		--kubelet-certificate-authority="$p/ca.crt" --kubelet-preferred-address-types=InternalIP \
		--requestheader-client-ca-file="$p/front-proxy-ca.crt" --requestheader-allowed-names=front-proxy-client \
		--requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group \
		--requestheader-extra-headers-prefix=X-Remote-Extra- \
		--proxy-client-cert-file="$p/front-proxy-client.crt" --proxy-client-key-file="$p/front-proxy-client.key" "$@"
	wait_for kube-apiserver 60 kubectl get --raw /readyz
}

up() {
	[[ $(id -u) == 0 ]] || { echo "make e2e needs root (network namespaces, a kubelet, containerd)" >&2; exit 1; }
	if [[ -e /run/netns/$NETNS ]]; then
		echo "e2e: a cluster is up already (netns $NETNS); run hack/e2e/cluster.sh down first" >&2
		exit 1
	fi
	rm -rf "$E2E_DIR"
	mkdir -p "$E2E_DIR/logs" "$E2E_DIR/pids"
	certs
	configs

	ip netns add "$NETNS"
	inns ip link set lo up
	# The node's address on a bridge without ports (this kernel has no dummy
	# links; kube-apiserver refuses to advertise a loopback address). The
	# default route ends there too: nothing leaves the namespace.
	inns ip link add keymint0 type bridge
	inns ip addr add "$NODE_IP/32" dev keymint0
	inns ip link set keymint0 up
	inns ip route add default dev keymint0
	inns sysctl -qw net.ipv4.ip_forward=1
	# Pod to Service to Pod on the same bridge needs the bridge to pass
	# through iptables, so that replies are translated back.
	modprobe br_netfilter 2>/dev/null || true
	inns sysctl -qw net.bridge.bridge-nf-call-iptables=1

	local p=$E2E_DIR/pki
	start etcd "$K8S/etcd" --data-dir "$E2E_DIR/etcd" --listen-client-urls http://127.0.0.1:2379 \
		--advertise-client-urls http://127.0.0.1:2379 --listen-peer-urls http://127.0.0.1:2380
	start_apiserver
	echo "e2e: kube-apiserver ready after $SECONDS s" >&2

	start containerd env PATH="$NODE_BIN:$PATH" "$NODE_BIN/containerd" --config "$E2E_DIR/containerd/config.toml"
	wait_for containerd 30 "$NODE_BIN/ctr" -a "$E2E_DIR/containerd/containerd.sock" version
	"$(dirname "$0")/images.sh"

	start kube-controller-manager "$NODE_BIN/kube-controller-manager" --kubeconfig="$E2E_DIR/kcm.kubeconfig" \
		--authentication-kubeconfig="$E2E_DIR/kcm.kubeconfig" --authorization-kubeconfig="$E2E_DIR/kcm.kubeconfig" \
		--bind-address=127.0.0.1 --leader-elect=false --use-service-account-credentials=true \
		--root-ca-file="$p/ca.crt" --service-account-private-key-file="$p/sa.key" \
		--cluster-signing-cert-file="$p/ca.crt" --cluster-signing-key-file="$p/ca.key" --controllers='*'
	start kube-scheduler "$NODE_BIN/kube-scheduler" --kubeconfig="$E2E_DIR/scheduler.kubeconfig" \
		--authentication-kubeconfig="$E2E_DIR/scheduler.kubeconfig" --authorization-kubeconfig="$E2E_DIR/scheduler.kubeconfig" \
		--bind-address=127.0.0.1 --leader-elect=false
	start kube-proxy "$NODE_BIN/kube-proxy" --kubeconfig="$E2E_DIR/proxy.kubeconfig" --hostname-override=$NODE \
		--proxy-mode=iptables --cluster-cidr=$POD_CIDR --conntrack-max-per-core=0 \
		--metrics-bind-address=127.0.0.1:10249 --healthz-bind-address=127.0.0.1:10256
	local h
	for h in /sys/fs/cgroup/*/; do
		mkdir -p "$h$CGROUP_ROOT"
	done
	start kubelet env PATH="$NODE_BIN:$PATH" "$NODE_BIN/kubelet" --config="$E2E_DIR/kubelet/config.yaml" \
		--kubeconfig="$E2E_DIR/kubelet.kubeconfig" --root-dir="$E2E_DIR/kubelet/root" \
		--hostname-override=$NODE --node-ip=$NODE_IP --cert-dir="$E2E_DIR/kubelet/pki"
	wait_for "node $NODE" 90 kubectl wait --for=condition=Ready node/$NODE --timeout=2s
	wait_for "ServiceAccount default" 60 kubectl get serviceaccount default
	wait_for "ConfigMap kube-root-ca.crt" 60 kubectl get configmap kube-root-ca.crt
	echo "e2e: node $NODE Ready after $SECONDS s (state in $E2E_DIR, netns $NETNS)" >&2
}

# stop NAME: SIGTERM, up to 10 s, then SIGKILL.
stop() {
	local f=$E2E_DIR/pids/$1 pid
	[[ -s $f ]] || return 0
	pid=$(cat "$f")
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.2
	done
	kill -KILL "$pid" 2>/dev/null || true
	rm -f "$f"
}

# kill_leftovers: SIGKILL every process whose binary is in bin/node (the
# runc shims outlive containerd) or that runs in the Pods' cgroups.
kill_leftovers() {
	local p exe
	for p in /proc/[0-9]*; do
		exe=$(readlink "$p/exe" 2>/dev/null) || continue
		case $exe in "$NODE_BIN"/*) kill -KILL "${p#/proc/}" 2>/dev/null || true ;; esac
	done
	local procs
	for procs in /sys/fs/cgroup/*/"$CGROUP_ROOT"/; do
		[[ -d $procs ]] || continue
		# shellcheck disable=SC2038 # xargs reads the PIDs in the files, not file names
		find "$procs" -name cgroup.procs -exec cat {} + 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
	done
}

down() {
	if [[ -e /run/netns/$NETNS && -f $E2E_DIR/pids/kubelet ]]; then
		# Let the kubelet stop the Pods while it can.
		kubectl delete namespace --all --wait=false >/dev/null 2>&1 || true
	fi
	stop kubelet
	stop kube-proxy
	stop kube-scheduler
	stop kube-controller-manager
	stop containerd
	stop kube-apiserver
	stop etcd
	kill_leftovers
	sleep 0.5
	kill_leftovers
	# Mounts under the state directory (overlays, Secret volumes, pod netns), deepest first.
	if [[ -n $E2E_DIR ]]; then
		awk -v d="$E2E_DIR/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do
			umount -l "$m" 2>/dev/null || true
		done
	fi
	local h
	for h in /sys/fs/cgroup/*/"$CGROUP_ROOT"; do
		if [[ -d $h ]]; then
			find "$h" -depth -type d -exec rmdir {} \; 2>/dev/null || true
		fi
	done
	[[ -e /run/netns/$NETNS ]] && ip netns del "$NETNS"
	rm -rf "${E2E_DIR:?}/etcd" "$E2E_DIR/containerd/root" "$E2E_DIR/containerd/state" "$E2E_DIR/kubelet/root"
	local mounts cgroups
	mounts=$(grep -c " $E2E_DIR/" /proc/self/mountinfo || true)
	cgroups=$(find /sys/fs/cgroup -maxdepth 2 -name "$CGROUP_ROOT" 2>/dev/null | wc -l)
	echo "e2e: down (left behind: $mounts mounts, $cgroups cgroups; logs in $E2E_DIR/logs)" >&2
	((mounts == 0 && cgroups == 0))
}

case ${1:-} in
up) up ;;
down) down ;;
restart-apiserver)
	# restart-apiserver [FLAG...]: the same kube-apiserver with FLAGs added
	# (a test's audit webhook), or without them again.
	shift
	stop kube-apiserver
	start_apiserver "$@"
	;;
exec)
	shift
	inns "$@"
	;;
*)
	echo "usage: $0 up|down|exec CMD..." >&2
	exit 2
	;;
esac
