package injector

import (
	"flag"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/api-access-injector/api-access-injector/proxy"
)

// immutableFieldPaths are the pod fields that cannot change after the pod is created. The
// downward API can also reach metadata.labels, metadata.annotations and container resources,
// which patch rights (or an in-place resize) change while the pod runs.
var immutableFieldPaths = []string{"metadata.name", "metadata.namespace", "metadata.uid"}

// staleKubeconfig is what an earlier version put in KubeconfigAnnotation, as rewritten by
// someone with patch rights on the pod: an exec plugin that kubectl and client-go would run.
const staleKubeconfig = `apiVersion: v1
kind: Config
users:
- name: evil
  user:
    exec: {apiVersion: client.authentication.k8s.io/v1, command: /bin/sh, args: ["-c", "id"]}
`

// TestNothingMutableFeedsTheApp checks, in both sidecar modes, that no volume mounted into
// an app container, and no variable set in one, is fed by a pod field that can change after
// admission: the kubeconfig the app loads must not be rewritable by whoever may patch the pod.
// The containers the injector adds get only immutable fields, and the annotation an earlier
// version wrote is removed.
func TestNothingMutableFeedsTheApp(t *testing.T) {
	for name, inj := range map[string]*Injector{"api-proxy": newInjector(t), "kubectl": newKubectlInjector(t)} {
		for _, in := range []string{"testdata/opt-in.in.yaml", "testdata/options.in.yaml", "testdata/realistic.in.yaml", "testdata/kubectl-mode.in.yaml"} {
			t.Run(name+"/"+in, func(t *testing.T) {
				pod := readPod(t, in)
				annotate(KubeconfigAnnotation, staleKubeconfig)(pod)
				if _, err := inj.Mutate(Namespace{Name: pod.Namespace}, pod); err != nil {
					t.Fatal(err)
				}
				status, ok := ParseStatus(pod.Annotations)
				if !ok {
					t.Fatal("no status annotation")
				}
				if v, found := pod.Annotations[KubeconfigAnnotation]; found {
					t.Errorf("annotation %s survived injection: %q", KubeconfigAnnotation, v)
				}
				volumes := map[string]corev1.Volume{}
				for _, v := range pod.Spec.Volumes {
					volumes[v.Name] = v
				}
				if v := volumes[KubeconfigVolumeName]; v.EmptyDir == nil || v.EmptyDir.Medium != corev1.StorageMediumMemory {
					t.Errorf("volume %s = %+v, want a memory-backed emptyDir", KubeconfigVolumeName, v.VolumeSource)
				}
				for _, c := range containers(pod) {
					injectedVolumes := slices.Clone(status.Volumes)
					if !slices.Contains(status.Containers, c.Name) {
						if !ours(c.Name) {
							continue
						}
						injectedVolumes = nil // check every volume of our own containers
						for _, m := range c.VolumeMounts {
							injectedVolumes = append(injectedVolumes, m.Name)
						}
					}
					for _, m := range c.VolumeMounts {
						if !slices.Contains(injectedVolumes, m.Name) {
							continue // the user's own volume
						}
						if ours(c.Name) != !m.ReadOnly && m.Name == KubeconfigVolumeName {
							t.Errorf("container %q mounts %s read-only=%v: only the writer may write it", c.Name, m.Name, m.ReadOnly)
						}
						for _, f := range mutableFields(volumes[m.Name]) {
							t.Errorf("container %q mounts volume %q, fed by the pod field %s, which can change after admission", c.Name, m.Name, f)
						}
					}
					for _, e := range c.Env {
						if e.ValueFrom == nil || !(ours(c.Name) || e.Name == KubeconfigEnvVar || e.Name == KubeAPIURLEnvVar) {
							continue
						}
						if f := e.ValueFrom.FieldRef; f == nil || !slices.Contains(immutableFieldPaths, f.FieldPath) {
							t.Errorf("container %q: variable %s comes from %+v, which can change after admission", c.Name, e.Name, e.ValueFrom)
						}
					}
				}
			})
		}
	}
}

// mutableFields lists the pod fields, other than immutable ones, that feed a volume.
func mutableFields(v corev1.Volume) []string {
	var items []corev1.DownwardAPIVolumeFile
	if v.DownwardAPI != nil {
		items = append(items, v.DownwardAPI.Items...)
	}
	if v.Projected != nil {
		for _, p := range v.Projected.Sources {
			if p.DownwardAPI != nil {
				items = append(items, p.DownwardAPI.Items...)
			}
		}
	}
	var out []string
	for _, it := range items {
		switch {
		case it.ResourceFieldRef != nil:
			out = append(out, "resource "+it.ResourceFieldRef.Resource)
		case it.FieldRef != nil && !slices.Contains(immutableFieldPaths, it.FieldRef.FieldPath):
			out = append(out, it.FieldRef.FieldPath)
		}
	}
	return out
}

// TestInjectedArgsParseWithProxyFlags parses the arguments the injector gives api-proxy with
// api-proxy's own flag sets, so that renaming a flag cannot silently break injected pods, and
// checks that the kubeconfig is written where the app containers' KUBECONFIG points.
func TestInjectedArgsParseWithProxyFlags(t *testing.T) {
	parse := func(t *testing.T, bind func(*flag.FlagSet), args []string) {
		t.Helper()
		fs := flag.NewFlagSet("api-proxy", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		bind(fs)
		if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
			t.Fatalf("api-proxy refuses the injected args %q: %v (left over: %q)", args, err, fs.Args())
		}
	}
	pod := simplePod(map[string]string{InjectAnnotation: "true", ProxyPortAnnotation: "9001"})
	if _, err := newInjector(t).Mutate(Namespace{Name: "team-a"}, pod); err != nil {
		t.Fatal(err)
	}
	app := pod.Spec.Containers[0]
	kubeconfig := app.Env[slices.IndexFunc(app.Env, func(e corev1.EnvVar) bool { return e.Name == KubeconfigEnvVar })].Value

	t.Run("api-proxy sidecar", func(t *testing.T) {
		cfg := proxy.DefaultConfig()
		parse(t, cfg.BindFlags, pod.Spec.InitContainers[0].Args)
		if diff := cmp.Diff([]any{9001, kubeconfig}, []any{cfg.Port, cfg.KubeconfigOut}); diff != "" {
			t.Errorf("port, kubeconfig-out (-want +got):\n%s", diff)
		}
	})
	t.Run("kubectl mode kubeconfig writer", func(t *testing.T) {
		pod := simplePod(map[string]string{InjectAnnotation: "true", ProxyPortAnnotation: "9001"})
		if _, err := newKubectlInjector(t).Mutate(Namespace{Name: "team-a"}, pod); err != nil {
			t.Fatal(err)
		}
		args := pod.Spec.InitContainers[1].Args
		if args[0] != proxy.KubeconfigCommand {
			t.Fatalf("args %q do not start with the %s command", args, proxy.KubeconfigCommand)
		}
		var cfg proxy.KubeconfigConfig
		parse(t, cfg.BindFlags, args[1:])
		want := proxy.KubeconfigConfig{Out: kubeconfig, Port: 9001, Namespace: "$(" + namespaceEnvVar + ")"}
		if diff := cmp.Diff(want, cfg); diff != "" {
			t.Errorf("write-kubeconfig flags (-want +got):\n%s", diff)
		}
		env := pod.Spec.InitContainers[1].Env
		if len(env) != 1 || env[0].Name != namespaceEnvVar || env[0].ValueFrom.FieldRef.FieldPath != "metadata.namespace" {
			t.Errorf("env %+v, want %s from metadata.namespace", env, namespaceEnvVar)
		}
	})
	if !strings.HasPrefix(kubeconfig, KubeconfigMountPath+"/") {
		t.Errorf("KUBECONFIG=%s is not under the mount %s", kubeconfig, KubeconfigMountPath)
	}
}

// TestSwitchingModesSwapsTheWriter: a pod injected in kubectl mode and injected again in
// api-proxy mode (reinvocation after a config change, or an offline manifest) loses the init
// container, and the other way round gets it, once.
func TestSwitchingModesSwapsTheWriter(t *testing.T) {
	pod := simplePod(map[string]string{InjectAnnotation: "true"})
	pod.Spec.InitContainers = []corev1.Container{{Name: "setup", Image: "x"}}
	names := func() []string {
		var out []string
		for _, c := range pod.Spec.InitContainers {
			out = append(out, c.Name)
		}
		return out
	}
	for _, step := range []struct {
		inj  *Injector
		want []string
	}{
		{newKubectlInjector(t), []string{SidecarName, KubeconfigInitName, "setup"}},
		{newKubectlInjector(t), []string{SidecarName, KubeconfigInitName, "setup"}},
		{newInjector(t), []string{SidecarName, "setup"}},
		{newKubectlInjector(t), []string{SidecarName, KubeconfigInitName, "setup"}},
	} {
		if _, err := step.inj.Mutate(Namespace{Name: "team-a"}, pod); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(step.want, names()); diff != "" {
			t.Errorf("init containers after injecting in %s mode (-want +got):\n%s", step.inj.cfg.Sidecar.Mode, diff)
		}
	}
}
