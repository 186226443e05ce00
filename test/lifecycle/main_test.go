// Package lifecycle runs the real api-access-injector binary, as the chart runs it, against a
// real kube-apiserver and etcd (envtest), through the moments of its life where users have
// been hurt: replicas starting together on a fresh install, a normal start, and a stop
// during continuous admissions. It reads the processes' JSON logs as an operator would.
package lifecycle

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/api-access-injector/api-access-injector/test/framework/testenv"
)

const webhookManifest = "../../config/webhook/manifests.yaml"

var (
	// binary is the api-access-injector command built from this tree.
	binary string
	// kubeconfig is a file that points the processes at the API server, as admin.
	kubeconfig string
	env        *envtest.Environment
	restCfg    *rest.Config
	clientset  *kubernetes.Clientset
	// front stands in for the webhook's Service: the installed webhook configuration calls
	// it, and it forwards each new connection to a ready process (see balancer).
	front *frontDoor
)

func TestMain(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lifecycle:", err)
		code = 1
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	dir, err := os.MkdirTemp("", "lifecycle-")
	if err != nil {
		return 0, err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	binary = filepath.Join(dir, "api-access-injector")
	build := exec.Command("go", "build", "-o", binary, "./cmd/api-access-injector")
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("building api-access-injector: %w\n%s", err, out)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	front = &frontDoor{Listener: ln}
	defer front.Close()
	go front.serve()
	if env, err = testenv.New(); err != nil {
		return 0, err
	}
	hooks, err := testenv.LoadWebhooks(webhookManifest)
	if err != nil {
		return 0, err
	}
	// The installed configuration calls the front; envtest makes a CA and a serving
	// certificate for 127.0.0.1, which the processes of TestGracefulShutdown serve.
	env.WebhookInstallOptions = envtest.WebhookInstallOptions{
		MutatingWebhooks: hooks, LocalServingHost: "127.0.0.1", LocalServingPort: front.Addr().(*net.TCPAddr).Port,
	}
	if restCfg, err = env.Start(); err != nil {
		return 0, fmt.Errorf("starting envtest (binaries in %s): %w", env.BinaryAssetsDirectory, err)
	}
	defer func() { _ = env.Stop() }()
	if clientset, err = kubernetes.NewForConfig(restCfg); err != nil {
		return 0, err
	}
	kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, env.KubeConfig, 0o600); err != nil {
		return 0, err
	}
	return m.Run(), nil
}
