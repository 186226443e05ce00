package chart

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/api-access-injector/api-access-injector/injector"
	"github.com/api-access-injector/api-access-injector/internal/server"
	"github.com/api-access-injector/api-access-injector/test/framework/testenv"
)

// monitoringOn enables the whole monitoring pack, and the webhook's ServiceMonitor.
var monitoringOn = []string{"--set", "metrics.serviceMonitor.enabled=true,monitoring.podMonitor.enabled=true,monitoring.prometheusRule.enabled=true,monitoring.dashboard.enabled=true"}

// TestMonitoringRender checks that the pack is off by default, and that what it renders
// matches what the injector serves: the sidecar's name and health port, the webhook entries'
// names, the metric names in the code.
func TestMonitoringRender(t *testing.T) {
	for _, kind := range []string{"PodMonitor", "PrometheusRule"} {
		if slices.ContainsFunc(render(t).kinds(), func(k string) bool { return strings.HasPrefix(k, kind+"/") }) {
			t.Errorf("default render has a %s", kind)
		}
	}
	if render(t).find("ConfigMap", fullname+"-dashboard") != nil {
		t.Error("default render has the dashboard ConfigMap")
	}

	r := render(t, monitoringOn...)
	var pm struct {
		Spec struct {
			NamespaceSelector map[string]any `json:"namespaceSelector"`
			Selector          map[string]any `json:"selector"`
			Endpoints         []struct {
				Port        string `json:"port"`
				Path        string `json:"path"`
				Relabelings []struct {
					SourceLabels []string `json:"sourceLabels"`
					Regex        string   `json:"regex"`
					Action       string   `json:"action"`
				} `json:"relabelings"`
			} `json:"podMetricsEndpoints"`
		} `json:"spec"`
	}
	if obj := r.find("PodMonitor", fullname+"-sidecars"); obj == nil {
		t.Fatalf("no PodMonitor %s-sidecars; rendered %v", fullname, r.kinds())
	} else if err := remarshal(obj.Object, &pm); err != nil {
		t.Fatal(err)
	}
	type endpoint struct{ Port, Path, Keep string }
	var got []endpoint
	for _, e := range pm.Spec.Endpoints {
		for _, rl := range e.Relabelings {
			if rl.Action == "keep" && slices.Equal(rl.SourceLabels, []string{"__meta_kubernetes_pod_container_name"}) {
				got = append(got, endpoint{e.Port, e.Path, rl.Regex})
			}
		}
	}
	if diff := cmp.Diff([]endpoint{{injector.HealthPortName, "/metrics", injector.SidecarName}}, got); diff != "" {
		t.Errorf("PodMonitor endpoints (-want +got):\n%s", diff)
	}

	// The fail-open alert names exactly the entries that fail open (Ignore), the fail-closed
	// one those that fail closed: read from the rendered webhook configuration.
	rules := ruleExprs(t, r)
	cfg := webhookConfig(t, r)
	for _, w := range cfg.Webhooks {
		alert := "ApiAccessInjectorWebhookFailingOpen"
		other := "ApiAccessInjectorWebhookFailingClosed"
		if *w.FailurePolicy == "Fail" {
			alert, other = other, alert
		}
		if !nameRegexMatches(t, rules[alert], w.Name) || nameRegexMatches(t, rules[other], w.Name) {
			t.Errorf("entry %s (failurePolicy %s): want it matched by %s only:\n%s\n%s", w.Name, *w.FailurePolicy, alert, rules[alert], rules[other])
		}
	}
	for alert, metric := range map[string]string{
		"ApiAccessInjectorAdmissionErrors":     "apiaccess_injections_total",
		"ApiAccessInjectorCertificateExpiring": server.CertificateExpiryMetric,
		"ApiAccessProxyUpstreamUnreachable":    "api_proxy_requests_total",
	} {
		if !strings.Contains(rules[alert], metric+"{") {
			t.Errorf("%s does not use %s: %s", alert, metric, rules[alert])
		}
	}

	cm := &corev1.ConfigMap{}
	r.decode(t, "ConfigMap", fullname+"-dashboard", cm)
	if cm.Labels["grafana_dashboard"] != "1" {
		t.Errorf("dashboard labels = %v, want grafana_dashboard: \"1\"", cm.Labels)
	}
	if exprs := dashboardExprs(t, cm); len(exprs) < 10 {
		t.Errorf("dashboard has %d queries, want at least 10", len(exprs))
	}
}

// TestMonitoringServerDryRun creates the pack's objects on envtest's API server, with the
// Prometheus Operator's CRDs, by server-side dry-run: their schemas accept them.
func TestMonitoringServerDryRun(t *testing.T) {
	c, err := client.New(apiServer(t), client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: releaseNamespace}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	r := render(t, append(monitoringOn, "--set", "monitoring.prometheusRule.alertLabels.team=platform",
		"--set-json", `monitoring.podMonitor.namespaceSelector={"matchNames":["shop","billing"]}`)...)
	var created []string
	for _, obj := range r.objects {
		switch obj.GetKind() {
		case "PodMonitor", "PrometheusRule", "ServiceMonitor", "ConfigMap":
		default:
			continue
		}
		// Strict: a field the CRD's schema does not know is an error, not silently dropped.
		if err := c.Create(t.Context(), obj.DeepCopy(), client.DryRunAll, client.FieldValidation("Strict")); err != nil {
			t.Errorf("%s/%s: %v", obj.GetKind(), obj.GetName(), err)
		}
		created = append(created, obj.GetKind())
	}
	for _, kind := range []string{"PodMonitor", "PrometheusRule", "ServiceMonitor", "ConfigMap"} {
		if !slices.Contains(created, kind) {
			t.Errorf("no %s rendered: %v", kind, r.kinds())
		}
	}
}

// TestAlertRules checks the alert expressions with promtool (syntax, and the rule unit tests
// in testdata/monitoring), and every dashboard query by the same parser.
func TestAlertRules(t *testing.T) {
	promtool := os.Getenv("PROMTOOL")
	if promtool == "" {
		promtool = "../../bin/promtool"
	}
	promtool, err := filepath.Abs(promtool) // it runs in the test's directory
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(promtool); err != nil {
		t.Fatalf("promtool not found at %s: run `make promtool` to install it into bin/ (or set PROMTOOL): %v", promtool, err)
	}
	r := render(t, monitoringOn...)
	rule := r.find("PrometheusRule", fullname)
	if rule == nil {
		t.Fatalf("no PrometheusRule; rendered %v", r.kinds())
	}
	dir := t.TempDir()
	spec, _ := rule.Object["spec"].(map[string]any)
	writeYAML(t, filepath.Join(dir, "rules.yaml"), spec)
	tests, err := os.ReadFile("testdata/monitoring/alerts_test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "alerts_test.yaml"), tests, 0o600); err != nil {
		t.Fatal(err)
	}

	// The dashboard's queries, as recording rules, so that promtool parses them too.
	cm := &corev1.ConfigMap{}
	r.decode(t, "ConfigMap", fullname+"-dashboard", cm)
	var records []map[string]any
	for i, e := range dashboardExprs(t, cm) {
		// Grafana's variables, as a value they take.
		e = strings.NewReplacer("$namespace", ".*", "$sidecar_namespace", ".*").Replace(e)
		records = append(records, map[string]any{"record": "dashboard:query" + string(rune('a'+i)), "expr": e})
	}
	writeYAML(t, filepath.Join(dir, "dashboard.yaml"), map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": records}}})

	for _, args := range [][]string{
		{"check", "rules", "rules.yaml", "dashboard.yaml"},
		{"test", "rules", "alerts_test.yaml"},
	} {
		cmd := exec.CommandContext(t.Context(), promtool, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// TestMissingCRDs installs, by server-side dry run, on an API server without the Prometheus
// Operator's or cert-manager's CRDs: values that need them fail at once with a message naming
// the value and what to install; the defaults install.
func TestMissingCRDs(t *testing.T) {
	env, _, err := testenv.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	user, err := env.ControlPlane.AddUser(envtest.User{Name: "helm", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	data, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, data, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		set  string
		want string // "" for success
	}{
		{"", ""},
		{"metrics.serviceMonitor.enabled=true", "metrics.serviceMonitor.enabled needs the monitoring.coreos.com/v1/ServiceMonitor kind, which this cluster does not serve: install the Prometheus Operator's CRDs first"},
		{"monitoring.podMonitor.enabled=true", "monitoring.podMonitor.enabled needs the monitoring.coreos.com/v1/PodMonitor kind"},
		{"monitoring.prometheusRule.enabled=true", "monitoring.prometheusRule.enabled needs the monitoring.coreos.com/v1/PrometheusRule kind"},
		{"certificates.mode=cert-manager", "certificates.mode=cert-manager needs the cert-manager.io/v1/Certificate kind, which this cluster does not serve: install cert-manager"},
	} {
		t.Run(tc.set, func(t *testing.T) {
			args := []string{"install", releaseName, chartDir, "--namespace", releaseNamespace, "--create-namespace", "--dry-run=server", "--kubeconfig", kubeconfig}
			if tc.set != "" {
				args = append(args, "--set", tc.set)
			}
			_, stderr, err := runHelm(t, args...)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("helm install --set %q: %v\n%s", tc.set, err, stderr)
			case tc.want != "" && (err == nil || !strings.Contains(stderr, tc.want)):
				t.Errorf("helm install --set %q: error %v, stderr:\n%s\nwant a failure saying %q", tc.set, err, stderr, tc.want)
			}
		})
	}
}

// ruleExprs returns the expression of each alert of the rendered PrometheusRule.
func ruleExprs(t *testing.T, r *rendered) map[string]string {
	t.Helper()
	obj := r.find("PrometheusRule", fullname)
	if obj == nil {
		t.Fatalf("no PrometheusRule %s; rendered %v", fullname, r.kinds())
	}
	var spec struct {
		Spec struct {
			Groups []struct {
				Rules []struct {
					Alert string `json:"alert"`
					Expr  string `json:"expr"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"spec"`
	}
	if err := remarshal(obj.Object, &spec); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, g := range spec.Spec.Groups {
		for _, rule := range g.Rules {
			out[rule.Alert] = rule.Expr
		}
	}
	return out
}

var nameMatcher = regexp.MustCompile(`name=~"([^"]+)"`)

// nameRegexMatches reports whether the name=~"..." matcher of expr matches name, anchored as
// PromQL anchors it.
func nameRegexMatches(t *testing.T, expr, name string) bool {
	t.Helper()
	m := nameMatcher.FindStringSubmatch(expr)
	if m == nil {
		t.Fatalf("no name=~ matcher in %s", expr)
	}
	re, err := regexp.Compile("^(?:" + strings.ReplaceAll(m[1], `\\`, `\`) + ")$")
	if err != nil {
		t.Fatal(err)
	}
	return re.MatchString(name)
}

// dashboardExprs returns every query of the dashboard in the ConfigMap.
func dashboardExprs(t *testing.T, cm *corev1.ConfigMap) []string {
	t.Helper()
	var dash struct {
		Panels []struct {
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal([]byte(cm.Data["api-access-injector.json"]), &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	var out []string
	for _, p := range dash.Panels {
		for _, q := range p.Targets {
			out = append(out, q.Expr)
		}
	}
	return out
}

func remarshal(in, out any) error {
	data, err := json.Marshal(in)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, out)
}

func writeYAML(t *testing.T, path string, v any) {
	t.Helper()
	data, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
