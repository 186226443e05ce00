package patch

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gomodules.xyz/jsonpatch/v2"
	jsonpatchapply "gopkg.in/evanphx/json-patch.v4"
	corev1 "k8s.io/api/core/v1"
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

// checkEquivalent: applied to the document the pod came from, PodPatch and Create give the
// same result, and applied to the original's own JSON, the modified pod.
func checkEquivalent(t *testing.T, doc []byte, original, modified *corev1.Pod) {
	t.Helper()
	fast, err := PodPatch(original, modified)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(original)
	b, _ := json.Marshal(modified)
	slow, err := Create(a, b)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(applyOps(t, doc, slow), applyOps(t, doc, fast)); diff != "" {
		t.Errorf("PodPatch and Create differ on the document (-Create +PodPatch):\n%s\nops: %v", diff, fast)
	}
	var want any
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, applyOps(t, a, fast)); diff != "" {
		t.Errorf("PodPatch(original) != modified (-modified +patched):\n%s", diff)
	}
}

func TestPodPatchMatchesCreateOnInjections(t *testing.T) {
	inj, err := injector.New(injector.Config{Sidecar: injector.SidecarConfig{Image: "registry.example.com/api-proxy:test"}})
	if err != nil {
		t.Fatal(err)
	}
	inputs, _ := filepath.Glob("../../injector/testdata/*.in.yaml")
	if len(inputs) == 0 {
		t.Fatal("no injector golden inputs")
	}
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
			var original corev1.Pod
			if err := json.Unmarshal(doc, &original); err != nil {
				t.Fatal(err)
			}
			modified := original.DeepCopy()
			if _, err := inj.Mutate(injector.Namespace{Name: "ns"}, modified); err != nil {
				t.Fatal(err)
			}
			checkEquivalent(t, doc, &original, modified)

			// And a second injection with another port: changes inside kept elements.
			again := modified.DeepCopy()
			again.Annotations[injector.ProxyPortAnnotation] = "9100"
			if _, err := inj.Mutate(injector.Namespace{Name: "ns"}, again); err != nil {
				t.Fatal(err)
			}
			injected, _ := json.Marshal(modified)
			checkEquivalent(t, injected, modified, again)
		})
	}
}

func TestPodPatchEdgeCases(t *testing.T) {
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
		{"container field and env together", func(p *corev1.Pod) {
			p.Spec.Containers[1].Image = "b2"
			p.Spec.Containers[1].Env = []corev1.EnvVar{{Name: "X"}}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			original := base()
			original.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "A", Value: "0"}, {Name: "C", Value: "3"}}
			original.Spec.Containers[1].VolumeMounts = []corev1.VolumeMount{{Name: "v", MountPath: "/a"}}
			modified := original.DeepCopy()
			tt.mutate(modified)
			doc, _ := json.Marshal(original)
			checkEquivalent(t, doc, original, modified)
		})
	}
}
