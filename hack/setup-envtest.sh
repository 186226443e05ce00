#!/usr/bin/env bash
# Provisions the envtest binaries (kube-apiserver, etcd, kubectl) for one Kubernetes version
# and prints the directory that holds them, for KUBEBUILDER_ASSETS.
#
# Order of attempts:
#   1. the cache: the directory setup-envtest itself would use, if it already holds working
#      binaries (a warm machine pays nothing);
#   2. setup-envtest (downloads released binaries; needs the internet);
#   3. a build from the Go module proxy, in a throwaway module, stamped with the real version
#      so that clients parsing /version keep working.
#
# Environment: ENVTEST_K8S_VERSION (default: hack/kube-version.sh, from go.mod), ENVTEST_ETCD_VERSION (default 3.6.5),
# ENVTEST_ASSETS_DIR (default: setup-envtest's own store), SETUP_ENVTEST_VERSION.
set -euo pipefail

k8s_version=$("$(dirname "$0")/kube-version.sh")
etcd_version=${ENVTEST_ETCD_VERSION:-3.6.5}
setup_envtest_version=${SETUP_ENVTEST_VERSION:-v0.25.1}
goos=$(go env GOOS)
goarch=$(go env GOARCH)
data_home=${XDG_DATA_HOME:-$HOME/.local/share}
assets_dir=${ENVTEST_ASSETS_DIR:-$data_home/kubebuilder-envtest/k8s/$k8s_version-$goos-$goarch}
build_dir=${XDG_CACHE_HOME:-$HOME/.cache}/api-access-injector/envtest-build-$k8s_version

log() { echo "setup-envtest: $*" >&2; }

complete() {
  [ -x "$assets_dir/kube-apiserver" ] && [ -x "$assets_dir/etcd" ] && [ -x "$assets_dir/kubectl" ] &&
    "$assets_dir/kube-apiserver" --version 2>/dev/null | grep -q "v$k8s_version"
}

if complete; then
  echo "$assets_dir"
  exit 0
fi

# setup-envtest writes into its own store; ask it for this exact version.
store=$(dirname "$(dirname "$assets_dir")")
if dir=$(timeout 120 go run "sigs.k8s.io/controller-runtime/tools/setup-envtest@$setup_envtest_version" \
      use "$k8s_version" --bin-dir "$store" -p path 2>/dev/null) && [ -x "$dir/kube-apiserver" ]; then
  if [ "$dir" != "$assets_dir" ]; then
    mkdir -p "$assets_dir" && cp -f "$dir"/* "$assets_dir"/
  fi
  if complete; then
    echo "$assets_dir"
    exit 0
  fi
fi

log "released binaries are unreachable; building Kubernetes v$k8s_version and etcd v$etcd_version from the Go module proxy (a few minutes, once per machine)"
mkdir -p "$build_dir/k8s" "$build_dir/etcd" "$assets_dir"
export GOFLAGS=-mod=mod CGO_ENABLED=0 GOWORK=off

. "$(dirname "$0")/kube-module.sh"
kube_module_init "$build_dir/k8s" envtestbuild "$k8s_version"
ldflags=$(kube_ldflags "$k8s_version")
(
  cd "$build_dir/k8s"
  for cmd in kube-apiserver kubectl; do
    if [ ! -x "$assets_dir/$cmd" ] || ! "$assets_dir/$cmd" --version 2>/dev/null | grep -q "v$k8s_version"; then
      log "building $cmd"
      go build -trimpath -ldflags "$ldflags" -o "$assets_dir/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd"
      mv "$assets_dir/$cmd.tmp" "$assets_dir/$cmd"
    fi
  done
)
(
  cd "$build_dir/etcd"
  printf 'module envtestbuild\ngo 1.26\nrequire go.etcd.io/etcd/server/v3 v%s\n' "$etcd_version" >go.mod
  if [ ! -x "$assets_dir/etcd" ]; then
    log "building etcd"
    go build -trimpath -ldflags "-s -w" -o "$assets_dir/etcd.tmp" go.etcd.io/etcd/server/v3
    mv "$assets_dir/etcd.tmp" "$assets_dir/etcd"
  fi
)

if ! complete; then
  log "binaries in $assets_dir are incomplete after the build; see the messages above"
  exit 1
fi
echo "$assets_dir"
