// Package chart tests the Helm chart in charts/api-access-injector with the Helm CLI: lint,
// what each mode renders, the schema's and the guards' refusals, the absence of drift from
// config/webhook/manifests.yaml, and every rendered object accepted by a real kube-apiserver
// (envtest) with server-side dry-run, the RBAC granting exactly what the webhook needs, and an
// upgrade keeping the certificates and caBundle the webhook wrote.
package chart

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/api-access-injector/api-access-injector/internal/testenv"
)

var (
	envOnce sync.Once
	env     *envtest.Environment
	envCfg  *rest.Config
	envErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if env != nil {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping envtest:", err)
		}
	}
	os.Exit(code)
}

// apiServer starts envtest's kube-apiserver once, for the tests that need one, with the CRDs
// of the optional kinds the chart renders (cert-manager's Certificate and Issuer, the
// Prometheus Operator's ServiceMonitor) from testdata/crds.
func apiServer(t *testing.T) *rest.Config {
	t.Helper()
	envOnce.Do(func() {
		e, err := testenv.New()
		if err != nil {
			envErr = err
			return
		}
		e.CRDDirectoryPaths = []string{"testdata/crds"}
		e.ErrorIfCRDPathMissing = true
		if envCfg, envErr = e.Start(); envErr != nil {
			envErr = fmt.Errorf("starting envtest: %w", envErr)
			return
		}
		env = e
	})
	if envErr != nil {
		t.Fatal(envErr)
	}
	return rest.CopyConfig(envCfg)
}

// warnings collects the API server's warnings (e.g. Pod Security's) for a test to check.
type warnings struct {
	mu   sync.Mutex
	list []string
}

// HandleWarningHeaderWithContext implements rest.WarningHandlerWithContext.
func (w *warnings) HandleWarningHeaderWithContext(_ context.Context, _ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.list = append(w.list, text)
}

func (w *warnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.list
	w.list = nil
	return out
}
