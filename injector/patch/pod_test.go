package patch

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gomodules.xyz/jsonpatch/v2"
	jsonpatchapply "gopkg.in/evanphx/json-patch.v4"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/api-access-injector/api-access-injector/injector"
)

func applyOps(t *testing.T, doc []byte, ops []jsonpatch.Operation) any {
	t.Helper()
	raw, err := json.Marshal(ops)
	if err != nil {
		t.Fatal(err)
	}
	p, err := jsonpatchapply.DecodePatch(raw)
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.Apply(doc)
	if err != nil {
		t.Fatalf("applying %s: %v", raw, err)
	}
	var v any
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// applyRaw applies a patch given as JSON to doc and returns the result decoded.
func applyRaw(t *testing.T, doc, patch []byte) any {
	t.Helper()
	p, err := jsonpatchapply.DecodePatch(patch)
	if err != nil {
		t.Fatalf("decoding the patch %s: %v", patch, err)
	}
	out, err := p.Apply(doc)
	if err != nil {
		t.Fatalf("applying %s: %v", patch, err)
	}
	var v any
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// derive takes a Snapshot of pod, mutates the pod in place, and returns the pod's JSON before
// and after, and the patch the Snapshot derives.
func derive(t *testing.T, s *Snapshot, pod *corev1.Pod, mutate func(*corev1.Pod)) (before, after, derived []byte) {
	t.Helper()
	before, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	s.Take(pod)
	mutate(pod)
	// The contract the Snapshot relies on: the mutation wrote in place only into what it cloned.
	if kept, err := json.Marshal(&s.pod); err != nil || !bytes.Equal(kept, before) {
		t.Errorf("the mutation changed the Snapshot, so it wrote in place into memory the Snapshot shares with the pod "+
			"(see Snapshot's doc: clone that part in Take, or have the mutation assign a new value):\nbefore:   %s\nsnapshot: %s", before, kept)
	}
	derived, n, err := s.AppendPatch(nil, pod)
	if err != nil {
		t.Fatal(err)
	}
	if after, err = json.Marshal(pod); err != nil {
		t.Fatal(err)
	}
	var ops []any
	if err := json.Unmarshal(derived, &ops); err != nil || len(ops) != n {
		t.Fatalf("AppendPatch gave %d operations as %s (%v), not a JSON array of them", n, derived, err)
	}
	return before, after, derived
}

// checkEquivalent: applied to doc, the document the pod came from, the derived patch and
// Diff give the same result; and applied to the original's own JSON, the modified pod.
func checkEquivalent(t *testing.T, doc, before, after, derived []byte) {
	t.Helper()
	slow, err := Diff(before, after)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(applyOps(t, doc, slow), applyRaw(t, doc, derived)); diff != "" {
		t.Errorf("the derived patch and Diff differ on the document (-Diff +derived):\n%s\npatch: %s", diff, derived)
	}
	var want any
	if err := json.Unmarshal(after, &want); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, applyRaw(t, before, derived)); diff != "" {
		t.Errorf("patch(original) != modified (-modified +patched):\n%s\npatch: %s", diff, derived)
	}
}

// TestSnapshotMatchesDiffOnInjections runs the injector in place, as the webhook does, on
// every golden input, then once more with another port (changes inside kept elements), with
// one Snapshot reused throughout.
func TestSnapshotMatchesDiffOnInjections(t *testing.T) {
	inj, err := injector.New(injector.Config{Sidecar: injector.SidecarConfig{Image: "registry.example.com/api-proxy:test"}})
	if err != nil {
		t.Fatal(err)
	}
	// Inputs named kubectl-* run in sidecar mode kubectl, as in the injector's golden tests.
	kubectl, err := injector.New(injector.Config{Sidecar: injector.SidecarConfig{Mode: injector.SidecarKubectl,
		Image: "registry.k8s.io/kubectl:v1.37.2", InitImage: "registry.example.com/api-proxy:test"}})
	if err != nil {
		t.Fatal(err)
	}
	inputs, _ := filepath.Glob("../../injector/testdata/*.in.yaml")
	if len(inputs) == 0 {
		t.Fatal("no injector golden inputs")
	}
	var s Snapshot
	for _, in := range inputs {
		t.Run(filepath.Base(in), func(t *testing.T) {
			data, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			doc, err := yaml.YAMLToJSON(data)
			if err != nil {
				t.Fatal(err)
			}
			var pod corev1.Pod
			if err := json.Unmarshal(doc, &pod); err != nil {
				t.Fatal(err)
			}
			inj := inj
			if strings.HasPrefix(filepath.Base(in), "kubectl-") {
				inj = kubectl
			}
			mutate := func(p *corev1.Pod) {
				if _, err := inj.Mutate(injector.Namespace{Name: "ns"}, p); err != nil {
					t.Fatal(err)
				}
			}
			before, after, derived := derive(t, &s, &pod, mutate)
			checkEquivalent(t, doc, before, after, derived)
			s.Reset()

			// Again: nothing changes. Then with another port: changes inside kept elements.
			if before, after, derived = derive(t, &s, &pod, mutate); string(derived) != "[]" {
				t.Errorf("a second injection gave the patch %s, want none", derived)
			}
			checkEquivalent(t, after, before, after, derived)
			before, after, derived = derive(t, &s, &pod, func(p *corev1.Pod) {
				p.Annotations[injector.ProxyPortAnnotation] = "9100"
				mutate(p)
			})
			checkEquivalent(t, before, before, after, derived)
		})
	}
}

func TestSnapshotEdgeCases(t *testing.T) {
	base := func() *corev1.Pod {
		return &corev1.Pod{Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "a", Image: "a"}, {Name: "b", Image: "b"}},
			Volumes:    []corev1.Volume{{Name: "v"}},
		}}
	}
	tests := []struct {
		name   string
		mutate func(*corev1.Pod)
	}{
		{"nothing", func(*corev1.Pod) {}},
		{"annotations added to", func(p *corev1.Pod) { p.Annotations["x/y~z"] = "\"q\"\n\u2028" }},
		{"annotations changed and removed", func(p *corev1.Pod) { p.Annotations["keep"] = "2"; delete(p.Annotations, "drop") }},
		{"annotations to none", func(p *corev1.Pod) { clear(p.Annotations) }},
		{"env value changed in place", func(p *corev1.Pod) { p.Spec.Containers[0].Env[1].Value = "4" }},
		{"env appended within capacity", func(p *corev1.Pod) {
			p.Spec.Containers[0].Env = append(p.Spec.Containers[0].Env[:1], corev1.EnvVar{Name: "D", Value: "5"})
		}},
		{"mount removed in place", func(p *corev1.Pod) {
			p.Spec.Containers[1].VolumeMounts = slices.DeleteFunc(p.Spec.Containers[1].VolumeMounts, func(corev1.VolumeMount) bool { return true })
		}},
		{"volume replaced in place", func(p *corev1.Pod) {
			p.Spec.Volumes[0] = corev1.Volume{Name: "v", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}
		}},
		{"volume replaced by an equal one", func(p *corev1.Pod) { p.Spec.Volumes[0] = *p.Spec.Volumes[0].DeepCopy() }},
		{"security context replaced", func(p *corev1.Pod) {
			p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{RunAsUser: ptr.To[int64](1)}
		}},
		{"many env vars: one moved, one added", func(p *corev1.Pod) {
			env := p.Spec.Containers[1].Env
			moved := env[3]
			p.Spec.Containers[1].Env = append(slices.Delete(env, 3, 4), moved, corev1.EnvVar{Name: "new"})
		}},
		{"annotations from none", func(p *corev1.Pod) { p.Annotations = map[string]string{"x/y": "1", "a~b": "2"} }},
		{"labels (whole-document fallback)", func(p *corev1.Pod) { p.Labels = map[string]string{"l": "1"} }},
		{"spec scalar", func(p *corev1.Pod) { p.Spec.ServiceAccountName = "sa" }},
		{"init containers from none", func(p *corev1.Pod) { p.Spec.InitContainers = []corev1.Container{{Name: "i"}} }},
		{"volumes to none", func(p *corev1.Pod) { p.Spec.Volumes = nil }},
		{"containers reordered", func(p *corev1.Pod) {
			p.Spec.Containers[0], p.Spec.Containers[1] = p.Spec.Containers[1], p.Spec.Containers[0]
		}},
		{"insert first and change the next", func(p *corev1.Pod) {
			p.Spec.Containers = append([]corev1.Container{{Name: "s"}}, p.Spec.Containers...)
			p.Spec.Containers[1].Env = []corev1.EnvVar{{Name: "E", Value: "1"}}
		}},
		{"duplicate names (diffed as JSON)", func(p *corev1.Pod) { p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "a"}) }},
		{"containers to none", func(p *corev1.Pod) { p.Spec.Containers = nil }},
		{"status", func(p *corev1.Pod) { p.Status.Phase = corev1.PodRunning }},
		{"env added, changed and removed", func(p *corev1.Pod) {
			p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "A", Value: "1"}, {Name: "B", Value: "2"}}
		}},
		{"the same volume mounted twice (mounts diffed as JSON)", func(p *corev1.Pod) {
			p.Spec.Containers[1].VolumeMounts = []corev1.VolumeMount{{Name: "v", MountPath: "/a"}, {Name: "v", MountPath: "/b"}}
		}},
		{"hostAliases and a pod security context from none (transparent mode)", func(p *corev1.Pod) {
			p.Spec.HostAliases = []corev1.HostAlias{{IP: "127.0.0.1", Hostnames: []string{"kubernetes"}}}
			p.Spec.SecurityContext = &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{{Name: "net.ipv4.ip_unprivileged_port_start", Value: "0"}}}
		}},
		{"an empty pod security context from none", func(p *corev1.Pod) { p.Spec.SecurityContext = &corev1.PodSecurityContext{} }},
		{"hostAliases to an empty list (the spec as JSON)", func(p *corev1.Pod) { p.Spec.HostAliases = []corev1.HostAlias{} }},
		{"hostAliases and a spec scalar together (the spec as JSON)", func(p *corev1.Pod) {
			p.Spec.HostAliases = []corev1.HostAlias{{IP: "127.0.0.1", Hostnames: []string{"kubernetes"}}}
			p.Spec.ServiceAccountName = "sa"
		}},
		{"container field and env together", func(p *corev1.Pod) {
			p.Spec.Containers[1].Image = "b2"
			p.Spec.Containers[1].Env = []corev1.EnvVar{{Name: "X"}}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			original := base()
			original.Annotations = map[string]string{"keep": "1", "drop": "1"}
			original.Spec.Containers[0].Env = make([]corev1.EnvVar, 2, 4)
			original.Spec.Containers[0].Env[0] = corev1.EnvVar{Name: "A", Value: "0"}
			original.Spec.Containers[0].Env[1] = corev1.EnvVar{Name: "C", Value: "3"}
			original.Spec.Containers[1].VolumeMounts = []corev1.VolumeMount{{Name: "v", MountPath: "/a"}}
			for i := range 20 { // beyond the length where names are looked up in a map
				original.Spec.Containers[1].Env = append(original.Spec.Containers[1].Env, corev1.EnvVar{Name: "E" + strconv.Itoa(i), Value: "v"})
			}
			var s Snapshot
			// In place, as the webhook does; and on a copy, which shares nothing with the original.
			pod := original.DeepCopy()
			before, after, derived := derive(t, &s, pod, tt.mutate)
			checkEquivalent(t, before, before, after, derived)
			pod = original.DeepCopy()
			before, after, derived = derive(t, &s, pod, func(p *corev1.Pod) {
				c := p.DeepCopy()
				tt.mutate(c)
				*p = *c
			})
			checkEquivalent(t, before, before, after, derived)
		})
	}
}

// benchmarkPod is the benchmark pod (the shared one, opted in), decoded, edited by edit if
// not nil, and a Snapshot of it taken before the injector mutated it in place.
func benchmarkPod(b *testing.B, edit func(*corev1.Pod)) (*Snapshot, *corev1.Pod) {
	b.Helper()
	inj, err := injector.New(injector.Config{Sidecar: injector.SidecarConfig{Image: "registry.example.com/api-proxy:test"}})
	if err != nil {
		b.Fatal(err)
	}
	data, err := os.ReadFile("../../injector/testdata/realistic.in.yaml")
	if err != nil {
		b.Fatal(err)
	}
	doc, err := yaml.YAMLToJSON(data)
	if err != nil {
		b.Fatal(err)
	}
	var pod corev1.Pod
	if err := json.Unmarshal(doc, &pod); err != nil {
		b.Fatal(err)
	}
	if edit != nil {
		edit(&pod)
	}
	var s Snapshot
	s.Take(&pod)
	if _, err := inj.Mutate(injector.Namespace{Name: "bench"}, &pod); err != nil {
		b.Fatal(err)
	}
	return &s, &pod
}

// BenchmarkPatch is the patch path alone, as the webhook runs it: a Snapshot of the pod (taken
// of an injected pod of the same shape: the cost is the same), then the patch derived from it,
// encoded. Reports the patch's size as patch-bytes. Two pods: the benchmark pod, and the same
// pod with one container and no init container, where the sidecar starts the list.
func BenchmarkPatch(b *testing.B) {
	for _, bench := range []struct {
		name string
		edit func(*corev1.Pod)
	}{
		{"benchmark-pod", nil},
		{"one-container", func(p *corev1.Pod) { p.Spec.InitContainers, p.Spec.Containers = nil, p.Spec.Containers[:1] }},
		{"transparent", func(p *corev1.Pod) { p.Annotations[injector.TransparentAnnotation] = "true" }},
	} {
		b.Run(bench.name, func(b *testing.B) {
			s, pod := benchmarkPod(b, bench.edit)
			var again Snapshot
			var buf []byte
			b.ReportAllocs()
			for b.Loop() {
				again.Take(pod)
				var n int
				var err error
				if buf, n, err = s.AppendPatch(buf[:0], pod); err != nil || n == 0 {
					b.Fatal(n, err)
				}
			}
			b.ReportMetric(float64(len(buf)), "patch-bytes")
		})
	}
}

// BenchmarkPatchWholeDocument is the baseline of BenchmarkPatch: a deep copy of the pod, the
// two pods marshalled, the whole-document diff, its operations encoded.
func BenchmarkPatchWholeDocument(b *testing.B) {
	s, pod := benchmarkPod(b, nil)
	original := s.pod.DeepCopy() // a copy of the pod as it was, for the baseline's own DeepCopy
	var patch []byte
	b.ReportAllocs()
	for b.Loop() {
		_ = original.DeepCopy()
		ja, _ := json.Marshal(&s.pod)
		jb, _ := json.Marshal(pod)
		ops, err := Diff(ja, jb)
		if err != nil {
			b.Fatal(err)
		}
		if patch, err = json.Marshal(ops); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(patch)), "patch-bytes")
}
