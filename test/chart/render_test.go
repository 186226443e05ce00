package chart

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// fullname is the chart's full name for the documented release name.
const fullname = "api-access-injector"

// webhookNames are the three entries of the webhook configuration, in order.
var webhookNames = []string{"opt-in.inject.apiaccess.io", "enabled.inject.apiaccess.io", "enforced.inject.apiaccess.io"}

func TestLint(t *testing.T) {
	for _, tc := range [][]string{
		nil,
		{"--set", "certificates.mode=cert-manager"},
		{"--set", "certificates.mode=provided,certificates.provided.secretName=my-tls,certificates.provided.caBundle=" + testCABundle(t)},
		{"--set", "sidecar.mode=kubectl,metrics.serviceMonitor.enabled=true,networkPolicy.enabled=true"},
	} {
		t.Run(strings.Join(tc, " "), func(t *testing.T) {
			args := append([]string{"lint", "--strict", chartDir, "--namespace", releaseNamespace}, tc...)
			if out, stderr, err := runHelm(t, args...); err != nil {
				t.Fatalf("helm lint --strict: %v\n%s%s", err, out, stderr)
			}
		})
	}
}

func TestDefaultRender(t *testing.T) {
	r := render(t)

	want := []string{
		"ClusterRole/" + fullname, "ClusterRoleBinding/" + fullname, "ConfigMap/" + fullname + "-config",
		"Deployment/" + fullname, "MutatingWebhookConfiguration/" + fullname, "PodDisruptionBudget/" + fullname,
		"Role/" + fullname, "RoleBinding/" + fullname, "Secret/" + fullname + "-tls",
		"Service/" + fullname + "-webhook", "ServiceAccount/" + fullname,
		// The helm test hooks (helm_test_test.go).
		"ServiceAccount/" + fullname + "-test", "Role/" + fullname + "-test", "RoleBinding/" + fullname + "-test",
		"ConfigMap/" + fullname + "-test", "Pod/" + fullname + "-test",
	}
	for _, names := range policyNames {
		for _, name := range names {
			want = append(want, "ValidatingAdmissionPolicy/"+name, "ValidatingAdmissionPolicyBinding/"+name)
		}
	}
	slices.Sort(want)
	if diff := cmp.Diff(want, r.kinds()); diff != "" {
		t.Errorf("rendered objects (-want +got):\n%s", diff)
	}

	var d appsv1.Deployment
	r.decode(t, "Deployment", fullname, &d)
	if d.Namespace != releaseNamespace {
		t.Errorf("Deployment namespace = %q, want %q", d.Namespace, releaseNamespace)
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Errorf("replicas = %v, want 2", d.Spec.Replicas)
	}
	if ru := d.Spec.Strategy.RollingUpdate; d.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType ||
		ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.IntValue() != 0 {
		t.Errorf("strategy = %+v, want RollingUpdate with maxUnavailable 0", d.Spec.Strategy)
	}
	pod := d.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("containers = %d, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	wantArgs := []string{
		"webhook",
		"--config=/etc/api-access-injector/config.yaml",
		"--cert-dir=/tmp/k8s-webhook-server/serving-certs",
		"--webhook-port=9443",
		"--health-probe-bind-address=:8081",
		"--metrics-bind-address=:8080",
		"--log-level=info",
		"--shutdown-delay=10s",
		"--self-managed-certs",
		"--cert-secret=" + fullname + "-tls",
		"--webhook-config-name=" + fullname,
		"--service-name=" + fullname + "-webhook",
	}
	if diff := cmp.Diff(wantArgs, c.Args); diff != "" {
		t.Errorf("args (-want +got):\n%s", diff)
	}
	// The shutdown delay, then the calls in flight (the webhook's timeoutSeconds), then 5 s.
	if g := pod.TerminationGracePeriodSeconds; g == nil || *g != 20 {
		t.Errorf("terminationGracePeriodSeconds = %v, want 10+5+5", g)
	}
	if c.Image != "api-access-injector/api-access-injector:v0.1.0" {
		t.Errorf("image = %q, want the chart's appVersion", c.Image)
	}
	if len(c.Env) != 1 || c.Env[0].Name != "POD_NAMESPACE" || c.Env[0].ValueFrom == nil ||
		c.Env[0].ValueFrom.FieldRef == nil || c.Env[0].ValueFrom.FieldRef.FieldPath != "metadata.namespace" {
		t.Errorf("env = %+v, want POD_NAMESPACE from metadata.namespace", c.Env)
	}
	checkRestricted(t, pod)
	if p := c.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/readyz" || p.HTTPGet.Port.String() != "health" {
		t.Errorf("readinessProbe = %+v, want GET /readyz on health", p)
	}
	if p := c.LivenessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" || p.HTTPGet.Port.String() != "health" {
		t.Errorf("livenessProbe = %+v, want GET /healthz on health", p)
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if diff := cmp.Diff(map[string]int32{"webhook": 9443, "metrics": 8080, "health": 8081}, ports); diff != "" {
		t.Errorf("container ports (-want +got):\n%s", diff)
	}
	if _, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok || c.Resources.Requests.Cpu().IsZero() {
		t.Errorf("resources = %+v, want requests and a memory limit", c.Resources)
	}
	if pod.PriorityClassName != "" {
		t.Errorf("priorityClassName = %q, want none by default", pod.PriorityClassName)
	}
	if len(pod.TopologySpreadConstraints) != 1 || pod.TopologySpreadConstraints[0].TopologyKey != "kubernetes.io/hostname" {
		t.Errorf("topologySpreadConstraints = %+v, want one across nodes", pod.TopologySpreadConstraints)
	}
	certs := volume(t, pod, "serving-certs")
	if certs.Secret == nil || certs.Secret.SecretName != fullname+"-tls" || certs.Secret.Optional == nil || !*certs.Secret.Optional {
		t.Errorf("serving-certs volume = %+v, want the optional Secret %s-tls", certs, fullname)
	}

	var pdb policyv1.PodDisruptionBudget
	r.decode(t, "PodDisruptionBudget", fullname, &pdb)
	if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() != 1 || pdb.Spec.MaxUnavailable != nil {
		t.Errorf("PodDisruptionBudget spec = %+v, want minAvailable 1", pdb.Spec)
	}

	var svc corev1.Service
	r.decode(t, "Service", fullname+"-webhook", &svc)
	if len(svc.Spec.Ports) == 0 || svc.Spec.Ports[0].Port != 443 || svc.Spec.Ports[0].TargetPort.String() != "webhook" {
		t.Errorf("Service ports = %+v, want 443 -> webhook", svc.Spec.Ports)
	}
	if diff := cmp.Diff(d.Spec.Selector.MatchLabels, svc.Spec.Selector); diff != "" {
		t.Errorf("Service selector differs from the Deployment's (-deployment +service):\n%s", diff)
	}

	var secret corev1.Secret
	r.decode(t, "Secret", fullname+"-tls", &secret)
	if len(secret.Data) != 0 || len(secret.StringData) != 0 || secret.Annotations["helm.sh/resource-policy"] != "keep" {
		t.Errorf("Secret = %+v, want empty data and helm.sh/resource-policy keep", secret)
	}

	var role rbacv1.Role
	r.decode(t, "Role", fullname, &role)
	wantRules := []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{fullname + "-tls"}, Verbs: []string{"get", "update", "patch"}},
		{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"list", "watch"}},
	}
	if diff := cmp.Diff(wantRules, role.Rules); diff != "" {
		t.Errorf("Role rules (-want +got):\n%s", diff)
	}
	var clusterRole rbacv1.ClusterRole
	r.decode(t, "ClusterRole", fullname, &clusterRole)
	wantRules = []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"admissionregistration.k8s.io"}, Resources: []string{"mutatingwebhookconfigurations"}, ResourceNames: []string{fullname}, Verbs: []string{"get", "update", "patch"}},
		{APIGroups: []string{"admissionregistration.k8s.io"}, Resources: []string{"mutatingwebhookconfigurations"}, Verbs: []string{"list", "watch"}},
	}
	if diff := cmp.Diff(wantRules, clusterRole.Rules); diff != "" {
		t.Errorf("ClusterRole rules (-want +got):\n%s", diff)
	}

	mwc := webhookConfig(t, r)
	for i, w := range mwc.Webhooks {
		if len(w.ClientConfig.CABundle) != 0 {
			t.Errorf("%s: caBundle set in self-managed mode; the webhook writes it", w.Name)
		}
		wantPolicy := admissionregistrationv1.Ignore
		if i == 2 {
			wantPolicy = admissionregistrationv1.Fail
		}
		if *w.FailurePolicy != wantPolicy {
			t.Errorf("%s: failurePolicy = %s, want %s", w.Name, *w.FailurePolicy, wantPolicy)
		}
		if *w.TimeoutSeconds != 5 {
			t.Errorf("%s: timeoutSeconds = %d, want 5", w.Name, *w.TimeoutSeconds)
		}
		if diff := cmp.Diff([]string{"kube-system", "kube-node-lease", releaseNamespace}, excludedNamespaces(t, w)); diff != "" {
			t.Errorf("%s: excluded namespaces (-want +got):\n%s", w.Name, diff)
		}
	}
	if len(mwc.Annotations) != 0 {
		t.Errorf("webhook configuration annotations = %v, want none in self-managed mode", mwc.Annotations)
	}

	cfg := injectorConfig(t, r)
	if got := cfg["sidecar"].(map[string]any)["image"]; got != "api-access-injector/api-proxy:v0.1.0" {
		t.Errorf("sidecar.image = %v, want the proxy image at the chart's appVersion", got)
	}
	if got := cfg["sidecar"].(map[string]any)["mode"]; got != "api-proxy" {
		t.Errorf("sidecar.mode = %v, want api-proxy", got)
	}
	if diff := cmp.Diff([]any{"kube-system", "kube-node-lease", releaseNamespace}, cfg["excludedNamespaces"]); diff != "" {
		t.Errorf("config excludedNamespaces (-want +got):\n%s", diff)
	}
	for key, want := range map[string]any{"proxyPort": 8001.0, "tokenExpirationSeconds": 3600.0} {
		if cfg[key] != want {
			t.Errorf("config %s = %v, want %v", key, cfg[key], want)
		}
	}
	if _, ok := cfg["tokenAudience"]; ok {
		t.Errorf("config tokenAudience = %v, want it unset (the API server's audience)", cfg["tokenAudience"])
	}
}

func TestCertManagerMode(t *testing.T) {
	r := render(t, "--set", "certificates.mode=cert-manager")

	for _, kind := range []string{"Role", "RoleBinding", "Secret"} {
		if o := r.find(kind, fullname); o != nil || r.find(kind, fullname+"-tls") != nil {
			t.Errorf("%s rendered in cert-manager mode; the webhook needs no API access there but the namespaces' metadata", kind)
		}
	}
	checkNamespacesOnly(t, r)
	for _, name := range []string{fullname + "-selfsigned", fullname + "-ca"} {
		if r.find("Issuer", name) == nil {
			t.Errorf("Issuer %s not rendered; rendered: %v", name, r.kinds())
		}
	}
	ca := r.find("Certificate", fullname+"-ca")
	if ca == nil {
		t.Fatalf("CA Certificate not rendered; rendered: %v", r.kinds())
	}
	if isCA, _, _ := unstructured.NestedBool(ca.Object, "spec", "isCA"); !isCA {
		t.Errorf("CA Certificate isCA = false")
	}
	serving := r.find("Certificate", fullname+"-serving")
	if serving == nil {
		t.Fatalf("serving Certificate not rendered; rendered: %v", r.kinds())
	}
	if got, _, _ := unstructured.NestedString(serving.Object, "spec", "secretName"); got != fullname+"-tls" {
		t.Errorf("serving Certificate secretName = %q, want %s-tls", got, fullname)
	}
	dnsNames, _, _ := unstructured.NestedStringSlice(serving.Object, "spec", "dnsNames")
	svcDNS := fullname + "-webhook." + releaseNamespace + ".svc"
	if !slices.Contains(dnsNames, svcDNS) {
		t.Errorf("serving Certificate dnsNames = %v, want %s among them", dnsNames, svcDNS)
	}
	if got, _, _ := unstructured.NestedString(serving.Object, "spec", "issuerRef", "name"); got != fullname+"-ca" {
		t.Errorf("serving Certificate issuer = %q, want the chart's CA issuer", got)
	}

	mwc := webhookConfig(t, r)
	if got, want := mwc.Annotations["cert-manager.io/inject-ca-from"], releaseNamespace+"/"+fullname+"-serving"; got != want {
		t.Errorf("inject-ca-from = %q, want %q", got, want)
	}
	var d appsv1.Deployment
	r.decode(t, "Deployment", fullname, &d)
	checkNoSelfManagedFlags(t, d)
	if certs := volume(t, d.Spec.Template.Spec, "serving-certs"); certs.Secret == nil ||
		certs.Secret.SecretName != fullname+"-tls" || certs.Secret.Optional != nil {
		t.Errorf("serving-certs volume = %+v, want the Secret %s-tls, not optional", certs, fullname)
	}

	t.Run("issuerRef", func(t *testing.T) {
		r := render(t, "--set", "certificates.mode=cert-manager,certificates.certManager.issuerRef.name=corp-ca,certificates.certManager.issuerRef.kind=ClusterIssuer,certificates.certManager.issuerRef.group=cert-manager.io")
		if got := r.kinds(); slices.ContainsFunc(got, func(k string) bool { return strings.HasPrefix(k, "Issuer/") }) {
			t.Errorf("Issuers rendered although issuerRef is given: %v", got)
		}
		if r.find("Certificate", fullname+"-ca") != nil {
			t.Errorf("CA Certificate rendered although issuerRef is given")
		}
		serving := r.find("Certificate", fullname+"-serving")
		if serving == nil {
			t.Fatalf("serving Certificate not rendered; rendered: %v", r.kinds())
		}
		ref, _, _ := unstructured.NestedStringMap(serving.Object, "spec", "issuerRef")
		if diff := cmp.Diff(map[string]string{"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}, ref); diff != "" {
			t.Errorf("issuerRef (-want +got):\n%s", diff)
		}
	})
}

func TestProvidedMode(t *testing.T) {
	bundle := testCABundle(t)
	r := render(t, "--set", "certificates.mode=provided,certificates.provided.secretName=my-tls,certificates.provided.caBundle="+bundle)

	mwc := webhookConfig(t, r)
	for _, w := range mwc.Webhooks {
		if got := base64.StdEncoding.EncodeToString(w.ClientConfig.CABundle); got != bundle {
			t.Errorf("%s: caBundle = %q, want the provided one", w.Name, got)
		}
	}
	if len(mwc.Annotations) != 0 {
		t.Errorf("webhook configuration annotations = %v, want none in provided mode", mwc.Annotations)
	}
	var d appsv1.Deployment
	r.decode(t, "Deployment", fullname, &d)
	checkNoSelfManagedFlags(t, d)
	if certs := volume(t, d.Spec.Template.Spec, "serving-certs"); certs.Secret == nil || certs.Secret.SecretName != "my-tls" {
		t.Errorf("serving-certs volume = %+v, want the Secret my-tls", certs)
	}
	checkNamespacesOnly(t, r)
	for _, k := range r.kinds() {
		if strings.HasSuffix(k, "/"+fullname+"-test") || k == "ClusterRole/"+fullname || k == "ClusterRoleBinding/"+fullname {
			continue // the helm test hooks, and the namespaces' metadata, in every mode
		}
		if strings.HasPrefix(k, "Secret/") || strings.HasPrefix(k, "Role") || strings.HasPrefix(k, "ClusterRole") ||
			strings.HasPrefix(k, "Certificate/") || strings.HasPrefix(k, "Issuer/") {
			t.Errorf("%s rendered in provided mode", k)
		}
	}
}

func TestKubectlMode(t *testing.T) {
	r := render(t, "--set", "sidecar.mode=kubectl")
	sidecar := injectorConfig(t, r)["sidecar"].(map[string]any)
	if sidecar["mode"] != "kubectl" || sidecar["image"] != "registry.k8s.io/kubectl:v1.37.2" {
		t.Errorf("sidecar = %v, want mode kubectl with registry.k8s.io/kubectl:v1.37.2", sidecar)
	}

	r = render(t, "--set", "sidecar.mode=kubectl,image.kubectl.digest=sha256:"+strings.Repeat("ab", 32))
	if got := injectorConfig(t, r)["sidecar"].(map[string]any)["image"]; got != "registry.k8s.io/kubectl@sha256:"+strings.Repeat("ab", 32) {
		t.Errorf("sidecar.image = %v, want the kubectl image by digest", got)
	}
}

func TestValues(t *testing.T) {
	t.Run("failurePolicy applies to opt-in and enabled only", func(t *testing.T) {
		mwc := webhookConfig(t, render(t, "--set", "webhook.failurePolicy=Fail,webhook.timeoutSeconds=3"))
		for _, w := range mwc.Webhooks {
			if *w.FailurePolicy != admissionregistrationv1.Fail || *w.TimeoutSeconds != 3 {
				t.Errorf("%s: failurePolicy %s, timeout %d; want Fail, 3", w.Name, *w.FailurePolicy, *w.TimeoutSeconds)
			}
		}
	})
	t.Run("the always excluded namespaces stay excluded", func(t *testing.T) {
		r := render(t, "--set", "webhook.excludedNamespaces={team-a}")
		for _, w := range webhookConfig(t, r).Webhooks {
			if diff := cmp.Diff([]string{"team-a", "kube-system", "kube-node-lease", releaseNamespace}, excludedNamespaces(t, w)); diff != "" {
				t.Errorf("%s: excluded namespaces (-want +got):\n%s", w.Name, diff)
			}
		}
		if diff := cmp.Diff([]any{"team-a", "kube-system", "kube-node-lease", releaseNamespace}, injectorConfig(t, r)["excludedNamespaces"]); diff != "" {
			t.Errorf("config excludedNamespaces (-want +got):\n%s", diff)
		}
	})
	t.Run("one replica has no PodDisruptionBudget", func(t *testing.T) {
		if r := render(t, "--set", "replicaCount=1"); r.find("PodDisruptionBudget", fullname) != nil {
			t.Errorf("PodDisruptionBudget rendered for one replica")
		}
		if r := render(t, "--set", "podDisruptionBudget.enabled=false"); r.find("PodDisruptionBudget", fullname) != nil {
			t.Errorf("PodDisruptionBudget rendered although disabled")
		}
		r := render(t, "--set", "replicaCount=1,podDisruptionBudget.enabled=true,podDisruptionBudget.minAvailable=null,podDisruptionBudget.maxUnavailable=1")
		var pdb policyv1.PodDisruptionBudget
		r.decode(t, "PodDisruptionBudget", fullname, &pdb)
		if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 || pdb.Spec.MinAvailable != nil {
			t.Errorf("PodDisruptionBudget spec = %+v, want maxUnavailable 1 only", pdb.Spec)
		}
	})
	t.Run("priorityClassName and sidecar defaults", func(t *testing.T) {
		r := render(t, "--set", "priorityClassName=system-cluster-critical,sidecar.proxyPort=9001,sidecar.tokenAudience=vault,image.proxy.tag=v9")
		var d appsv1.Deployment
		r.decode(t, "Deployment", fullname, &d)
		if d.Spec.Template.Spec.PriorityClassName != "system-cluster-critical" {
			t.Errorf("priorityClassName = %q", d.Spec.Template.Spec.PriorityClassName)
		}
		cfg := injectorConfig(t, r)
		if cfg["proxyPort"] != 9001.0 || cfg["tokenAudience"] != "vault" || cfg["sidecar"].(map[string]any)["image"] != "api-access-injector/api-proxy:v9" {
			t.Errorf("config = %v, want proxyPort 9001, tokenAudience vault, image api-proxy:v9", cfg)
		}
	})
	t.Run("shutdown delay and grace period follow the values", func(t *testing.T) {
		for _, c := range []struct {
			set       string
			wantArg   string
			wantGrace int64
		}{
			{"webhook.shutdownDelaySeconds=30,webhook.timeoutSeconds=10", "--shutdown-delay=30s", 45},
			{"webhook.shutdownDelaySeconds=0", "--shutdown-delay=0s", 10},
		} {
			var d appsv1.Deployment
			render(t, "--set", c.set).decode(t, "Deployment", fullname, &d)
			pod := d.Spec.Template.Spec
			if !slices.Contains(pod.Containers[0].Args, c.wantArg) {
				t.Errorf("%s: args = %v, want %s", c.set, pod.Containers[0].Args, c.wantArg)
			}
			if g := pod.TerminationGracePeriodSeconds; g == nil || *g != c.wantGrace {
				t.Errorf("%s: terminationGracePeriodSeconds = %v, want %d", c.set, g, c.wantGrace)
			}
		}
	})
	t.Run("metrics off", func(t *testing.T) {
		r := render(t, "--set", "metrics.enabled=false")
		var d appsv1.Deployment
		r.decode(t, "Deployment", fullname, &d)
		if !slices.Contains(d.Spec.Template.Spec.Containers[0].Args, "--metrics-bind-address=0") {
			t.Errorf("args = %v, want --metrics-bind-address=0", d.Spec.Template.Spec.Containers[0].Args)
		}
	})
	t.Run("ServiceMonitor and NetworkPolicy", func(t *testing.T) {
		if r := render(t); r.find("ServiceMonitor", fullname) != nil || r.find("NetworkPolicy", fullname) != nil {
			t.Errorf("ServiceMonitor or NetworkPolicy rendered by default: %v", r.kinds())
		}
		r := render(t, "--set", "metrics.serviceMonitor.enabled=true,networkPolicy.enabled=true",
			"--set-json", `networkPolicy.metricsFrom=[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"monitoring"}}}]`)
		sm := r.find("ServiceMonitor", fullname)
		if sm == nil {
			t.Fatalf("ServiceMonitor not rendered: %v", r.kinds())
		}
		if sm.GetAPIVersion() != "monitoring.coreos.com/v1" {
			t.Errorf("ServiceMonitor apiVersion = %s", sm.GetAPIVersion())
		}
		var np networkingv1.NetworkPolicy
		r.decode(t, "NetworkPolicy", fullname, &np)
		if len(np.Spec.Ingress) != 2 {
			t.Fatalf("NetworkPolicy ingress = %+v, want the webhook and the metrics rule", np.Spec.Ingress)
		}
		if webhook := np.Spec.Ingress[0]; len(webhook.From) != 0 || webhook.Ports[0].Port.String() != "webhook" {
			t.Errorf("webhook ingress = %+v, want the webhook port from anywhere", webhook)
		}
		if metrics := np.Spec.Ingress[1]; len(metrics.From) != 1 || metrics.From[0].NamespaceSelector == nil || metrics.Ports[0].Port.String() != "metrics" {
			t.Errorf("metrics ingress = %+v, want the metrics port from the monitoring namespace", metrics)
		}
	})
}

// checkRestricted checks the webhook pod against Pod Security "restricted" and the chart's
// own hardening (numeric user, read-only root filesystem).
func checkRestricted(t *testing.T, pod corev1.PodSpec) {
	t.Helper()
	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser != 65532 ||
		psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod securityContext = %+v, want runAsNonRoot, runAsUser 65532, seccomp RuntimeDefault", psc)
	}
	for _, c := range pod.Containers {
		sc := c.SecurityContext
		if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
			sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
			sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) ||
			sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
			t.Errorf("container %s securityContext = %+v, want no privilege escalation, read-only root, drop ALL, non-root", c.Name, sc)
		}
	}
}

func checkNoSelfManagedFlags(t *testing.T, d appsv1.Deployment) {
	t.Helper()
	for _, a := range d.Spec.Template.Spec.Containers[0].Args {
		for _, flag := range []string{"--self-managed-certs", "--cert-secret", "--webhook-config-name", "--service-name"} {
			if strings.HasPrefix(a, flag) {
				t.Errorf("arg %s given outside self-managed mode", a)
			}
		}
	}
}

func volume(t *testing.T, pod corev1.PodSpec, name string) corev1.Volume {
	t.Helper()
	for _, v := range pod.Volumes {
		if v.Name == name {
			return v
		}
	}
	t.Fatalf("volume %s not found in %+v", name, pod.Volumes)
	return corev1.Volume{}
}

// webhookConfig decodes the rendered webhook configuration and checks the shape every mode
// shares: the three entries, in order.
func webhookConfig(t *testing.T, r *rendered) admissionregistrationv1.MutatingWebhookConfiguration {
	t.Helper()
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	r.decode(t, "MutatingWebhookConfiguration", fullname, &mwc)
	var names []string
	for _, w := range mwc.Webhooks {
		names = append(names, w.Name)
	}
	if diff := cmp.Diff(webhookNames, names); diff != "" {
		t.Fatalf("webhook entries (-want +got):\n%s", diff)
	}
	return mwc
}

// excludedNamespaces returns the values of an entry's kubernetes.io/metadata.name NotIn expression.
func excludedNamespaces(t *testing.T, w admissionregistrationv1.MutatingWebhook) []string {
	t.Helper()
	for _, e := range w.NamespaceSelector.MatchExpressions {
		if e.Key == "kubernetes.io/metadata.name" && e.Operator == "NotIn" {
			return e.Values
		}
	}
	t.Fatalf("%s: no kubernetes.io/metadata.name NotIn expression in %+v", w.Name, w.NamespaceSelector)
	return nil
}

// injectorConfig returns the injector configuration file of the rendered ConfigMap.
func injectorConfig(t *testing.T, r *rendered) map[string]any {
	t.Helper()
	var cm corev1.ConfigMap
	r.decode(t, "ConfigMap", fullname+"-config", &cm)
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(cm.Data["config.yaml"]), &cfg); err != nil {
		t.Fatalf("config.yaml: %v\n%s", err, cm.Data["config.yaml"])
	}
	return cfg
}

// testCABundle returns a base64-encoded PEM CA certificate, as certificates.provided.caBundle
// takes: a self-signed CA made once per test binary.
func testCABundle(t *testing.T) string {
	t.Helper()
	caOnce.Do(func() {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			caErr = err
			return
		}
		tmpl := &x509.Certificate{
			SerialNumber:          big.NewInt(1),
			Subject:               pkix.Name{CommonName: "api-access-injector test CA"},
			NotBefore:             time.Now().Add(-time.Hour),
			NotAfter:              time.Now().Add(24 * time.Hour),
			IsCA:                  true,
			BasicConstraintsValid: true,
			KeyUsage:              x509.KeyUsageCertSign,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			caErr = err
			return
		}
		caBundle = base64.StdEncoding.EncodeToString(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	})
	if caErr != nil {
		t.Fatalf("making a test CA: %v", caErr)
	}
	return caBundle
}

var (
	caOnce   sync.Once
	caBundle string
	caErr    error
)

// checkNamespacesOnly: without self-managed certificates, the webhook's only API access is
// reading the namespaces' metadata (their defaults), bound to its ServiceAccount.
func checkNamespacesOnly(t *testing.T, r *rendered) {
	t.Helper()
	var clusterRole rbacv1.ClusterRole
	r.decode(t, "ClusterRole", fullname, &clusterRole)
	want := []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"get", "list", "watch"}}}
	if diff := cmp.Diff(want, clusterRole.Rules); diff != "" {
		t.Errorf("ClusterRole rules (-want +got):\n%s", diff)
	}
	var binding rbacv1.ClusterRoleBinding
	r.decode(t, "ClusterRoleBinding", fullname, &binding)
	if binding.RoleRef.Name != fullname || len(binding.Subjects) != 1 || binding.Subjects[0].Name != fullname {
		t.Errorf("ClusterRoleBinding %+v, want the ClusterRole bound to the webhook's ServiceAccount", binding)
	}
}
