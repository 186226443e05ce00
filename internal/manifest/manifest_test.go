package manifest

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"

	"github.com/api-access-injector/api-access-injector/injector"
)

func newOptions(t *testing.T) Options {
	t.Helper()
	inj, err := injector.New(injector.Config{Version: "test", Sidecar: injector.SidecarConfig{Image: "registry.example.com/api-proxy:test"}})
	if err != nil {
		t.Fatal(err)
	}
	return Options{Injector: inj, Namespace: "default"}
}

// documents splits YAML output into decoded documents.
func documents(t *testing.T, out []byte) []map[string]any {
	t.Helper()
	var docs []map[string]any
	for _, part := range strings.Split(string(out), "\n---\n") {
		var m map[string]any
		if err := yaml.Unmarshal([]byte(part), &m); err != nil {
			t.Fatalf("output is not YAML: %v\n%s", err, part)
		}
		docs = append(docs, m)
	}
	return docs
}

// get walks a decoded document along keys and list indices.
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			l, _ := v.([]any)
			if k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func TestInjectWorkloads(t *testing.T) {
	in, err := os.ReadFile("testdata/workloads.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	warnings, err := Inject(bytes.NewReader(in), &out, newOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 0 {
		t.Errorf("warnings = %q, want none", warnings)
	}
	docs := documents(t, out.Bytes())
	if len(docs) != 5 {
		t.Fatalf("got %d documents, want 5 (the comment-only prefix is not a document):\n%s", len(docs), out.String())
	}
	sidecar := func(podSpec any) any { return get(podSpec, "initContainers", 0, "name") }

	if diff := cmp.Diff(map[string]any{"apiaccess.io/inject": "true"}, get(docs[0], "data")); diff != "" {
		t.Errorf("ConfigMap changed (-want +got):\n%s", diff)
	}
	web := get(docs[1], "spec", "template", "spec")
	if sidecar(web) != injector.SidecarName {
		t.Errorf("Deployment not injected: %v", web)
	}
	if get(web, "containers", 0, "futureContainerField") != "kept" {
		t.Errorf("a field unknown to the injector's types was lost: %v", get(web, "containers", 0))
	}
	if !strings.Contains(get(docs[1], "spec", "template", "metadata", "annotations", injector.KubeconfigAnnotation).(string), "namespace: shop") {
		t.Error("Deployment's kubeconfig lacks its namespace")
	}
	report := get(docs[2], "spec", "jobTemplate", "spec", "template", "spec")
	if sidecar(report) != injector.SidecarName || get(report, "initContainers", 0, "args", 2) != "--read-only" {
		t.Errorf("CronJob not injected read-only: %v", get(report, "initContainers", 0))
	}
	if get(docs[3], "spec", "template", "spec", "initContainers") != nil {
		t.Error("StatefulSet that did not opt in was injected")
	}
	if sidecar(get(docs[4], "spec")) != injector.SidecarName ||
		!strings.Contains(get(docs[4], "metadata", "annotations", injector.KubeconfigAnnotation).(string), "namespace: default") {
		t.Errorf("Pod not injected with --namespace's namespace: %v", docs[4])
	}

	// Injecting the output again changes nothing.
	var again bytes.Buffer
	if _, err := Inject(bytes.NewReader(out.Bytes()), &again, newOptions(t)); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(out.String(), again.String()); diff != "" {
		t.Errorf("injecting twice differs from once (-once +twice):\n%s", diff)
	}
}

func TestNamespaceInjection(t *testing.T) {
	in := "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: a, image: a}]\n"
	for _, tt := range []struct {
		mode   injector.NamespaceMode
		inject bool
	}{{injector.ModeOptIn, false}, {injector.ModeEnabled, true}, {injector.ModeEnforced, true}} {
		opts := newOptions(t)
		opts.Mode = tt.mode
		var out bytes.Buffer
		if _, err := Inject(strings.NewReader(in), &out, opts); err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(out.String(), "name: api-proxy"); got != tt.inject {
			t.Errorf("mode %q: injected = %v, want %v", tt.mode, got, tt.inject)
		}
	}
}

func TestRefusalNamesTheObject(t *testing.T) {
	in := "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\nspec:\n  template:\n    metadata:\n" +
		"      annotations: {apiaccess.io/inject: \"true\", apiaccess.io/proxy-port: \"http\"}\n    spec:\n      containers: [{name: a, image: a}]\n"
	_, err := Inject(strings.NewReader(in), &bytes.Buffer{}, newOptions(t))
	if err == nil || !strings.Contains(err.Error(), `Deployment shop/web: api-access-injector: annotation apiaccess.io/proxy-port: invalid value "http"`) {
		t.Errorf("error = %v, want a refusal naming the Deployment and the annotation", err)
	}
}

func TestMisplacedAnnotationWarns(t *testing.T) {
	in := "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  annotations: {apiaccess.io/inject: \"true\"}\n" +
		"spec:\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers: [{name: a, image: a}]\n"
	var out bytes.Buffer
	warnings, err := Inject(strings.NewReader(in), &out, newOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "is on the Deployment itself, where it has no effect; put it in spec.template.metadata.annotations") {
		t.Errorf("warnings = %q, want one about the misplaced annotation", warnings)
	}
	if strings.Contains(out.String(), "api-proxy") {
		t.Error("a Deployment annotated only on its own metadata was injected")
	}
}
