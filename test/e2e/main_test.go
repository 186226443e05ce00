// Package e2e runs the injection webhook in-process behind the real webhook configuration
// (config/webhook) and a real kube-apiserver and etcd (envtest), and checks what the API
// server stores.
package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/api-access-injector/api-access-injector/injector"
	"github.com/api-access-injector/api-access-injector/test/framework/testenv"
)

const (
	webhookManifest      = "../../config/webhook/manifests.yaml"
	lateContainerWebhook = "testdata/late-container-webhook.yaml"
	lateContainerPath    = "/e2e/add-late-container"
	sidecarImage         = "registry.example.com/api-proxy:e2e"
	injectorNamespace    = "api-access-system"
)

var (
	env       *envtest.Environment
	restCfg   *rest.Config
	clientset *kubernetes.Clientset
	inj       *injector.Injector
	stopHook  func()
)

func TestMain(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		code = 1
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	ctrl.SetLogger(logr.Discard())
	var err error
	if inj, err = injector.New(injector.Config{Version: "e2e", Sidecar: injector.SidecarConfig{Image: sidecarImage},
		ExcludedNamespaces: []string{injectorNamespace}}); err != nil {
		return 0, err
	}
	if env, restCfg, err = testenv.Start(webhookManifest, lateContainerWebhook); err != nil {
		return 0, err
	}
	defer func() { _ = env.Stop() }()
	if clientset, err = kubernetes.NewForConfig(restCfg); err != nil {
		return 0, err
	}
	if err := startWebhook(); err != nil {
		return 0, err
	}
	defer func() { stopHook() }() // the server may have been restarted by a test
	return m.Run(), nil
}

// startWebhook starts the webhook process with the test's own late-container webhook.
func startWebhook() error {
	stop, err := testenv.StartWebhook(env, restCfg, inj, func(mgr manager.Manager) {
		mgr.GetWebhookServer().Register(lateContainerPath, &admission.Webhook{Handler: admission.HandlerFunc(addLateContainer)})
	})
	if err != nil {
		return err
	}
	stopHook = stop
	return nil
}

// waitWebhookDown waits until the webhook port refuses connections.
func waitWebhookDown() error {
	o := env.WebhookInstallOptions
	addr := net.JoinHostPort(o.LocalServingHost, strconv.Itoa(o.LocalServingPort))
	for range 100 {
		conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // a liveness check only
		if err != nil {
			return nil
		}
		conn.Close()
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("webhook still serving on %s", addr)
}

// lateContainer is what the test's second webhook adds.
var lateContainer = corev1.Container{
	Name: "late", Image: "registry.example.com/late:1", Command: []string{"/late"},
	SecurityContext: restrictedContainer(),
}

func addLateContainer(_ context.Context, req admission.Request) admission.Response {
	pod := &corev1.Pod{}
	if err := json.Unmarshal(req.Object.Raw, pod); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	for _, c := range pod.Spec.Containers {
		if c.Name == lateContainer.Name {
			return admission.Allowed("already there")
		}
	}
	pod.Spec.Containers = append(pod.Spec.Containers, lateContainer)
	mutated, err := json.Marshal(pod)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	return admission.PatchResponseFromRaw(req.Object.Raw, mutated)
}
