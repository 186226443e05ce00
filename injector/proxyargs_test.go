package injector

import (
	"flag"
	"io"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/api-access-injector/api-access-injector/proxy"
)

// proxySettings are the fields of proxy.Config that the injector sets through the sidecar's
// arguments.
type proxySettings struct {
	Port, HealthPort, TLSPort                              int
	ReadOnly, AccessLog                                    bool
	KubeconfigOut, ClusterDomain, ServiceAccountOut, CADir string
}

// TestGoldenArgsParseWithProxyFlags parses the sidecar's arguments of every golden case with
// api-proxy's own flag set (in kubectl mode, the kubeconfig writer's with write-kubeconfig's),
// checks that the proxy accepts the configuration they make (Config.Validate), and that each
// option landed in the field it is meant for. A flag renamed in the proxy, or one the injector
// writes that the proxy does not define, fails here rather than in an injected pod.
func TestGoldenArgsParseWithProxyFlags(t *testing.T) {
	inputs, err := filepath.Glob("testdata/*.in.yaml")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no golden inputs: %v", err)
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".in.yaml")
		kubectl := strings.HasPrefix(name, "kubectl-")
		t.Run(name, func(t *testing.T) {
			inj := newInjector(t)
			if kubectl {
				inj = newKubectlInjector(t)
			}
			pod := readPod(t, in)
			opts, err := ParseOptions(pod.Annotations, &inj.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := inj.Mutate(Namespace{Name: pod.Namespace}, pod); err != nil {
				t.Fatal(err)
			}
			kubeconfig := injectedKubeconfigPath(t, pod)

			if kubectl {
				writer := findContainer(t, pod.Spec.InitContainers, KubeconfigInitName)
				if len(writer.Args) == 0 || writer.Args[0] != proxy.KubeconfigCommand {
					t.Fatalf("%s args %q do not start with the %s command", KubeconfigInitName, writer.Args, proxy.KubeconfigCommand)
				}
				var got proxy.KubeconfigConfig
				parseProxyArgs(t, got.BindFlags, writer.Args[1:])
				want := proxy.KubeconfigConfig{Out: kubeconfig, Port: int(opts.ProxyPort), Namespace: "$(" + namespaceEnvVar + ")"}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("write-kubeconfig flags (-want +got):\n%s", diff)
				}
				return
			}

			cfg := proxy.DefaultConfig()
			parseProxyArgs(t, cfg.BindFlags, findContainer(t, pod.Spec.InitContainers, SidecarName).Args)
			// The API server's address comes from the pod's environment, not from the args.
			cfg.Server = "https://10.96.0.1:443"
			if err := cfg.Validate(); err != nil {
				t.Errorf("api-proxy refuses the configuration of the injected args: %v", err)
			}
			want := proxySettings{
				Port:          int(opts.ProxyPort),
				HealthPort:    int(inj.cfg.Sidecar.HealthPort),
				ReadOnly:      opts.ReadOnly,
				AccessLog:     opts.AccessLog,
				KubeconfigOut: kubeconfig,
				ClusterDomain: proxy.DefaultClusterDomain,
			}
			if opts.Transparent {
				want.TLSPort = int(inj.cfg.TransparentPort)
				want.ClusterDomain = inj.cfg.ClusterDomain
				want.ServiceAccountOut = ServiceAccountOutPath
				want.CADir = CAMountPath
			}
			got := proxySettings{
				Port: cfg.Port, HealthPort: cfg.HealthPort, TLSPort: cfg.TLSPort, ReadOnly: cfg.ReadOnly, AccessLog: cfg.AccessLog,
				KubeconfigOut: cfg.KubeconfigOut, ClusterDomain: cfg.ClusterDomain, ServiceAccountOut: cfg.ServiceAccountOut, CADir: cfg.CADir,
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("api-proxy's settings from the injected args (-want +got):\n%s", diff)
			}
		})
	}
}

// parseProxyArgs parses args with a flag set that bind fills, as api-proxy does, and fails
// the test on any error or left-over argument.
func parseProxyArgs(t *testing.T, bind func(*flag.FlagSet), args []string) {
	t.Helper()
	fs := flag.NewFlagSet("api-proxy", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	bind(fs)
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
		t.Fatalf("api-proxy refuses the injected args %q: %v (left over: %q)", args, err, fs.Args())
	}
}

// findContainer returns the container called name, failing the test if there is none.
func findContainer(t *testing.T, cs []corev1.Container, name string) corev1.Container {
	t.Helper()
	i := slices.IndexFunc(cs, func(c corev1.Container) bool { return c.Name == name })
	if i < 0 {
		t.Fatalf("no container %s", name)
	}
	return cs[i]
}

// injectedKubeconfigPath is the kubeconfig file where the pod's app containers find it: the
// file KubeconfigFileName in their mount of KubeconfigVolumeName.
func injectedKubeconfigPath(t *testing.T, pod *corev1.Pod) string {
	t.Helper()
	for _, c := range pod.Spec.Containers {
		if i := slices.IndexFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == KubeconfigVolumeName }); i >= 0 {
			return path.Join(c.VolumeMounts[i].MountPath, KubeconfigFileName)
		}
	}
	t.Fatalf("no container mounts %s", KubeconfigVolumeName)
	return ""
}
