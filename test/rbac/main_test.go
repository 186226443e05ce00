// Package rbac_test proves `api-access-injector rbac` against a real API server (envtest):
// an app whose ServiceAccount holds a broad role makes a fixed set of calls through a real
// api-proxy process, with a real token from the TokenRequest API; the record that sidecar
// kept is turned into a Role, a ClusterRole and their bindings, which are applied with
// kubectl while the broad role goes; the same calls then all pass, and one outside the set is
// denied. `make envtest` provisions the binaries; a missing one fails the suite with that hint.
//
// envtest has no kubelet, so `kubectl exec` cannot reach a sidecar here: the record is read
// by running `api-proxy access -o json` beside the sidecar, as exec runs it inside the pod.
// The exec path itself is covered on the real node (test/realcluster); what the API server
// says about a pod that cannot be read is covered here (TestPodsThatCannotBeRead).
package rbac_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/api-access-injector/api-access-injector/test/framework/testenv"
)

var (
	sharedEnv testenv.Shared
	// proxyBin is the api-proxy binary built for this run.
	proxyBin string
)

func TestMain(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "test/rbac:", err)
		code = 1
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	dir, err := os.MkdirTemp("", "rbac-test-")
	if err != nil {
		return 0, err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	proxyBin = filepath.Join(dir, "api-proxy")
	cmd := exec.Command("go", "build", "-o", proxyBin, "./cmd/api-proxy")
	cmd.Dir = "../.."
	if out, err := cmd.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("building api-proxy: %w\n%s", err, out)
	}
	defer sharedEnv.Stop()
	return m.Run(), nil
}
