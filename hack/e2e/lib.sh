# Shared settings and helpers of the hack/e2e scripts; sourced, never run.
#
# Environment (all optional):
#   E2E_K8S_VERSION  Kubernetes version of every node binary (default: hack/kube-version.sh, which
#                    is ENVTEST_K8S_VERSION or the release of k8s.io/api in go.mod)
#   E2E_NODE_DIR     the node's state, logs, pid files, certificates and images
#                    (default /tmp/api-access-injector-e2e)
#   E2E_BIN_DIR      kubelet, kube-controller-manager, kube-scheduler, kube-proxy (default: a
#                    directory beside envtest's, outside the clone, filled by provision.sh)
#   E2E_NODE_NAME    node name (default e2e-node);  E2E_POD_CIDR (default 10.244.0.0/24)

E2E_K8S_VERSION=${E2E_K8S_VERSION:-$("$(dirname "${BASH_SOURCE[0]}")/../kube-version.sh")}
E2E_NODE_DIR=${E2E_NODE_DIR:-/tmp/api-access-injector-e2e}
_data_home=${XDG_DATA_HOME:-$HOME/.local/share}
E2E_BIN_DIR=${E2E_BIN_DIR:-$_data_home/api-access-injector/node/$E2E_K8S_VERSION-linux-amd64}
E2E_NODE_NAME=${E2E_NODE_NAME:-e2e-node}
E2E_POD_CIDR=${E2E_POD_CIDR:-10.244.0.0/24}
E2E_SERVICE_CIDR=10.96.0.0/16
E2E_SERVICE_IP=10.96.0.1
# The ports a node binds; one cluster per machine (the e2e0 bridge and /kubepods cgroups are
# fixed too).
E2E_PORTS="2379 2380 6443 10248 10249 10250 10256 10257 10259"
E2E_NODE_BINARIES="kubelet kube-controller-manager kube-scheduler kube-proxy"
E2E_APT_PACKAGES="containerd runc containernetworking-plugins nftables iptables conntrack openssl"
export E2E_K8S_VERSION E2E_NODE_DIR E2E_BIN_DIR E2E_NODE_NAME E2E_POD_CIDR

e2e_log() { echo "${0##*/}: $*" >&2; }
e2e_die() { echo "${0##*/}: $*" >&2; exit 1; }

# e2e_require_root explains why root is needed; `make e2e` must fail, never skip.
e2e_require_root() {
  [ "$(id -u)" = 0 ] || e2e_die "must run as root: the node changes host networking, mounts and cgroups" \
    "(CI and throwaway machines only; see README, Development)"
}

# e2e_wait SECONDS DESCRIPTION COMMAND...: polls COMMAND until it succeeds, at most SECONDS.
e2e_wait() {
  local limit=$1 what=$2
  shift 2
  local end=$(($(date +%s) + limit))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$end" ] || e2e_die "timed out after ${limit}s waiting for $what (logs: $E2E_NODE_DIR/log)"
    sleep 0.3
  done
}

# e2e_envtest_assets prints the directory of kube-apiserver, etcd and kubectl, provisioning
# them (hack/setup-envtest.sh) if needed.
e2e_envtest_assets() {
  ENVTEST_K8S_VERSION=$E2E_K8S_VERSION "$(dirname "${BASH_SOURCE[0]}")/../setup-envtest.sh"
}

# e2e_require_no_node fails when a node seems up already (its ports are taken or its bridge
# exists): one node per machine.
e2e_require_no_node() {
  local port
  for port in $E2E_PORTS; do
    if ss -Hltn "sport = :$port" | grep -q .; then
      e2e_die "port $port is in use; is a node already up? run: make e2e-down"
    fi
  done
  if ip link show e2e0 >/dev/null 2>&1; then
    e2e_die "the bridge e2e0 exists; is a node already up? run: make e2e-down"
  fi
}
