#!/usr/bin/env bash
# Provisions what the one-node cluster of `make e2e` needs on a fresh machine and prints the
# directory of the node binaries:
#   - Debian packages: containerd, runc, CNI plugins, nftables, iptables, conntrack, openssl
#     (installed with apt-get when missing; needs root);
#   - kube-apiserver, etcd, kubectl: hack/setup-envtest.sh (shared with `make test`);
#   - kubelet, kube-controller-manager, kube-scheduler, kube-proxy: built once from the Go
#     module proxy, the same way hack/setup-envtest.sh builds kube-apiserver (a throwaway
#     module requiring k8s.io/kubernetes, version stamped so /version answers truly), cached
#     outside the clone in E2E_BIN_DIR. Cold, 8 to 16 minutes on 2 cores.
#
# E2E_PROVISION_APT=0 skips the package step (a machine provisioned another way),
# E2E_PROVISION_ENVTEST=0 the envtest step.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

missing_packages() {
  local p
  for p in $E2E_APT_PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"
  done
}
if [ "${E2E_PROVISION_APT:-1}" = 1 ]; then
  missing=$(missing_packages | xargs)
  if [ -n "$missing" ]; then
    e2e_require_root
    e2e_log "installing Debian packages: $missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >&2
  fi
fi

k8s_version=$E2E_K8S_VERSION
build_dir=${XDG_CACHE_HOME:-$HOME/.cache}/api-access-injector/node-build-$k8s_version
built() { "$E2E_BIN_DIR/$1" --version 2>/dev/null | grep -q "v$k8s_version\$"; }
todo=()
for cmd in $E2E_NODE_BINARIES; do
  built "$cmd" || todo+=("k8s.io/kubernetes/cmd/$cmd")
done
if [ ${#todo[@]} -gt 0 ]; then
  e2e_log "building ${todo[*]##*/} v$k8s_version from the Go module proxy (once per machine; 8 to 16 minutes cold on 2 cores)"
  mkdir -p "$build_dir" "$E2E_BIN_DIR"
  export GOFLAGS=-mod=mod CGO_ENABLED=0 GOWORK=off
  . "$(dirname "$0")/../kube-module.sh"
  kube_module_init "$build_dir" e2enodebuild "$k8s_version"
  ldflags=$(kube_ldflags "$k8s_version")
  (
    cd "$build_dir"
    start=$(date +%s)
    # One go build for all of them: they share most packages, compiled once.
    mkdir -p "$build_dir/out"
    nice -n 10 go build -trimpath -ldflags "$ldflags" -o "$build_dir/out/" "${todo[@]}"
    for pkg in "${todo[@]}"; do mv -f "$build_dir/out/${pkg##*/}" "$E2E_BIN_DIR/"; done
    e2e_log "built in $(($(date +%s) - start))s into $E2E_BIN_DIR"
  )
fi
for cmd in $E2E_NODE_BINARIES; do
  built "$cmd" || e2e_die "$E2E_BIN_DIR/$cmd is not v$k8s_version after the build; see the messages above"
done
# After the node binaries: a machine provisioning both builds them while setup-envtest may
# still be compiling the shared packages.
[ "${E2E_PROVISION_ENVTEST:-1}" = 0 ] || e2e_envtest_assets >/dev/null
echo "$E2E_BIN_DIR"
