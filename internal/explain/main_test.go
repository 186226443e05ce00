package explain_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/go-logr/logr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/api-access-injector/api-access-injector/injector"
	"github.com/api-access-injector/api-access-injector/test/framework/testenv"
)

const (
	// webhookManifest is the chart-rendered webhook configuration (test/chart fails on drift).
	webhookManifest   = "../../config/webhook/manifests.yaml"
	injectorNamespace = "api-access-system"
	injectorVersion   = "v9.8.7-explain"
)

var (
	env       *envtest.Environment
	restCfg   *rest.Config
	clientset *kubernetes.Clientset
)

// TestMain starts a real API server with the webhook configuration installed and the webhook
// serving it, as the e2e suite does: explain is checked against what the API server does.
func TestMain(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "explain:", err)
		code = 1
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	ctrl.SetLogger(logr.Discard())
	inj, err := injector.New(injector.Config{Version: injectorVersion, Sidecar: injector.SidecarConfig{Image: "registry.example.com/api-proxy:explain"},
		ExcludedNamespaces: []string{injectorNamespace}})
	if err != nil {
		return 0, err
	}
	if env, restCfg, err = testenv.Start(webhookManifest); err != nil {
		return 0, err
	}
	defer func() { _ = env.Stop() }()
	if clientset, err = kubernetes.NewForConfig(restCfg); err != nil {
		return 0, err
	}
	stop, err := testenv.StartWebhook(env, restCfg, inj, nil)
	if err != nil {
		return 0, err
	}
	defer stop()
	return m.Run(), nil
}
