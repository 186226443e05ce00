// Package chart tests the Helm chart in charts/api-access-injector with the Helm CLI: lint,
// what each mode renders, the schema's and the guards' refusals, the absence of drift from
// config/webhook/manifests.yaml, and every rendered object accepted by a real kube-apiserver
// (envtest) with server-side dry-run, the RBAC granting exactly what the webhook needs, and an
// upgrade keeping the certificates and caBundle the webhook wrote.
package chart

import (
	"os"
	"testing"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/api-access-injector/api-access-injector/test/framework/testenv"
)

// sharedEnv is envtest's kube-apiserver, with the CRDs of the optional kinds the chart
// renders (cert-manager's Certificate and Issuer, the Prometheus Operator's ServiceMonitor)
// from testdata/crds, started for the tests that need it.
var sharedEnv = testenv.Shared{Configure: func(e *envtest.Environment) {
	e.CRDDirectoryPaths = []string{"testdata/crds"}
	e.ErrorIfCRDPathMissing = true
}}

func TestMain(m *testing.M) {
	code := m.Run()
	sharedEnv.Stop()
	os.Exit(code)
}

// apiServer returns an admin configuration of the shared API server.
func apiServer(t *testing.T) *rest.Config {
	t.Helper()
	return sharedEnv.Config(t)
}
