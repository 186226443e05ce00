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
	for part := range strings.SplitSeq(string(out), "\n---\n") {
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
	if v := get(docs[1], "spec", "template", "metadata", "annotations", injector.KubeconfigAnnotation); v != nil {
		t.Errorf("Deployment's template got the %s annotation, which no longer feeds anything: %v", injector.KubeconfigAnnotation, v)
	}
	report := get(docs[2], "spec", "jobTemplate", "spec", "template", "spec")
	if sidecar(report) != injector.SidecarName || get(report, "initContainers", 0, "args", 2) != "--read-only" {
		t.Errorf("CronJob not injected read-only: %v", get(report, "initContainers", 0))
	}
	if get(docs[3], "spec", "template", "spec", "initContainers") != nil {
		t.Error("StatefulSet that did not opt in was injected")
	}
	if sidecar(get(docs[4], "spec")) != injector.SidecarName {
		t.Errorf("Pod not injected: %v", docs[4])
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

// TestRefusalWritesNothing: when any document is refused, nothing at all is written, not even
// the documents before it, so that `inject | kubectl apply -f -` never applies a partial set.
func TestRefusalWritesNothing(t *testing.T) {
	good := "apiVersion: v1\nkind: Pod\nmetadata: {name: good}\nspec:\n  containers: [{name: a, image: a}]\n"
	bad := "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bad\n  annotations: {apiaccess.io/inject: \"true\", apiaccess.io/read-only: \"yes\"}\n" +
		"spec:\n  containers: [{name: a, image: a}]\n"
	for _, tt := range []struct {
		name string
		in   string
	}{
		{"refused last", good + "---\n" + good + "---\n" + bad},
		{"refused first", bad + "---\n" + good},
		{"refused in a List", "apiVersion: v1\nkind: List\nitems:\n" + listItem(good) + listItem(bad)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			opts := newOptions(t)
			opts.Mode = injector.ModeEnabled
			w := &recordingWriter{}
			_, err := Inject(strings.NewReader(tt.in), w, opts)
			if err == nil || !strings.Contains(err.Error(), `Pod default/bad: api-access-injector: annotation apiaccess.io/read-only: invalid value "yes"`) {
				t.Errorf("error = %v, want the refusal of Pod default/bad", err)
			}
			if w.calls != 0 {
				t.Errorf("%d writes (%q) before the refusal; want none", w.calls, w.data.String())
			}
		})
	}
}

// listItem indents a one-object YAML document as an item of a List.
func listItem(doc string) string {
	return "- " + strings.ReplaceAll(strings.TrimSuffix(doc, "\n"), "\n", "\n  ") + "\n"
}

// recordingWriter counts the writes made to it.
type recordingWriter struct {
	calls int
	data  bytes.Buffer
}

func (w *recordingWriter) Write(p []byte) (int, error) {
	w.calls++
	return w.data.Write(p)
}

// TestList: the items of a List are injected like documents of their own; other items and the
// list's own fields are kept.
func TestList(t *testing.T) {
	in := `apiVersion: v1
kind: List
metadata: {resourceVersion: ""}
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: settings}
  data: {a: b}
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: web, namespace: shop}
  spec:
    selector: {matchLabels: {app: web}}
    template:
      metadata:
        labels: {app: web}
        annotations: {apiaccess.io/inject: "true"}
      spec:
        containers: [{name: web, image: web, futureContainerField: kept}]
- apiVersion: v1
  kind: Pod
  metadata: {name: plain}
  spec:
    containers: [{name: a, image: a}]
`
	var out bytes.Buffer
	warnings, err := Inject(strings.NewReader(in), &out, newOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 0 {
		t.Errorf("warnings = %q, want none", warnings)
	}
	docs := documents(t, out.Bytes())
	if len(docs) != 1 {
		t.Fatalf("got %d documents, want the one List:\n%s", len(docs), out.String())
	}
	list := docs[0]
	if list["kind"] != "List" || get(list, "metadata", "resourceVersion") != "" {
		t.Errorf("the List's own fields changed: kind %v, metadata %v", list["kind"], list["metadata"])
	}
	if n := len(get(list, "items").([]any)); n != 3 {
		t.Fatalf("items = %d, want 3", n)
	}
	if diff := cmp.Diff(map[string]any{"a": "b"}, get(list, "items", 0, "data")); diff != "" {
		t.Errorf("ConfigMap changed (-want +got):\n%s", diff)
	}
	web := get(list, "items", 1, "spec", "template", "spec")
	if get(web, "initContainers", 0, "name") != injector.SidecarName || get(web, "containers", 0, "futureContainerField") != "kept" {
		t.Errorf("Deployment item not injected, or a field unknown to the injector was lost: %v", web)
	}
	if get(list, "items", 2, "spec", "initContainers") != nil {
		t.Error("a Pod item that did not opt in was injected")
	}

	// Injecting a list item gives what injecting the same object alone gives.
	alone := "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\nspec:\n  selector: {matchLabels: {app: web}}\n" +
		"  template:\n    metadata:\n      labels: {app: web}\n      annotations: {apiaccess.io/inject: \"true\"}\n" +
		"    spec:\n      containers: [{name: web, image: web, futureContainerField: kept}]\n"
	var single bytes.Buffer
	if _, err := Inject(strings.NewReader(alone), &single, newOptions(t)); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(documents(t, single.Bytes())[0], get(list, "items", 1)); diff != "" {
		t.Errorf("the List's Deployment differs from the Deployment injected alone (-alone +item):\n%s", diff)
	}

	// A List with nothing to inject comes back byte for byte.
	untouched := "apiVersion: v1\nkind: List\n# a comment that stays\nitems: []\n"
	var same bytes.Buffer
	if _, err := Inject(strings.NewReader(untouched), &same, newOptions(t)); err != nil {
		t.Fatal(err)
	}
	if same.String() != untouched {
		t.Errorf("an untouched List changed:\n%s", same.String())
	}
}

// TestMisplacedAnnotationsWarnAsThePolicy: every apiaccess.io annotation on a workload's own
// metadata that its template lacks is named, sorted, in the words of the chart's
// workload-annotation-placement policy (test/policy checks the policy's).
func TestMisplacedAnnotationsWarnAsThePolicy(t *testing.T) {
	in := "apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: report\n  namespace: shop\n" +
		"  annotations: {apiaccess.io/read-only: \"true\", apiaccess.io/inject: \"true\", apiaccess.io/containers: a, other.io/x: y}\n" +
		"spec:\n  schedule: \"@hourly\"\n  jobTemplate:\n    spec:\n      template:\n" +
		"        metadata: {annotations: {apiaccess.io/containers: a}}\n        spec:\n          containers: [{name: a, image: a}]\n"
	warnings, err := Inject(strings.NewReader(in), &bytes.Buffer{}, newOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"CronJob shop/report: annotations apiaccess.io/inject, apiaccess.io/read-only are on the CronJob itself, " +
		"where they have no effect; put them in spec.jobTemplate.spec.template.metadata.annotations"}
	if diff := cmp.Diff(want, warnings); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
}

// TestNamespaceOfUnnamedDocuments: --namespace no longer feeds any injected content, but it
// still decides: a document that names no namespace is left alone when --namespace is one
// that is never injected.
func TestNamespaceOfUnnamedDocuments(t *testing.T) {
	in := "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations: {apiaccess.io/inject: \"true\"}\nspec:\n  containers:\n  - {name: app, image: app:1}\n"
	for ns, injected := range map[string]bool{"default": true, "kube-system": false} {
		opts := newOptions(t)
		opts.Namespace = ns
		var out bytes.Buffer
		if _, err := Inject(strings.NewReader(in), &out, opts); err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(out.String(), injector.SidecarName); got != injected {
			t.Errorf("--namespace %s: injected = %v, want %v:\n%s", ns, got, injected, out.String())
		}
	}
}
