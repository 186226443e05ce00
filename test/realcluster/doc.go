// Package realcluster is the suite of `make e2e`: the Helm chart installed as users install
// it, on a real one-node Kubernetes cluster (hack/e2e) with the images hack/imgbuild makes,
// and real pods whose logs, exit codes and phases are asserted. Its tests carry the build
// tag realcluster, so that `go test ./...` does not run them; `make e2e` does, as root, on a
// machine it may change (see README, Development). The long token-refresh test also carries
// the tag soak (`make e2e-soak`).
//
// The workload of the pods is test/realcluster/app.
package realcluster
