#!/usr/bin/env bash
# Prints the Kubernetes version the tests run against (x.y.z): ENVTEST_K8S_VERSION when set,
# otherwise the release that matches k8s.io/api in go.mod (v0.37.2 is Kubernetes 1.37.2), as
# kubebuilder's Makefile derives it. The one source of that version: the Makefile, the envtest
# and e2e scripts and test/framework/testenv all derive it this way.
set -euo pipefail

if [ -n "${ENVTEST_K8S_VERSION:-}" ]; then
  echo "$ENVTEST_K8S_VERSION"
  exit 0
fi
v=$(cd "$(dirname "$0")/.." && go list -m -f '{{.Version}}' k8s.io/api)
case $v in
  v0.*.*) echo "1.${v#v0.}" ;;
  *) echo "kube-version: k8s.io/api is at $v in go.mod: want v0.Y.Z (Kubernetes 1.Y.Z)" >&2; exit 1 ;;
esac
