#!/usr/bin/env bash
# Brings up a real one-node Kubernetes cluster on this machine, for `make e2e`: containerd +
# runc (Debian packages), bridge CNI, etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kube-proxy (nftables) and the kubelet, then imports every image tarball in
# $E2E_NODE_DIR/images (hack/imgbuild writes them). Each daemon's pid goes to
# $E2E_NODE_DIR/run/NAME.pid and its log to $E2E_NODE_DIR/log/NAME.log. Before changing the
# host it records what down.sh must restore (sysctls, firewall tables, paths it creates).
# Prints the admin kubeconfig path. Every wait is bounded.
#
# It changes host networking and needs root: CI and throwaway machines only.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
e2e_require_root
ENVTEST_ASSETS=$(e2e_envtest_assets)
HOST_IP=${HOST_IP:-$(ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p')}
[ -n "$HOST_IP" ] || e2e_die "no IPv4 default route: set HOST_IP to the address the node should use"
export HOST_IP
node=$E2E_NODE_DIR
run=$node/run
pki=$node/pki
kubeconfig=$pki/admin.kubeconfig
kubectl() { "$ENVTEST_ASSETS/kubectl" --kubeconfig "$kubeconfig" "$@"; }

t0=$(date +%s%N)
phase() { printf 'up.sh: %-26s %5d ms\n' "$1" $((($(date +%s%N) - t0) / 1000000)) >&2; }

# Guard rails: fail at once, naming the target that provisions what is missing.
for b in $E2E_NODE_BINARIES; do
  [ -x "$E2E_BIN_DIR/$b" ] || e2e_die "$E2E_BIN_DIR/$b is missing; run: make e2e-provision"
done
for b in containerd ctr runc nft iptables conntrack openssl /usr/lib/cni/bridge /usr/lib/cni/host-local /usr/lib/cni/loopback /usr/lib/cni/portmap; do
  command -v "$b" >/dev/null || e2e_die "$b is missing; run: make e2e-provision (Debian packages: $E2E_APT_PACKAGES)"
done
[ -f "$node/images/pause.tar" ] || e2e_die "$node/images/pause.tar is missing; run: make e2e-images"
[ -d /sys/fs/cgroup ] && [ -n "$(ls -A /sys/fs/cgroup 2>/dev/null)" ] ||
  e2e_die "no cgroup file system at /sys/fs/cgroup: the kubelet needs one (mount cgroup v1 or v2 first)"
e2e_require_no_node

mkdir -p "$run" "$node"/{log,etc/containerd,etc/cni/net.d,var/etcd,var/kubelet,var/log/pods,var/cni}
# What the kubelet, kube-proxy and the bridge plugin change on the host; down.sh restores it.
# Recorded once: a failed up.sh followed by another up.sh must not record its own changes.
if [ ! -f "$run/sysctl.before" ]; then
  for key in net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables vm.overcommit_memory vm.panic_on_oom \
    kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes; do
    value=$(sysctl -n "$key" 2>/dev/null) && echo "$key=$value"
  done >"$run/sysctl.before.tmp"
  nft list tables >"$run/nft-tables.before"
  # Paths the kubelet, containerd, libcni and libmount (/run/mount) hard-code outside their
  # configured roots.
  for path in /var/lib/kubelet /var/log/containers /var/lib/cni /run/netns /run/containerd /run/mount; do
    [ -e "$path" ] || echo "$path"
  done >"$run/created-paths"
  mv "$run/sysctl.before.tmp" "$run/sysctl.before"
fi
"$here/pki.sh"
phase "certificates"

subst() {
  sed -e "s|@NODE_DIR@|$node|g" -e "s|@HOST_IP@|$HOST_IP|g" -e "s|@POD_CIDR@|$E2E_POD_CIDR|g" \
    -e "s|@NODE_NAME@|$E2E_NODE_NAME|g" "$here/config/$1" >"$2"
}
# start NAME COMMAND...: runs a daemon in the background (the command itself, not a subshell,
# so that its pid is the daemon's), pid to run/NAME.pid.
start() {
  local name=$1
  shift
  if [ -f "$run/$name.pid" ] && kill -0 "$(cat "$run/$name.pid")" 2>/dev/null; then
    e2e_die "$name is already running (pid $(cat "$run/$name.pid")); run: make e2e-down"
  fi
  nohup "$@" >"$node/log/$name.log" 2>&1 </dev/null &
  echo $! >"$run/$name.pid"
}

subst containerd.toml "$node/etc/containerd/config.toml"
subst 10-e2e.conflist "$node/etc/cni/net.d/10-e2e.conflist"
start containerd containerd --config "$node/etc/containerd/config.toml"
ctr() { command ctr -a "$run/containerd/containerd.sock" -n k8s.io "$@"; }
e2e_wait 30 containerd ctr version
phase "containerd"
for tarball in "$node"/images/*.tar; do
  ctr images import "$tarball" >/dev/null
done
phase "images imported"

start etcd "$ENVTEST_ASSETS/etcd" --data-dir "$node/var/etcd" \
  --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster default=http://127.0.0.1:2380 --unsafe-no-fsync
# The API server listens on the node address so that pods reach it through the kubernetes
# Service; it reaches kubelets by InternalIP (no cluster DNS resolves the node name).
start kube-apiserver "$ENVTEST_ASSETS/kube-apiserver" \
  --etcd-servers=http://127.0.0.1:2379 \
  --bind-address="$HOST_IP" --secure-port=6443 --advertise-address="$HOST_IP" \
  --service-cluster-ip-range="$E2E_SERVICE_CIDR" \
  --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
  --client-ca-file="$pki/ca.crt" \
  --kubelet-client-certificate="$pki/apiserver-kubelet-client.crt" \
  --kubelet-client-key="$pki/apiserver-kubelet-client.key" \
  --kubelet-preferred-address-types=InternalIP,Hostname \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
  --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
  --allow-privileged=true
e2e_wait 90 "kube-apiserver /readyz" kubectl get --raw /readyz
phase "etcd + kube-apiserver"

start kube-controller-manager "$E2E_BIN_DIR/kube-controller-manager" \
  --kubeconfig="$pki/controller-manager.kubeconfig" --bind-address=127.0.0.1 --leader-elect=false \
  --service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/ca.crt" \
  --use-service-account-credentials=true \
  --cluster-signing-cert-file="$pki/ca.crt" --cluster-signing-key-file="$pki/ca.key"
start kube-scheduler "$E2E_BIN_DIR/kube-scheduler" \
  --kubeconfig="$pki/scheduler.kubeconfig" --bind-address=127.0.0.1 --leader-elect=false
subst kube-proxy.yaml "$node/etc/kube-proxy.yaml"
start kube-proxy "$E2E_BIN_DIR/kube-proxy" --config="$node/etc/kube-proxy.yaml"
subst kubelet.yaml "$node/etc/kubelet.yaml"
start kubelet "$E2E_BIN_DIR/kubelet" --config="$node/etc/kubelet.yaml" \
  --kubeconfig="$pki/kubelet.kubeconfig" --root-dir="$node/var/kubelet" --cert-dir="$node/var/kubelet/pki" \
  --hostname-override="$E2E_NODE_NAME" --node-ip="$HOST_IP"

e2e_wait 120 "node $E2E_NODE_NAME Ready" kubectl wait --for=condition=Ready "node/$E2E_NODE_NAME" --timeout=1s
phase "node Ready"
e2e_wait 60 "the default ServiceAccount" kubectl -n default get serviceaccount default
e2e_wait 60 "the kube-root-ca.crt ConfigMap" kubectl -n default get configmap kube-root-ca.crt
phase "default ServiceAccount + CA"
echo "$kubeconfig"
