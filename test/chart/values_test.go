package chart

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestSchemaRefuses checks that values.schema.json refuses bad values with a message naming
// the value and what is allowed.
func TestSchemaRefuses(t *testing.T) {
	for _, tc := range []struct {
		set  string
		want []string
	}{
		{"certificates.mode=bogus", []string{"/certificates/mode", "self-managed", "cert-manager", "provided"}},
		{"webhook.timeoutSeconds=60", []string{"/webhook/timeoutSeconds", "maximum", "30"}},
		{"webhook.timeoutSeconds=0", []string{"/webhook/timeoutSeconds", "minimum", "1"}},
		{"webhook.shutdownDelaySeconds=-1", []string{"/webhook/shutdownDelaySeconds", "minimum", "0"}},
		{"replicaCount=0", []string{"/replicaCount", "minimum", "1"}},
		{"webhook.failurePolicy=ignore", []string{"/webhook/failurePolicy", "Ignore", "Fail"}},
		{"sidecar.mode=kubectl-proxy", []string{"/sidecar/mode", "api-proxy", "kubectl"}},
		{"sidecar.proxyPort=80", []string{"/sidecar/proxyPort", "minimum"}},
		{"sidecar.tokenExpirationSeconds=60", []string{"/sidecar/tokenExpirationSeconds", "minimum"}},
		{"sidecar.runAsUser=0", []string{"/sidecar/runAsUser", "minimum"}},
		{"sidecar.transparentPort=0", []string{"/sidecar/transparentPort", "minimum"}},
		{"sidecar.transparentPort=70000", []string{"/sidecar/transparentPort", "maximum"}},
		{"sidecar.clusterDomain=Cluster_Local", []string{"/sidecar/clusterDomain", "does not match pattern"}},
		{"sidecar.resources.limits=null", []string{"/sidecar/resources"}},
		{"webhook.excludedNamespaces={Team_A}", []string{"/webhook/excludedNamespaces/0"}},
		{"logLevel=verbose", []string{"/logLevel", "debug"}},
		{"image.proxy.pullPolicy=sometimes", []string{"/image/proxy/pullPolicy", "IfNotPresent"}},
		{"replicas=2", []string{"replicas", "not allowed"}},
	} {
		t.Run(tc.set, func(t *testing.T) {
			stderr := renderFailure(t, "--set", tc.set)
			if !strings.Contains(stderr, "schema") {
				t.Errorf("error is not the schema's:\n%s", stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("error does not mention %q:\n%s", w, stderr)
				}
			}
		})
	}
}

// TestContradictionsFail checks the chart's own guards on values that are each valid but
// contradict one another.
func TestContradictionsFail(t *testing.T) {
	bundle := testCABundle(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"provided without secretName", []string{"--set", "certificates.mode=provided,certificates.provided.caBundle=" + bundle},
			"certificates.provided.secretName is required when certificates.mode is provided"},
		{"provided without caBundle", []string{"--set", "certificates.mode=provided,certificates.provided.secretName=my-tls"},
			"certificates.provided.caBundle is required when certificates.mode is provided"},
		{"provided caBundle not a base64 PEM", []string{"--set", "certificates.mode=provided,certificates.provided.secretName=my-tls,certificates.provided.caBundle=aGVsbG8="},
			"certificates.provided.caBundle must be a base64-encoded PEM certificate"},
		{"caBundle in self-managed mode", []string{"--set", "certificates.provided.caBundle=" + bundle},
			"certificates.provided.caBundle is set but certificates.mode is self-managed"},
		{"caBundle in cert-manager mode", []string{"--set", "certificates.mode=cert-manager,certificates.provided.caBundle=" + bundle},
			"certificates.provided.caBundle is set but certificates.mode is cert-manager"},
		{"secretName in self-managed mode", []string{"--set", "certificates.provided.secretName=my-tls"},
			"certificates.provided.secretName is set but certificates.mode is self-managed"},
		{"issuerRef in self-managed mode", []string{"--set", "certificates.certManager.issuerRef.name=corp-ca"},
			"certificates.certManager.issuerRef is set but certificates.mode is self-managed"},
		{"issuerRef without name", []string{"--set", "certificates.mode=cert-manager,certificates.certManager.issuerRef.kind=ClusterIssuer"},
			"certificates.certManager.issuerRef.name is required"},
		{"health port is the proxy port", []string{"--set", "sidecar.healthPort=8001"},
			"sidecar.healthPort and sidecar.proxyPort are both 8001"},
		{"transparent port is the proxy port", []string{"--set", "sidecar.transparentPort=8001"},
			"sidecar.transparentPort 8001 is also sidecar.proxyPort or sidecar.healthPort"},
		{"transparent port is the health port", []string{"--set", "sidecar.transparentPort=8002"},
			"sidecar.transparentPort 8002 is also sidecar.proxyPort or sidecar.healthPort"},
		{"both PDB bounds", []string{"--set", "podDisruptionBudget.maxUnavailable=1"},
			"podDisruptionBudget.minAvailable and podDisruptionBudget.maxUnavailable are both set"},
		{"PDB keeping every replica", []string{"--set", "replicaCount=1,podDisruptionBudget.enabled=true"},
			"podDisruptionBudget.minAvailable (1) must be below replicaCount (1)"},
		{"ServiceMonitor without metrics", []string{"--set", "metrics.enabled=false,metrics.serviceMonitor.enabled=true"},
			"metrics.serviceMonitor.enabled is true but metrics.enabled is false"},
		{"metrics ingress without metrics", []string{"--set", "metrics.enabled=false", "--set-json", `networkPolicy.metricsFrom=[{"podSelector":{}}]`},
			"networkPolicy.metricsFrom is set but metrics.enabled is false"},
		{"existing ServiceAccount without a name", []string{"--set", "serviceAccount.create=false"},
			"serviceAccount.name is required when serviceAccount.create is false"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if stderr := renderFailure(t, tc.args...); !strings.Contains(stderr, tc.want) {
				t.Errorf("error does not say %q:\n%s", tc.want, stderr)
			}
		})
	}
}

// TestReadmeListsEveryValue checks that the chart's README has a row for every value of
// values.yaml (a value whose whole map is one row, like resources, counts once), and no row
// for a value that does not exist.
func TestReadmeListsEveryValue(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(chartDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if err := yaml.Unmarshal(data, &values); err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(readme), "\n## Values\n")
	if !ok {
		t.Fatal("the README has no Values section")
	}
	rows := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([^`]+)` \\|").FindAllStringSubmatch(table, -1) {
		rows[m[1]] = true
	}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		if rows[prefix] {
			return
		}
		m, ok := v.(map[string]any)
		if !ok || len(m) == 0 {
			t.Errorf("value %s has no row in the README's table", prefix)
			return
		}
		for k, child := range m {
			walk(strings.TrimPrefix(prefix+"."+k, "."), child)
		}
	}
	walk("", values)
	for row := range rows {
		var v any = values
		for k := range strings.SplitSeq(row, ".") {
			m, ok := v.(map[string]any)
			if !ok {
				break
			}
			if v, ok = m[k]; !ok {
				t.Errorf("the README lists %s, which values.yaml does not have", row)
				break
			}
		}
	}
}
