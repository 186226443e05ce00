package injector

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func testConfig() Config {
	return Config{Version: "test", Sidecar: SidecarConfig{Image: "registry.example.com/api-proxy:test"}}
}

func newInjector(t testing.TB) *Injector {
	t.Helper()
	i, err := New(testConfig())
	if err != nil {
		t.Fatal(err)
	}
	return i
}

// kubectlConfig is testConfig in sidecar.mode kubectl.
func kubectlConfig() Config {
	cfg := testConfig()
	cfg.Sidecar.Mode, cfg.Sidecar.Image = SidecarKubectl, "registry.k8s.io/kubectl:v1.37.2"
	cfg.Sidecar.InitImage = "registry.example.com/api-proxy:test"
	return cfg
}

func newKubectlInjector(t testing.TB) *Injector {
	t.Helper()
	i, err := New(kubectlConfig())
	if err != nil {
		t.Fatal(err)
	}
	return i
}

// simplePod is a pod as the API server hands it to the webhook: one container, the
// kube-api-access volume of the ServiceAccount plugin, annotations as given.
func simplePod(annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: "team-a", Annotations: annotations},
		Spec: corev1.PodSpec{
			ServiceAccountName: "app",
			Containers: []corev1.Container{{
				Name: "app", Image: "app:1",
				Ports:        []corev1.ContainerPort{{ContainerPort: 8080}},
				VolumeMounts: []corev1.VolumeMount{{Name: "kube-api-access-abcde", MountPath: TokenMountPath, ReadOnly: true}},
			}},
			Volumes: []corev1.Volume{{Name: "kube-api-access-abcde", VolumeSource: corev1.VolumeSource{
				Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
					{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token"}},
				}},
			}}},
		},
	}
}

func TestDecide(t *testing.T) {
	inj := newInjector(t)
	cfg := testConfig()
	cfg.ExcludedNamespaces = []string{"platform"}
	withExtra, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	const absent = "<absent>"
	tests := []struct {
		namespace  string
		mode       NamespaceMode
		annotation string
		inject     bool
		warning    string
		code       Reason
	}{
		// The decision table of interface.md, row by row.
		{"team-a", ModeOptIn, absent, false, "", ReasonNotOptedIn},
		{"team-a", ModeOptIn, "false", false, "", ReasonNotOptedIn},
		{"team-a", ModeOptIn, "true", true, "", ReasonOptedIn},
		{"team-a", ModeEnabled, absent, true, "", ReasonNamespaceEnabled},
		{"team-a", ModeEnabled, "true", true, "", ReasonNamespaceEnabled},
		{"team-a", ModeEnabled, "false", false, "", ReasonOptedOut},
		{"team-a", ModeEnforced, absent, true, "", ReasonNamespaceEnforced},
		{"team-a", ModeEnforced, "true", true, "", ReasonNamespaceEnforced},
		{"team-a", ModeEnforced, "false", true, `"false" overridden: namespace team-a is labelled apiaccess.io/injection=enforced`, ReasonEnforcedOverride},
		{"team-a", ModeDisabled, absent, false, "", ReasonNamespaceDisabled},
		{"team-a", ModeDisabled, "true", false, "", ReasonNamespaceDisabled},
		{"team-a", ModeDisabled, "not-a-bool", false, "", ReasonNamespaceDisabled},
		// Always untouched, whatever the labels say.
		{"kube-system", ModeEnforced, "true", false, "", ReasonExcludedNamespace},
		{"kube-node-lease", ModeEnabled, "true", false, "", ReasonExcludedNamespace},
		{"platform", ModeEnforced, "true", false, "", ReasonExcludedNamespace},
	}
	for _, tt := range tests {
		t.Run(tt.namespace+"/"+string(tt.mode)+"/"+tt.annotation, func(t *testing.T) {
			pod := simplePod(nil)
			if tt.annotation != absent {
				pod.Annotations = map[string]string{InjectAnnotation: tt.annotation}
			}
			d, err := withExtra.Decide(Namespace{Name: tt.namespace, Mode: tt.mode}, pod)
			if err != nil {
				t.Fatalf("Decide: %v", err)
			}
			if d.Inject != tt.inject {
				t.Errorf("Inject = %v, want %v (reason %q)", d.Inject, tt.inject, d.Reason)
			}
			if d.Reason == "" {
				t.Error("Reason is empty")
			}
			if d.Code != tt.code || d.Code.Injects() != d.Inject {
				t.Errorf("Code = %v, want %v (Injects must equal Inject)", d.Code, tt.code)
			}
			got := strings.Join(d.Warnings, "\n")
			if (tt.warning == "") != (got == "") || !strings.Contains(got, tt.warning) {
				t.Errorf("warnings = %q, want one containing %q", got, tt.warning)
			}
		})
	}
	// Without the extra exclusion, the same namespace is injected.
	if d, _ := inj.Decide(Namespace{Name: "platform", Mode: ModeEnforced}, simplePod(nil)); !d.Inject {
		t.Error("namespace platform excluded without being configured")
	}
}

func TestRefusals(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*corev1.Pod)
		want   []string // substrings of the refusal message
	}{
		{"inject not a bool", annotate(InjectAnnotation, "yes"),
			[]string{`annotation apiaccess.io/inject: invalid value "yes"`, `must be "true" (opt in) or "false" (opt out)`}},
		{"port not a number", annotate(ProxyPortAnnotation, "http"),
			[]string{`annotation apiaccess.io/proxy-port: invalid value "http"`, "integer from 1024 to 65535"}},
		{"port privileged", annotate(ProxyPortAnnotation, "80"), []string{`apiaccess.io/proxy-port: invalid value "80"`}},
		{"port too large", annotate(ProxyPortAnnotation, "65536"), []string{`apiaccess.io/proxy-port: invalid value "65536"`}},
		{"port is the health port", annotate(ProxyPortAnnotation, "8002"), []string{`invalid value "8002"`, "health port"}},
		{"expiration too short", annotate(TokenExpirationSecondsAnnotation, "599"),
			[]string{`apiaccess.io/token-expiration-seconds: invalid value "599"`, "integer from 600 to 86400"}},
		{"expiration too long", annotate(TokenExpirationSecondsAnnotation, "86401"), []string{`invalid value "86401"`}},
		{"expiration with unit", annotate(TokenExpirationSecondsAnnotation, "1h"), []string{`invalid value "1h"`}},
		{"empty audience", annotate(TokenAudienceAnnotation, ""), []string{`apiaccess.io/token-audience: invalid value ""`}},
		{"read-only not a bool", annotate(ReadOnlyAnnotation, "True"), []string{`apiaccess.io/read-only: invalid value "True"`, `"true" or "false"`}},
		{"isolate-token not a bool", annotate(IsolateTokenAnnotation, "1"), []string{`apiaccess.io/isolate-token: invalid value "1"`}},
		{"containers empty entry", annotate(ContainersAnnotation, "app,,x"), []string{`apiaccess.io/containers: invalid value "app,,x"`, "no empty entry"}},
		{"containers unknown", annotate(ContainersAnnotation, "app, web"),
			[]string{`apiaccess.io/containers: invalid value "app, web"`, `the pod has no container "web"; it has "app"`}},
		{"host network", func(p *corev1.Pod) { p.Spec.HostNetwork = true }, []string{"spec.hostNetwork: true", "node's loopback"}},
		{"container named api-proxy", func(p *corev1.Pod) {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: SidecarName, Image: "x"})
		}, []string{`container "api-proxy": the name is reserved`}},
		{"init container named api-proxy", func(p *corev1.Pod) {
			p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: SidecarName, Image: "x"})
		}, []string{`init container "api-proxy": the name is reserved`}},
		{"init container named apiaccess-kubeconfig", func(p *corev1.Pod) {
			p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: KubeconfigInitName, Image: "x"})
		}, []string{`init container "apiaccess-kubeconfig": the name is reserved for the injected init container`}},
		{"container named apiaccess-kubeconfig", func(p *corev1.Pod) {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: KubeconfigInitName, Image: "x"})
		}, []string{`container "apiaccess-kubeconfig": the name is reserved for the injected init container`}},
		{"volume named apiaccess-token", func(p *corev1.Pod) {
			p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: TokenVolumeName})
		}, []string{`volume "apiaccess-token": the name is reserved`}},
		{"volume named apiaccess-kubeconfig", func(p *corev1.Pod) {
			p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: KubeconfigVolumeName})
		}, []string{`volume "apiaccess-kubeconfig": the name is reserved`}},
		{"proxy port declared", func(p *corev1.Pod) {
			p.Spec.Containers[0].Ports = append(p.Spec.Containers[0].Ports, corev1.ContainerPort{ContainerPort: 8001})
		}, []string{`container "app": port 8001 is used by the api-proxy sidecar`}},
		{"health port declared by an init container", func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "init", Ports: []corev1.ContainerPort{{ContainerPort: 8002}}}}
		}, []string{`container "init": port 8002 is used`}},
		{"custom proxy port declared", func(p *corev1.Pod) {
			annotate(ProxyPortAnnotation, "8080")(p)
		}, []string{`container "app": port 8080 is used by the api-proxy sidecar (proxy port 8080`}},
		{"kubeconfig mount path taken", func(p *corev1.Pod) {
			p.Spec.Containers[0].VolumeMounts = append(p.Spec.Containers[0].VolumeMounts, corev1.VolumeMount{Name: "mine", MountPath: KubeconfigMountPath})
		}, []string{`container "app": mount path /var/run/apiaccess is used by volume "mine"`}},
		{"every problem at once", func(p *corev1.Pod) {
			annotate(ProxyPortAnnotation, "1")(p)
			annotate(ReadOnlyAnnotation, "yes")(p)
			p.Spec.HostNetwork = true
		}, []string{"apiaccess.io/proxy-port", "apiaccess.io/read-only", "spec.hostNetwork"}},
	}
	inj := newInjector(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := simplePod(map[string]string{InjectAnnotation: "true"})
			tt.mutate(pod)
			before := pod.DeepCopy()
			_, err := inj.Mutate(Namespace{Name: "team-a"}, pod)
			refusal, ok := errors.AsType[*Refusal](err)
			if !ok {
				t.Fatalf("Mutate error = %v, want a *Refusal", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(refusal.Error(), w) {
					t.Errorf("refusal %q\ndoes not contain %q", refusal.Error(), w)
				}
			}
			if diff := cmp.Diff(before, pod); diff != "" {
				t.Errorf("a refused pod was changed (-before +after):\n%s", diff)
			}
		})
	}
}

func annotate(key, value string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		if p.Annotations == nil {
			p.Annotations = map[string]string{}
		}
		p.Annotations[key] = value
	}
}

func TestUserEnvIsKept(t *testing.T) {
	pod := simplePod(map[string]string{InjectAnnotation: "true"})
	pod.Spec.Containers[0].Env = []corev1.EnvVar{
		{Name: KubeconfigEnvVar, Value: "/home/app/.kube/config"},
		{Name: KubeAPIURLEnvVar, ValueFrom: &corev1.EnvVarSource{FieldRef: fieldRef("metadata.name")}},
	}
	want := pod.Spec.Containers[0].Env
	res, err := newInjector(t).Mutate(Namespace{Name: "team-a"}, pod)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, pod.Spec.Containers[0].Env); diff != "" {
		t.Errorf("user env changed (-want +got):\n%s", diff)
	}
	if len(res.Warnings) != 2 || !strings.Contains(res.Warnings[0], `container "app" sets KUBECONFIG itself; it was kept`) {
		t.Errorf("warnings = %q, want one per kept variable", res.Warnings)
	}
}

// TestReinjectionUpdatesItsOwnEnv: a manifest injected offline and then edited to another
// port gets the new port, because the old value is recognisably the injector's own.
func TestReinjectionUpdatesItsOwnEnv(t *testing.T) {
	inj := newInjector(t)
	pod := simplePod(map[string]string{InjectAnnotation: "true"})
	if _, err := inj.Inject("team-a", pod); err != nil {
		t.Fatal(err)
	}
	pod.Annotations[ProxyPortAnnotation] = "9001"
	res, err := inj.Mutate(Namespace{Name: "team-a"}, pod)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Warnings) != 0 {
		t.Errorf("warnings = %q, want none", res.Warnings)
	}
	env := pod.Spec.Containers[0].Env
	if i := len(env) - 1; env[i].Name != KubeAPIURLEnvVar || env[i].Value != "http://127.0.0.1:9001" {
		t.Errorf("env = %v, want KUBE_API_URL on port 9001", env)
	}
	if got := pod.Spec.InitContainers[0].Args[0]; got != "--port=9001" {
		t.Errorf("sidecar args[0] = %q, want --port=9001", got)
	}
}

func TestServiceAccountDefaulted(t *testing.T) {
	for _, tt := range []struct{ name, deprecated, want string }{
		{"neither set", "", "default"},
		{"deprecated field set", "legacy", "legacy"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pod := simplePod(nil)
			pod.Spec.ServiceAccountName, pod.Spec.DeprecatedServiceAccount = "", tt.deprecated
			if _, err := newInjector(t).Inject("team-a", pod); err != nil {
				t.Fatal(err)
			}
			if pod.Spec.ServiceAccountName != tt.want {
				t.Errorf("serviceAccountName = %q, want %q", pod.Spec.ServiceAccountName, tt.want)
			}
		})
	}
}

func TestConfigValidateReportsEverything(t *testing.T) {
	cfg := Config{ProxyPort: 80, TokenExpirationSeconds: 5, ExcludedNamespaces: []string{"Bad_NS"},
		Sidecar: SidecarConfig{ImagePullPolicy: "Sometimes", HealthPort: 80, RunAsUser: -1,
			ImagePullSecrets: []corev1.LocalObjectReference{{Name: "ok"}, {Name: "Not_A_Name"}}}}
	cfg.Default()
	cfg.Sidecar.Resources.Limits = nil
	err := cfg.Validate()
	if err == nil {
		t.Fatal("Validate accepted a bad config")
	}
	for _, want := range []string{"sidecar.image: required", `sidecar.imagePullPolicy: "Sometimes"`, "proxyPort: 80 is out of range",
		"sidecar.healthPort: 80 is also the proxyPort", "sidecar.runAsUser: -1", "tokenExpirationSeconds: 5",
		"sidecar.resources.limits.memory: required", `excludedNamespaces[0]: "Bad_NS"`,
		`sidecar.imagePullSecrets[1].name: "Not_A_Name" is not a Secret name`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q\ndoes not contain %q", err, want)
		}
	}
	if _, err := LoadConfig([]byte("sidecar:\n  imagee: x\n")); err == nil || !strings.Contains(err.Error(), "imagee") {
		t.Errorf("LoadConfig accepted an unknown key: %v", err)
	}
}

func TestParseNamespaceMode(t *testing.T) {
	for _, v := range []string{"", "enabled", "enforced", "disabled"} {
		if m, err := ParseNamespaceMode(v); err != nil || string(m) != v {
			t.Errorf("ParseNamespaceMode(%q) = %q, %v", v, m, err)
		}
	}
	if _, err := ParseNamespaceMode("enable"); err == nil || !strings.Contains(err.Error(), `invalid value "enable"`) {
		t.Errorf(`ParseNamespaceMode("enable") error = %v`, err)
	}
}

func TestKubectlMode(t *testing.T) {
	cfg := kubectlConfig()
	inj := newKubectlInjector(t)
	pod := simplePod(map[string]string{InjectAnnotation: "true", ReadOnlyAnnotation: "true", ProxyPortAnnotation: "9001"})
	pod.Spec.Containers[0].Ports = append(pod.Spec.Containers[0].Ports, corev1.ContainerPort{ContainerPort: DefaultHealthPort})
	if _, err := inj.Mutate(Namespace{Name: "team-a"}, pod); err != nil {
		t.Fatalf("Mutate: %v (the health port is free in kubectl mode)", err)
	}
	c := pod.Spec.InitContainers[0]
	want := []string{"proxy", "--port=9001", "--address=127.0.0.1", "--reject-methods=^(POST|PUT|PATCH|DELETE)$", "--reject-paths=" + kubectlReadOnlyPaths}
	if diff := cmp.Diff(want, c.Args); diff != "" {
		t.Errorf("args (-want +got):\n%s", diff)
	}
	if c.Image != cfg.Sidecar.Image || c.Ports != nil || c.LivenessProbe != nil {
		t.Errorf("image %q, ports %v, liveness %v; want the kubectl image, no port, no liveness probe", c.Image, c.Ports, c.LivenessProbe)
	}
	if diff := cmp.Diff([]string{"kubectl", "--server=http://127.0.0.1:9001", "get", "--raw=/readyz"}, c.StartupProbe.Exec.Command); diff != "" {
		t.Errorf("startup probe (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]corev1.VolumeMount{{Name: TokenVolumeName, MountPath: TokenMountPath, ReadOnly: true}}, c.VolumeMounts); diff != "" {
		t.Errorf("sidecar mounts (-want +got); kubectl reads the in-cluster path and writes no kubeconfig:\n%s", diff)
	}
	if names := []string{pod.Spec.InitContainers[0].Name, pod.Spec.InitContainers[1].Name}; !cmp.Equal(names, []string{SidecarName, KubeconfigInitName}) {
		t.Errorf("init containers start with %q, want the sidecar, then the kubeconfig writer", names)
	}
	init := pod.Spec.InitContainers[1]
	if init.Image != cfg.Sidecar.InitImage || init.RestartPolicy != nil {
		t.Errorf("kubeconfig writer: image %q, restartPolicy %v; want the api-proxy image, a regular init container", init.Image, init.RestartPolicy)
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if init.Resources.Requests.Name(r, "").IsZero() || init.Resources.Limits.Name(r, "").IsZero() {
			t.Errorf("kubeconfig writer: %s request or limit missing: a LimitRange would add it, a ResourceQuota refuse the pod", r)
		}
	}
	cfg.Sidecar.InitImage = ""
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "sidecar.initImage: required when sidecar.mode is kubectl") {
		t.Errorf("Validate accepted kubectl mode without an init image: %v", err)
	}
	if err := (&Config{Sidecar: SidecarConfig{Mode: "kubelet"}}).Validate(); err == nil || !strings.Contains(err.Error(), `sidecar.mode: "kubelet" is not one of api-proxy, kubectl`) {
		t.Errorf("Validate accepted a bad mode: %v", err)
	}
}

// assertRefusal checks that err is a *Refusal whose message contains every want and none of
// the notWant.
func assertRefusal(t *testing.T, err error, want, notWant []string) {
	t.Helper()
	refusal, ok := errors.AsType[*Refusal](err)
	if !ok {
		t.Fatalf("error = %v, want a *Refusal", err)
	}
	for _, w := range want {
		if !strings.Contains(refusal.Error(), w) {
			t.Errorf("refusal %q\ndoes not contain %q", refusal.Error(), w)
		}
	}
	for _, w := range notWant {
		if strings.Contains(refusal.Error(), w) {
			t.Errorf("refusal %q\ncontains %q", refusal.Error(), w)
		}
	}
}
