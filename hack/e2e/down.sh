#!/usr/bin/env bash
# Undoes up.sh and leaves the host as it was: deletes the pods while the kubelet still runs
# (so that it tears their sandboxes down properly), stops each daemon by its pid file only,
# kills what is left of the pod containers through containerd, unmounts everything under
# $E2E_NODE_DIR, removes the e2e0 bridge, the nftables tables and KUBE-* iptables chains that
# did not exist before, the kubelet's cgroups and the host paths up.sh found absent, and
# restores the sysctls up.sh recorded. Keeps $E2E_NODE_DIR/pki and images for the next
# up.sh (E2E_PURGE=1 removes the whole directory). Safe to run twice, or after a failed up.sh.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
e2e_require_root
node=$E2E_NODE_DIR
run=$node/run
t0=$(date +%s%N)

# stop NAME [GRACE]: SIGTERM the pid of run/NAME.pid, SIGKILL after GRACE seconds.
stop() {
  local name=$1 grace=${2:-10} pid i
  [ -f "$run/$name.pid" ] || return 0
  pid=$(cat "$run/$name.pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null
    for ((i = 0; i < grace * 5; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  fi
  rm -f "$run/$name.pid"
}
running() { [ -f "$run/$1.pid" ] && kill -0 "$(cat "$run/$1.pid")" 2>/dev/null; }

kubectl=$(ls "${XDG_DATA_HOME:-$HOME/.local/share}"/kubebuilder-envtest/k8s/"$E2E_K8S_VERSION"-*/kubectl 2>/dev/null | head -1)
if running kubelet && running kube-apiserver && [ -n "$kubectl" ]; then
  # Webhooks first: a webhook that fails closed would refuse nothing here, but one whose pods
  # are gone would slow every deletion down to its timeout.
  timeout 20 "$kubectl" --kubeconfig "$node/pki/admin.kubeconfig" delete mutatingwebhookconfigurations,validatingwebhookconfigurations --all >/dev/null 2>&1
  timeout 60 "$kubectl" --kubeconfig "$node/pki/admin.kubeconfig" delete pods --all -A \
    --grace-period=1 --wait=true --timeout=50s >/dev/null 2>&1
fi
# The kubelet next, so that it restarts nothing of what is removed below.
stop kubelet
stop kube-proxy
stop kube-scheduler
stop kube-controller-manager

# Any container left, through containerd (its CNI DEL frees the addresses).
sock=$run/containerd/containerd.sock
if [ -S "$sock" ] && running containerd; then
  ctr() { timeout 30 command ctr -a "$sock" -n k8s.io "$@"; }
  for task in $(ctr tasks ls -q 2>/dev/null); do ctr tasks kill -s KILL "$task" >/dev/null 2>&1; done
  for task in $(ctr tasks ls -q 2>/dev/null); do ctr tasks delete -f "$task" >/dev/null 2>&1; done
  for c in $(ctr containers ls -q 2>/dev/null); do ctr containers delete "$c" >/dev/null 2>&1; done
fi
stop containerd 20
stop kube-apiserver
stop etcd

# Shims of our containerd outlive it. containerd 1.6 writes no shim pid file: a shim is the
# process listening on the socket named in its task's `address` file.
for address in "$run"/containerd/io.containerd.runtime.v2.task/*/*/address; do
  [ -f "$address" ] || continue
  socket=$(sed 's|^unix://||' "$address")
  for pid in $(ss -xlpn 2>/dev/null | awk -v s="$socket" '$5 == s' | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u); do
    kill -KILL "$pid" 2>/dev/null
  done
done
# Everything mounted under the node directory (volumes, rootfs overlays, netns), deepest first.
awk -v d="$node/" 'index($2, d) == 1 {print $2}' /proc/self/mounts | sort -r |
  while read -r mountpoint; do umount -l "$mountpoint" 2>/dev/null; done
ip link show e2e0 >/dev/null 2>&1 && ip link delete e2e0
# nftables: kube-proxy's tables and the kubelet's iptables-nft tables that did not exist
# before go whole; in tables that did, only the KUBE-* chains and the rules jumping to them.
if [ -f "$run/nft-tables.before" ]; then
  nft list tables | while read -r _ family table; do
    grep -qx "table $family $table" "$run/nft-tables.before" || nft delete table "$family" "$table"
  done
fi
for ipt in iptables ip6tables; do
  command -v $ipt >/dev/null || continue
  for table in filter nat mangle; do
    $ipt -t $table -S 2>/dev/null | grep -E '^-A [A-Z]+ .*-j KUBE-' | grep -v '^-A KUBE-' |
      while read -r rule; do eval "$ipt -t $table -D ${rule#-A }" 2>/dev/null; done
    chains=$($ipt -t $table -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^KUBE-/ {print $2}')
    for chain in $chains; do $ipt -t $table -F "$chain" 2>/dev/null; done
    for chain in $chains; do $ipt -t $table -X "$chain" 2>/dev/null; done
  done
done
# The kubelet's cgroups: /kubepods in every hierarchy (v1), or in the unified one (v2).
for root in /sys/fs/cgroup /sys/fs/cgroup/*; do
  [ -d "$root/kubepods" ] || continue
  find "$root/kubepods" -depth -type d -exec rmdir {} \; 2>/dev/null
done
if [ -f "$run/sysctl.before" ]; then
  while IFS='=' read -r key value; do sysctl -qw "$key=$value" 2>/dev/null; done <"$run/sysctl.before"
fi
if [ -f "$run/created-paths" ]; then
  while read -r path; do
    case $path in
    /var/lib/kubelet | /var/log/containers | /var/lib/cni | /run/netns | /run/containerd | /run/mount) rm -rf "$path" ;;
    esac
  done <"$run/created-paths"
fi
rm -rf "$node/var" "$run" "$node/log.prev"
[ -d "$node/log" ] && mv "$node/log" "$node/log.prev"
[ "${E2E_PURGE:-0}" = 1 ] && rm -rf "$node"
e2e_log "node down in $((($(date +%s%N) - t0) / 1000000)) ms; logs of the last run in $node/log.prev"
exit 0
