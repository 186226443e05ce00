package injector

import (
	"errors"
	"flag"
	"io"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/api-access-injector/api-access-injector/proxy"
)

func transparentPod() *corev1.Pod {
	return simplePod(map[string]string{InjectAnnotation: "true", TransparentAnnotation: "true"})
}

// TestTransparentRefusals: what transparent mode cannot coexist with is refused, naming the
// field and what to do.
func TestTransparentRefusals(t *testing.T) {
	tests := []struct {
		name            string
		kubectl         bool
		transparentPort int32
		mutate          func(*corev1.Pod)
		want            []string
		reason          Reason // the class of the refusal, for the metrics
	}{
		{"kubectl mode", true, 0, func(*corev1.Pod) {},
			[]string{`annotation apiaccess.io/transparent: "true" needs the api-proxy sidecar to serve the API over TLS, which kubectl proxy cannot`}, ReasonRefusedAnnotation},
		{"isolate-token false", false, 0, annotate(IsolateTokenAnnotation, "false"),
			[]string{`annotation apiaccess.io/isolate-token: invalid value "false": ` + TransparentIsolateTokenAdvice}, ReasonRefusedAnnotation},
		{"TLS port declared", false, 0, func(p *corev1.Pod) { p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 443}} },
			[]string{`container "app": port 443 is used by the api-proxy sidecar as its TLS port in transparent mode`}, ReasonRefusedPort},
		{"service-account path taken", false, 0, func(p *corev1.Pod) {
			p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "mine", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
			p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "mine", MountPath: TokenMountPath + "/"}}
		}, []string{`container "app": mount path /var/run/secrets/kubernetes.io/serviceaccount is used by volume "mine"`}, ReasonRefusedMount},
		{"API server name aliased elsewhere", false, 0, func(p *corev1.Pod) {
			p.Spec.HostAliases = []corev1.HostAlias{{IP: "10.0.0.1", Hostnames: []string{"kubernetes.default.svc"}}}
		}, []string{`spec.hostAliases: kubernetes.default.svc is mapped to 10.0.0.1`}, ReasonRefusedConflict},
		{"unprivileged ports start above the TLS port", false, 0, func(p *corev1.Pod) {
			p.Spec.SecurityContext = &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{{Name: unprivilegedPortSysctl, Value: "1024"}}}
		}, []string{`spec.securityContext.sysctls: net.ipv4.ip_unprivileged_port_start=1024 keeps the non-root api-proxy sidecar from binding port 443`}, ReasonRefusedConflict},
		{"proxy port is the TLS port", false, 9443, annotate(ProxyPortAnnotation, "9443"),
			[]string{`annotation apiaccess.io/proxy-port: invalid value "9443": port 9443 is the sidecar's TLS port in transparent mode`}, ReasonRefusedAnnotation},
		{"volume named apiaccess-serviceaccount", false, 0, func(p *corev1.Pod) {
			p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: ServiceAccountVolumeName})
		}, []string{`volume "apiaccess-serviceaccount": the name is reserved`}, ReasonRefusedName},
		{"volume named apiaccess-ca", false, 0, func(p *corev1.Pod) {
			p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: CAVolumeName})
		}, []string{`volume "apiaccess-ca": the name is reserved for the injected volumes; rename the volume`}, ReasonRefusedName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inj := newInjector(t)
			if tt.kubectl {
				inj = newKubectlInjector(t)
			}
			if tt.transparentPort != 0 {
				cfg := testConfig()
				cfg.TransparentPort = tt.transparentPort
				var err error
				if inj, err = New(cfg); err != nil {
					t.Fatal(err)
				}
			}
			pod := transparentPod()
			tt.mutate(pod)
			before := pod.DeepCopy()
			_, err := inj.Mutate(Namespace{Name: "team-a"}, pod)
			assertRefusal(t, err, tt.want, nil)
			var r *Refusal
			if errors.As(err, &r) && r.Why() != tt.reason {
				t.Errorf("refusal class %s, want %s", r.Why(), tt.reason)
			}
			if diff := cmp.Diff(before, pod); diff != "" {
				t.Errorf("a refused pod was changed (-before +after):\n%s", diff)
			}
		})
	}
}

// TestTransparentAccepts: what transparent mode tolerates, and what it keeps of the pod.
func TestTransparentAccepts(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*corev1.Pod)
		check  func(*testing.T, *corev1.Pod)
	}{
		{"a sysctl already low enough is kept", func(p *corev1.Pod) {
			p.Spec.SecurityContext = &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{{Name: unprivilegedPortSysctl, Value: "80"}}}
		}, func(t *testing.T, p *corev1.Pod) {
			if diff := cmp.Diff([]corev1.Sysctl{{Name: unprivilegedPortSysctl, Value: "80"}}, p.Spec.SecurityContext.Sysctls); diff != "" {
				t.Errorf("sysctls (-want +got):\n%s", diff)
			}
		}},
		{"a user's own loopback alias is kept beside ours", func(p *corev1.Pod) {
			p.Spec.HostAliases = []corev1.HostAlias{{IP: "127.0.0.1", Hostnames: []string{"cache.local"}}}
		}, func(t *testing.T, p *corev1.Pod) {
			if len(p.Spec.HostAliases) != 2 || p.Spec.HostAliases[0].Hostnames[0] != "cache.local" {
				t.Errorf("hostAliases %+v: want the user's, then ours", p.Spec.HostAliases)
			}
		}},
		{"a user's KUBERNETES_SERVICE_HOST is kept, with a warning", func(p *corev1.Pod) {
			p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: ServiceHostEnvVar, Value: "10.0.0.1"}}
		}, func(t *testing.T, p *corev1.Pod) {
			if got := envValue(p.Spec.Containers[0].Env, ServiceHostEnvVar); got != "10.0.0.1" {
				t.Errorf("%s = %q, want the user's", ServiceHostEnvVar, got)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := transparentPod()
			tt.mutate(pod)
			if _, err := newInjector(t).Mutate(Namespace{Name: "team-a"}, pod); err != nil {
				t.Fatal(err)
			}
			tt.check(t, pod)
		})
	}
}

// TestTransparentUserKubeconfigWarning: in transparent mode, a container's own KUBECONFIG is
// kept with a warning that says in-cluster configuration still reaches the sidecar, while its
// own KUBERNETES_SERVICE_HOST is kept with the warning that the container may not use it.
func TestTransparentUserKubeconfigWarning(t *testing.T) {
	pod := transparentPod()
	pod.Spec.Containers[0].Env = []corev1.EnvVar{{Name: KubeconfigEnvVar, Value: ""}, {Name: ServiceHostEnvVar, Value: "10.0.0.1"}}
	res, err := newInjector(t).Mutate(Namespace{Name: "team-a"}, pod)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`container "app" sets KUBECONFIG itself; it was kept, so a client that reads it may not use the api-proxy sidecar (in-cluster configuration still goes through the sidecar: transparent mode)`,
		`container "app" sets KUBERNETES_SERVICE_HOST itself; it was kept, so this container may not use the api-proxy sidecar`,
	}
	for _, w := range want {
		if !slices.Contains(res.Warnings, w) {
			t.Errorf("warnings %q: want %q among them", res.Warnings, w)
		}
	}
	if got := envValue(pod.Spec.Containers[0].Env, KubeconfigEnvVar); got != "" {
		t.Errorf("%s = %q, want the container's own (empty)", KubeconfigEnvVar, got)
	}
}

// TestTransparentArgsParseWithProxyFlags: the sidecar's transparent-mode arguments are flags
// api-proxy takes, with the configured port and domain, and the directory it writes is the one
// the app containers mount where in-cluster clients look.
func TestTransparentArgsParseWithProxyFlags(t *testing.T) {
	cfg := testConfig()
	cfg.TransparentPort, cfg.ClusterDomain = 6443, "corp.example"
	inj, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pod := transparentPod()
	if _, err := inj.Mutate(Namespace{Name: "team-a"}, pod); err != nil {
		t.Fatal(err)
	}
	sidecar := pod.Spec.InitContainers[0]
	pc := proxy.DefaultConfig()
	fs := flag.NewFlagSet("api-proxy", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	pc.BindFlags(fs)
	if err := fs.Parse(sidecar.Args); err != nil || fs.NArg() != 0 {
		t.Fatalf("api-proxy refuses the injected args %q: %v", sidecar.Args, err)
	}
	if diff := cmp.Diff([]any{6443, "corp.example", ServiceAccountOutPath, CAMountPath},
		[]any{pc.TLSPort, pc.ClusterDomain, pc.ServiceAccountOut, pc.CADir}); diff != "" {
		t.Errorf("tls-port, cluster-domain, serviceaccount-out, ca-dir (-want +got):\n%s", diff)
	}
	mount := func(c corev1.Container, volume string) string {
		if i := slices.IndexFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == volume }); i >= 0 {
			return c.VolumeMounts[i].MountPath
		}
		return ""
	}
	app := pod.Spec.Containers[0]
	if diff := cmp.Diff([]string{ServiceAccountOutPath, TokenMountPath}, []string{mount(sidecar, ServiceAccountVolumeName), mount(app, ServiceAccountVolumeName)}); diff != "" {
		t.Errorf("mounts of %s, sidecar and app (-want +got):\n%s", ServiceAccountVolumeName, diff)
	}
	// The CA's key: the sidecar's alone.
	if got := mount(sidecar, CAVolumeName); got != CAMountPath {
		t.Errorf("the sidecar mounts %s at %q, want %s", CAVolumeName, got, CAMountPath)
	}
	for _, c := range slices.Concat(pod.Spec.InitContainers[1:], pod.Spec.Containers) {
		if got := mount(c, CAVolumeName); got != "" {
			t.Errorf("container %q mounts %s at %s; only the sidecar may", c.Name, CAVolumeName, got)
		}
	}
	if got := mount(app, "kube-api-access-abcde"); got != "" {
		t.Errorf("the app still mounts its own token at %s", got)
	}
	if diff := cmp.Diff([]string{"127.0.0.1", "6443", "6443"}, []string{envValue(app.Env, ServiceHostEnvVar),
		envValue(app.Env, ServicePortEnvVar), envValue(app.Env, ServicePortHTTPSEnvVar)}); diff != "" {
		t.Errorf("service env (-want +got):\n%s", diff)
	}
	if pod.Spec.SecurityContext != nil && len(pod.Spec.SecurityContext.Sysctls) > 0 {
		t.Errorf("sysctls %+v for a TLS port that needs no privilege", pod.Spec.SecurityContext.Sysctls)
	}
	if got := pod.Spec.HostAliases; len(got) != 1 || !slices.Contains(got[0].Hostnames, "kubernetes.default.svc.corp.example") {
		t.Errorf("hostAliases %+v lack the cluster-domain form", got)
	}
}

// TestTransparentUpgradeAddsTheCAVolume: a pod injected in transparent mode before the CA
// volume existed, injected again (reinvocation, a re-applied manifest), ends exactly as a fresh
// injection: the golden outputs of transparent-upgrade and transparent are the same pod. (The
// patch package checks, on every golden input, that the in-place update writes only into what
// its Snapshot clones.)
func TestTransparentUpgradeAddsTheCAVolume(t *testing.T) {
	fresh := readPod(t, "testdata/transparent.golden.yaml")
	upgraded := readPod(t, "testdata/transparent-upgrade.golden.yaml")
	if diff := cmp.Diff(fresh, upgraded); diff != "" {
		t.Errorf("an upgraded transparent pod differs from a fresh injection (-fresh +upgraded):\n%s", diff)
	}
	before := readPod(t, "testdata/transparent-upgrade.in.yaml")
	if slices.ContainsFunc(before.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == CAVolumeName }) {
		t.Fatalf("the input already has %s; it must be the previous release's injection", CAVolumeName)
	}
}
