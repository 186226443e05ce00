package manifest

import (
	"bytes"
	"encoding/json"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gomodules.xyz/jsonpatch/v2"
	jsonpatchapply "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/api-access-injector/api-access-injector/injector"
	"github.com/api-access-injector/api-access-injector/injector/patch"
	"github.com/api-access-injector/api-access-injector/webhook"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/gitops")

// goldenModes gives the namespace mode of golden inputs that need one other than opt-in.
var goldenModes = map[string]injector.NamespaceMode{
	"template-without-metadata.in.yaml": injector.ModeEnabled,
}

// TestGolden injects each testdata/gitops/*.in.yaml, manifests with comments, blank lines,
// flow style, lists and odd indentation, and compares the text with its .golden.yaml. Each one
// also decodes to what the whole-document diff gives, comes back byte for byte from
// --uninject, and does not change when injected again.
func TestGolden(t *testing.T) {
	inputs, _ := filepath.Glob("testdata/gitops/*.in.yaml")
	if len(inputs) == 0 {
		t.Fatal("no golden inputs")
	}
	for _, in := range inputs {
		t.Run(filepath.Base(in), func(t *testing.T) {
			src, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			opts := newOptions(t)
			opts.Mode = goldenModes[filepath.Base(in)]
			out, warnings, err := InjectBytes(src, opts)
			if err != nil {
				t.Fatal(err)
			}
			if len(warnings) != 0 {
				t.Errorf("warnings: %q", warnings)
			}
			golden := strings.TrimSuffix(in, ".in.yaml") + ".golden.yaml"
			if *update {
				if err := os.WriteFile(golden, out, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./internal/manifest -run TestGolden -update)", err)
			}
			if diff := cmp.Diff(string(want), string(out)); diff != "" {
				t.Errorf("output differs from %s (-golden +got):\n%s", golden, diff)
			}
			if bytes.Equal(out, src) {
				t.Error("nothing was injected")
			}
			checkRoundTrip(t, src, out, opts)
		})
	}
}

// checkRoundTrip checks an injection's output against its input: it decodes (as kubectl
// decodes YAML) to the input with the whole-document diff of each injected pod applied, it
// does not change when injected again, and --uninject gives back the input's bytes.
func checkRoundTrip(t *testing.T, in, out []byte, opts Options) {
	t.Helper()
	checkOracle(t, in, out, opts)
	again, _, err := InjectBytes(out, opts)
	if err != nil {
		t.Fatalf("injecting the output again: %v", err)
	}
	if diff := cmp.Diff(string(out), string(again)); diff != "" {
		t.Errorf("injecting twice differs from once (-once +twice):\n%s", diff)
	}
	back, err := UninjectBytes(out)
	if err != nil {
		t.Fatalf("--uninject: %v\n%s", err, out)
	}
	if diff := cmp.Diff(string(in), string(back)); diff != "" {
		t.Errorf("--uninject does not give back the input (-input +uninjected):\n%s", diff)
	}
}

// checkOracle: document by document, the output decodes to the input's decoding with, for each
// injected pod, the whole-document diff (patch.Diff) of the pod before and after the injector
// applied at its template.
func checkOracle(t *testing.T, in, out []byte, opts Options) {
	t.Helper()
	cfg := opts.Injector.Config()
	cfg.Version = OfflineVersion
	inj, err := injector.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ins, outs := segments(in), segments(out)
	if len(ins) != len(outs) {
		t.Fatalf("%d documents in, %d out", len(ins), len(outs))
	}
	for i := range ins {
		doc, err := yaml.YAMLToJSON(ins[i])
		if err != nil {
			t.Fatal(err)
		}
		pods, _, err := targets(doc, opts.Namespace)
		if err != nil {
			t.Fatal(err)
		}
		want := doc
		for _, p := range pods {
			var pod corev1.Pod
			if err := sigsjson.UnmarshalCaseSensitivePreserveInts(p.template, &pod); err != nil {
				t.Fatal(err)
			}
			mutated := pod.DeepCopy()
			res, err := inj.Mutate(injector.Namespace{Name: p.namespace, Mode: opts.Mode}, mutated)
			if err != nil || !res.Inject {
				continue
			}
			a, _ := json.Marshal(&pod)
			b, _ := json.Marshal(mutated)
			ops, err := patch.Diff(a, b)
			if err != nil {
				t.Fatal(err)
			}
			for k := range ops {
				ops[k].Path = pointer(p.tokens) + ops[k].Path
			}
			if !p.hasMetadata { // a template without metadata: the pod's JSON has one
				ops = append([]jsonpatch.Operation{jsonpatch.NewOperation("add", pointer(p.tokens)+"/metadata", map[string]any{})}, ops...)
			}
			raw, _ := json.Marshal(ops)
			jp, err := jsonpatchapply.DecodePatch(raw)
			if err != nil {
				t.Fatal(err)
			}
			if want, err = jp.Apply(want); err != nil {
				t.Fatalf("applying the whole-document diff: %v", err)
			}
		}
		got, err := yaml.YAMLToJSON(outs[i])
		if err != nil {
			t.Fatalf("document %d of the output does not parse: %v\n%s", i+1, err, outs[i])
		}
		if diff := cmp.Diff(decodeJSON(t, want), decodeJSON(t, got)); diff != "" {
			t.Errorf("document %d decodes otherwise than the whole-document diff gives (-diff +output):\n%s\noutput:\n%s", i+1, diff, outs[i])
		}
	}
}

func decodeJSON(t *testing.T, raw []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestInjectorGoldensRoundTrip runs every pod of the injector's golden inputs through offline
// injection (kubectl-* in sidecar mode kubectl): each agrees with the whole-document diff and
// comes back byte for byte from --uninject.
func TestInjectorGoldensRoundTrip(t *testing.T) {
	inputs, _ := filepath.Glob("../../injector/testdata/*.in.yaml")
	if len(inputs) == 0 {
		t.Fatal("no injector golden inputs")
	}
	for _, in := range inputs {
		t.Run(filepath.Base(in), func(t *testing.T) {
			src, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			opts := goldenOptions(t, filepath.Base(in))
			out, _, err := InjectBytes(src, opts)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(out, src) {
				t.Fatal("nothing was injected")
			}
			checkRoundTrip(t, src, out, opts)
		})
	}
}

// goldenOptions are the options for an injector golden input, in namespace mode enabled.
func goldenOptions(t testing.TB, name string) Options {
	t.Helper()
	cfg := injector.Config{Version: "test", Sidecar: injector.SidecarConfig{Image: "registry.example.com/api-proxy:test"}}
	if strings.HasPrefix(name, "kubectl-") {
		cfg.Sidecar = injector.SidecarConfig{Mode: injector.SidecarKubectl, Image: "registry.k8s.io/kubectl:v1.37.2", InitImage: "registry.example.com/api-proxy:test"}
	}
	inj, err := injector.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return Options{Injector: inj, Mode: injector.ModeEnabled, Namespace: "team-a"}
}

// TestOfflineMatchesTheWebhook: a pod injected offline decodes to exactly what the webhook's
// patch makes of it at admission, for every injector golden input and for pods whose decoding
// differs between the API server's rules and plain encoding/json (a field name in the wrong
// case, an integer beyond float64's precision).
func TestOfflineMatchesTheWebhook(t *testing.T) {
	inputs, _ := filepath.Glob("../../injector/testdata/*.in.yaml")
	cases := map[string][]byte{}
	for _, in := range inputs {
		src, err := os.ReadFile(in)
		if err != nil {
			t.Fatal(err)
		}
		cases[filepath.Base(in)] = src
	}
	// encoding/json matches field names case-insensitively: it would read InitContainers as
	// initContainers and refuse the pod for a container named api-proxy. The API server reads
	// it as an unknown field, and so must inject.
	cases["case-sensitive"] = []byte(`apiVersion: v1
kind: Pod
metadata: {name: p, annotations: {apiaccess.io/inject: "true"}}
spec:
  InitContainers: [{name: api-proxy, image: not-ours}]
  containers:
  - name: app
    image: app
    Env: [{name: KUBECONFIG, value: /elsewhere}]
`)
	// 2^53+1 does not survive a trip through float64.
	cases["big-integer"] = []byte(`apiVersion: v1
kind: Pod
metadata: {name: p, annotations: {apiaccess.io/inject: "true"}}
spec:
  activeDeadlineSeconds: 9007199254740993
  containers:
  - name: app
    image: app
    env: [{name: A, value: "1"}]
`)
	// A value that YAML 1.1, which kubectl's YAML reader follows, reads as a boolean unless
	// it is quoted in what inject writes.
	cases["yaml-1.1-boolean"] = []byte(`apiVersion: v1
kind: Pod
metadata: {name: p, annotations: {apiaccess.io/inject: "true", apiaccess.io/token-audience: "yes"}}
spec:
  containers: [{name: app, image: app}]
`)
	for name, src := range cases {
		t.Run(name, func(t *testing.T) {
			opts := goldenOptions(t, name)
			cfg := opts.Injector.Config()
			cfg.Version = OfflineVersion // what offline records; the rest is the same injector
			inj, err := injector.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			podJSON, err := yaml.YAMLToJSON(src)
			if err != nil {
				t.Fatal(err)
			}
			resp := admit(t, webhook.NewHandler(inj, opts.Mode), podJSON, opts.Namespace)
			if !resp.Allowed {
				t.Fatalf("the webhook refused the pod: %v", resp.Result)
			}
			want := podJSON
			if len(resp.Patch) > 0 {
				p, err := jsonpatchapply.DecodePatch(resp.Patch)
				if err != nil {
					t.Fatal(err)
				}
				if want, err = p.Apply(podJSON); err != nil {
					t.Fatal(err)
				}
			}
			out, _, err := InjectBytes(src, opts)
			if err != nil {
				t.Fatal(err)
			}
			got, err := yaml.YAMLToJSON(out)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(decodeJSONNumbers(t, want), decodeJSONNumbers(t, got)); diff != "" {
				t.Errorf("offline injection differs from the webhook's (-webhook +offline):\n%s", diff)
			}
		})
	}
}

// decodeJSONNumbers decodes JSON with numbers kept as their text.
func decodeJSONNumbers(t *testing.T, raw []byte) any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// admit sends a pod to the webhook handler as the API server does and returns its answer.
func admit(t *testing.T, h http.Handler, pod []byte, namespace string) *admissionv1.AdmissionResponse {
	t.Helper()
	review, err := json.Marshal(map[string]any{
		"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
		"request": map[string]any{
			"uid": "1", "namespace": namespace, "operation": "CREATE",
			"kind":     map[string]any{"group": "", "version": "v1", "kind": "Pod"},
			"resource": map[string]any{"group": "", "version": "v1", "resource": "pods"},
			"object":   json.RawMessage(pod),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, webhook.EnabledPath, bytes.NewReader(review))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var answer admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &answer); err != nil || answer.Response == nil {
		t.Fatalf("answer %s: %v", rec.Body.Bytes(), err)
	}
	return answer.Response
}

// TestVersionChangeNoDiff: injectors that differ only in their version write the same bytes,
// so that an upgrade gives no diff in committed manifests; the status records "offline".
func TestVersionChangeNoDiff(t *testing.T) {
	src, err := os.ReadFile("testdata/gitops/stream.in.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var outs [][]byte
	for _, v := range []string{"v1.0.0", "v2.3.4-rc.1+abc", "v0.0.0-20261130-dev"} {
		inj, err := injector.New(injector.Config{Version: v, Sidecar: injector.SidecarConfig{Image: "registry.example.com/api-proxy:pinned"}})
		if err != nil {
			t.Fatal(err)
		}
		out, _, err := InjectBytes(src, Options{Injector: inj, Namespace: "default"})
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(out), v) {
			t.Errorf("version %s: the output names the injector's version", v)
		}
		outs = append(outs, out)
	}
	for i := 1; i < len(outs); i++ {
		if diff := cmp.Diff(string(outs[0]), string(outs[i])); diff != "" {
			t.Errorf("the output changed with the injector's version (-first +other):\n%s", diff)
		}
	}
	if !strings.Contains(string(outs[0]), `\"version\":\"offline\"`) && !strings.Contains(string(outs[0]), `"version":"offline"`) {
		t.Errorf("the status does not record version %q:\n%s", OfflineVersion, outs[0])
	}
}

// TestWebhookRecognisesOfflineInjection: a pod injected offline, then admitted (re-applied,
// or created from an injected template), is recognised as injected: the webhook's patch only
// writes its own version into the status; nothing is refused as a collision or added twice.
func TestWebhookRecognisesOfflineInjection(t *testing.T) {
	for name, src := range map[string]string{
		"opt-in":    "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations: {apiaccess.io/inject: \"true\", apiaccess.io/isolate-token: \"true\"}\nspec:\n  initContainers: [{name: init, image: i}]\n  containers: [{name: a, image: a}]\n",
		"realistic": string(mustRead(t, "../../injector/testdata/realistic.in.yaml")),
	} {
		t.Run(name, func(t *testing.T) {
			opts := goldenOptions(t, name)
			out, _, err := InjectBytes([]byte(src), opts)
			if err != nil {
				t.Fatal(err)
			}
			podJSON, err := yaml.YAMLToJSON(out)
			if err != nil {
				t.Fatal(err)
			}
			// The webhook runs its own version.
			resp := admit(t, webhook.NewHandler(opts.Injector, opts.Mode), podJSON, opts.Namespace)
			if !resp.Allowed {
				t.Fatalf("the webhook refused an offline-injected pod: %v", resp.Result)
			}
			var ops []map[string]any
			if err := json.Unmarshal(resp.Patch, &ops); err != nil {
				t.Fatalf("patch %s: %v", resp.Patch, err)
			}
			var status injector.Status
			if len(ops) == 1 {
				_ = json.Unmarshal([]byte(ops[0]["value"].(string)), &status)
			}
			if len(ops) != 1 || ops[0]["op"] != "replace" || ops[0]["path"] != "/metadata/annotations/apiaccess.io~1status" || status.Version != "test" {
				t.Errorf("the webhook's patch = %s, want only the status's version replaced by %q", resp.Patch, "test")
			}
		})
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestPassThrough: documents with nothing to inject come out byte for byte, whatever their
// layout: comments, separators with comments, document end markers, lists, non-pod objects,
// pods that did not opt in, text without a final newline.
func TestPassThrough(t *testing.T) {
	for name, src := range map[string]string{
		"empty":              "",
		"comments only":      "# nothing\n\n# here\n",
		"configmap":          "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}   # x\ndata:\n    a: 'b'\n",
		"stream":             "---\n# head\napiVersion: v1\nkind: Service\nmetadata:\n  name: s\n--- # between\n\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n    containers:\n        -   name: a\n            image: a\n...\n",
		"list":               "apiVersion: v1\nkind: List\n# a comment that stays\nitems:\n- {apiVersion: v1, kind: Pod, metadata: {name: p}, spec: {containers: [{name: a, image: a}]}}\n",
		"no final newline":   "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s",
		"excluded namespace": "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: kube-system, annotations: {apiaccess.io/inject: \"true\"}}\nspec: {containers: [{name: a, image: a}]}\n",
		"scalar document":    "just a string\n",
		"unknown kind":       "apiVersion: example.com/v1\nkind: Pod\nmetadata: {name: p, annotations: {apiaccess.io/inject: \"true\"}}\nspec: {containers: [{name: a}]}\n",
		"crlf":               "apiVersion: v1\r\nkind: ConfigMap\r\nmetadata:\r\n  name: c\r\n",
		"anchors":            "x: &a {b: 1}\ny: *a\n",
	} {
		t.Run(name, func(t *testing.T) {
			out, _, err := InjectBytes([]byte(src), newOptions(t))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(src, string(out)); diff != "" {
				t.Errorf("changed (-in +out):\n%s", diff)
			}
			back, err := UninjectBytes([]byte(src))
			if err != nil || string(back) != src {
				t.Errorf("--uninject changed a text with nothing injected (%v):\n%s", err, back)
			}
		})
	}
}

// TestUninjectRefusesWithoutRecord: a pod injected by the webhook (no record) or whose record
// no longer fits is named in an error, and nothing is returned.
func TestUninjectRefusesWithoutRecord(t *testing.T) {
	src := mustRead(t, "testdata/gitops/deployment-commented.in.yaml")
	out, _, err := InjectBytes(src, newOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for line := range strings.Lines(string(out)) {
		if !strings.Contains(line, strings.TrimSpace(recordPrefix)) {
			kept = append(kept, line)
		}
	}
	_, err = UninjectBytes([]byte(strings.Join(kept, "")))
	if err == nil || !strings.Contains(err.Error(), "Deployment shop/web: it has the apiaccess.io/status annotation but no uninject record") {
		t.Errorf("without the record: err = %v", err)
	}
	// The sidecar removed by hand: the record no longer fits.
	edited := strings.Replace(string(out), "name: api-proxy", "name: renamed", 1)
	if _, err := UninjectBytes([]byte(edited)); err == nil {
		t.Error("a record that no longer fits the manifest was applied without error")
	}
}

// FuzzInject feeds arbitrary YAML to offline injection, through the same decoding as the
// webhook's: it must not panic, and what it injects must agree with the whole-document diff,
// be stable when injected again, and come back byte for byte from --uninject.
func FuzzInject(f *testing.F) {
	for _, glob := range []string{"testdata/gitops/*.in.yaml", "testdata/*.yaml", "../../injector/testdata/*.in.yaml"} {
		files, _ := filepath.Glob(glob)
		for _, file := range files {
			b, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	f.Add([]byte("apiVersion: v1\nkind: Pod\nmetadata: {name: p, annotations: {apiaccess.io/inject: \"true\"}}\nspec:\n  containers: [{name: a}]\n  volumes: []\n"))
	f.Add([]byte("kind: Pod\napiVersion: v1\nspec:\n  containers:\n  - name: a\n    env:\n    - name: X\n      value: |\n        # not a comment\n    volumeMounts: [{name: m, mountPath: /m}]\nmetadata:\n  annotations:\n    apiaccess.io/inject: 'true'"))
	opts := goldenOptions(f, "")
	opts.Mode = injector.ModeOptIn
	f.Fuzz(func(t *testing.T, in []byte) {
		out, _, err := InjectBytes(in, opts)
		if err != nil {
			return // refused, or a layout the editor does not change in place: nothing written
		}
		checkOracle(t, in, out, opts)
		if bytes.Contains(in, []byte(injector.StatusAnnotation)) || bytes.Contains(in, []byte(strings.TrimSpace(recordPrefix))) {
			return // already injected: --uninject goes back to before that injection
		}
		if _, err := UninjectBytes(out); err != nil && strings.Contains(err.Error(), "a JSON document has no place") {
			return // JSON documents are injected without the record (TestJSONDocument)
		}
		checkRoundTrip(t, in, out, opts)
	})
}

// TestLayouts: layouts a manifest may have where the injection adds or changes something.
// Each is injected (namespace mode enabled), agrees with the whole-document diff, is stable
// when injected again and comes back byte for byte from --uninject; check says what else
// must hold of the text.
func TestLayouts(t *testing.T) {
	pod := func(meta, spec string) string {
		return "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n" + meta + "spec:\n" + spec
	}
	// lacks: no line but the uninject record holds s.
	lacks := func(s string) func(string) bool {
		return func(out string) bool {
			for line := range strings.Lines(out) {
				if strings.Contains(line, s) && !strings.Contains(line, strings.TrimSpace(recordPrefix)) {
					return false
				}
			}
			return true
		}
	}
	tests := []struct {
		name  string
		in    string
		check func(out string) bool
	}{
		{"empty lists written as []", pod("", "  initContainers: []\n  volumes: []\n  containers:\n  - name: a\n    image: a\n    env: []\n    volumeMounts: []\n"),
			lacks("[]")},
		{"lists without a value", pod("", "  initContainers:\n  volumes:\n  containers:\n  - name: a\n    image: a\n    env:\n"), nil},
		{"annotations {}", pod("  annotations: {}\n", "  containers:\n  - name: a\n"), lacks("{}")},
		{"annotations without a value", pod("  annotations:\n", "  containers:\n  - name: a\n"), nil},
		{"no annotations", pod("", "  containers:\n  - name: a\n"), nil},
		{"no final newline", pod("", "  containers:\n  - name: a\n    image: a"), nil},
		{"CRLF line ends", strings.ReplaceAll(pod("  annotations:\n    x: z\n", "  containers:\n  - name: a\n    image: a\n"), "\n", "\r\n"),
			func(out string) bool { return !strings.Contains(strings.ReplaceAll(out, "\r\n", ""), "\n") }},
		{"CRLF and no final newline", strings.ReplaceAll(pod("", "  containers:\n  - name: a"), "\n", "\r\n"),
			func(out string) bool { return !strings.Contains(strings.ReplaceAll(out, "\r\n", ""), "\n") }},
		{"indented sequences, name not first", pod("", "  containers:\n    - image: a\n      name: a\n      env:\n        - name: X\n          value: \"1\"\n"),
			func(out string) bool { return strings.Contains(out, "\n    - name: api-proxy\n") }},
		{"isolate-token removes the built-in token volume", pod("  annotations:\n    apiaccess.io/isolate-token: \"true\"\n",
			"  containers:\n  - name: a\n    image: a\n    volumeMounts:\n    - name: kube-api-access-abc\n      mountPath: /var/run/secrets/kubernetes.io/serviceaccount\n"+
				"      readOnly: true\n  volumes:\n  # the built-in one\n  - name: kube-api-access-abc\n    projected:\n      sources:\n      - serviceAccountToken: {path: token}\n"+
				"  - name: data\n    emptyDir: {}\n"), lacks("- name: kube-api-access-abc")},
		{"the kubeconfig annotation of earlier versions is removed", pod("  annotations:\n    apiaccess.io/kubeconfig: |\n      apiVersion: v1\n      # old\n    other: x\n",
			"  containers:\n  - name: a\n"), lacks("apiaccess.io/kubeconfig")},
		{"block scalar with a line like a comment, last", pod("", "  containers:\n  - name: a\n    command:\n    - sh\n    - -c\n    - |\n      echo hi\n      # not a comment\n"),
			func(out string) bool { return strings.Contains(out, "      # not a comment\n    env:\n") }},
		{"comments head the first element", pod("", "  initContainers:\n  # migrates\n  - name: m\n    image: m\n  containers:\n  - name: a\n"),
			func(out string) bool {
				return strings.Contains(out, "  initContainers:\n  - name: api-proxy\n") && strings.Contains(out, "  # migrates\n  - name: m\n")
			}},
		{"flow everywhere", "{apiVersion: v1, kind: Pod, metadata: {name: p}, spec: {containers: [{name: a, image: a}]}}\n", nil},
		{"a template in a List in flow items", "apiVersion: v1\nkind: List\nitems: [{apiVersion: batch/v1, kind: Job, metadata: {name: j}, spec: {template: {spec: {containers: [{name: a}]}}}}]\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := newOptions(t)
			opts.Mode = injector.ModeEnabled
			out, _, err := InjectBytes([]byte(tt.in), opts)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(out), "name: api-proxy") {
				t.Fatalf("not injected:\n%s", out)
			}
			if tt.check != nil && !tt.check(string(out)) {
				t.Errorf("the output does not have the expected shape:\n%s", out)
			}
			checkRoundTrip(t, []byte(tt.in), out, opts)
		})
	}
}

// TestJSONDocument: a manifest written in JSON stays JSON, what is added written in JSON too;
// having no place for the record comment, it cannot be uninjected, and --uninject says so.
func TestJSONDocument(t *testing.T) {
	in := `{
  "apiVersion": "v1",
  "kind": "Pod",
  "metadata": {
    "name": "p",
    "annotations": {
      "apiaccess.io/inject": "true"
    }
  },
  "spec": {
    "containers": [
      {
        "name": "a",
        "image": "a",
        "env": [{"name": "X", "value": "1"}]
      }
    ]
  }
}
`
	opts := newOptions(t)
	out, _, err := InjectBytes([]byte(in), opts)
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(out) || !strings.Contains(string(out), `"name":"api-proxy"`) {
		t.Errorf("not injected as JSON:\n%s", out)
	}
	checkOracle(t, []byte(in), out, opts)
	again, _, err := InjectBytes(out, opts)
	if err != nil || !bytes.Equal(again, out) {
		t.Errorf("injecting again changed it (%v):\n%s", err, again)
	}
	if _, err := UninjectBytes(out); err == nil || !strings.Contains(err.Error(), "Pod p: a JSON document has no place for the record") {
		t.Errorf("--uninject of a JSON document: err = %v", err)
	}
}

// TestUnsupportedLayouts: a layout the text edit cannot change in place is an error that names
// the object and the place, and nothing is returned; never a wrong text.
func TestUnsupportedLayouts(t *testing.T) {
	for name, in := range map[string]string{
		"an alias on the way": "apiVersion: v1\nkind: Pod\nmetadata: {name: p, annotations: {apiaccess.io/inject: \"true\"}}\n" +
			"spec:\n  containers: &c\n  - name: a\n    image: a\n  x-copy: *c\n",
		"an empty value in a flow mapping": "apiVersion: v1\nkind: Pod\nmetadata: {name: p, annotations: }\nspec:\n  containers:\n  - name: a\n",
	} {
		t.Run(name, func(t *testing.T) {
			opts := newOptions(t)
			opts.Mode = injector.ModeEnabled
			out, _, err := InjectBytes([]byte(in), opts)
			if err == nil || !strings.Contains(err.Error(), "Pod default/p") || !strings.Contains(err.Error(), "cannot be edited in place") || out != nil {
				t.Errorf("err = %v, output %q; want an error naming Pod default/p and no output", err, out)
			}
		})
	}
}
