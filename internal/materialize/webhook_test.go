package materialize

// The injection webhook in-process behind the real config/webhook/manifests.yaml, the way
// test/e2e runs it. A candidate for internal/testenv, so that both suites share it.

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/api-access-injector/api-access-injector/injector"
	"github.com/api-access-injector/api-access-injector/internal/server"
)

const webhookManifest = "../../config/webhook/manifests.yaml"

// loadWebhooks reads MutatingWebhookConfigurations for envtest, which points them at the
// local server as https://host:port/ + service.path; the leading slash is dropped so that
// the URL path is the one the server serves.
func loadWebhooks(paths ...string) ([]*admissionv1.MutatingWebhookConfiguration, error) {
	var out []*admissionv1.MutatingWebhookConfiguration
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		cfg := &admissionv1.MutatingWebhookConfiguration{}
		if err := yaml.UnmarshalStrict(data, cfg); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		for i := range cfg.Webhooks {
			if s := cfg.Webhooks[i].ClientConfig.Service; s != nil && s.Path != nil {
				*s.Path = strings.TrimPrefix(*s.Path, "/")
			}
		}
		out = append(out, cfg)
	}
	return out, nil
}

// startWebhook serves inj on the address envtest configured the webhooks with, waits until
// it is ready and stops it when the test ends.
func startWebhook(t *testing.T, env *envtest.Environment, cfg *rest.Config, inj *injector.Injector) {
	t.Helper()
	probeAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	o := env.WebhookInstallOptions
	mgr, err := server.New(cfg, server.Options{
		Injector: inj, CertDir: o.LocalServingCertDir, Host: o.LocalServingHost, Port: o.LocalServingPort,
		HealthProbeBindAddress: probeAddr, MetricsBindAddress: "0",
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get("http://" + probeAddr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case err := <-done:
			t.Fatalf("webhook manager stopped: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("webhook not ready on %s after 30s", probeAddr)
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
