# Sourced by hack/setup-envtest.sh and hack/e2e/provision.sh: what it takes to build Kubernetes
# commands from the Go module proxy, written once.

# kube_module_init DIR MODULE VERSION writes DIR/go.mod, a throwaway module that requires
# k8s.io/kubernetes VERSION (x.y.z). k8s.io/kubernetes replaces its staging modules with local
# paths, so a module that requires it must map each of them to its published version itself
# (the names are the replace block at the end of k8s.io/kubernetes's own go.mod).
kube_module_init() {
  local dir=$1 module=$2 version=$3 name
  local staging="api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider
    cluster-bootstrap code-generator component-base component-helpers controller-manager cri-api
    cri-client cri-streaming csi-translation-lib dynamic-resource-allocation endpointslice
    externaljwt kms kube-aggregator kube-controller-manager kube-proxy kube-scheduler kubectl
    kubelet metrics mount-utils pod-security-admission sample-apiserver sample-cli-plugin
    sample-controller streaming"
  mkdir -p "$dir"
  {
    echo "module $module"
    echo "go 1.26"
    echo "require k8s.io/kubernetes v$version"
    for name in $staging; do echo "replace k8s.io/$name => k8s.io/$name v0.${version#*.}"; done
  } >"$dir/go.mod"
}

# kube_ldflags VERSION prints the linker flags that stamp the binaries with their real version,
# as the Kubernetes build does: without them /version reports v0.0.0-master, which breaks
# clients that parse the server version.
kube_ldflags() {
  local version=$1 minor pkg flags="-s -w"
  minor=$(echo "$version" | cut -d. -f2)
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=v$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  done
  echo "$flags"
}
