package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap/zapcore"
	jsonpatchapply "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	toolscache "k8s.io/client-go/tools/cache"
	admissionmetrics "sigs.k8s.io/controller-runtime/pkg/webhook/admission/metrics"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/api-access-injector/api-access-injector/injector"
	"github.com/api-access-injector/api-access-injector/injector/patch"
)

const testUID = "8d3b5d5e-0000-4000-8000-000000000001"

func newInjector(t testing.TB) *injector.Injector {
	t.Helper()
	inj, err := injector.New(injector.Config{Version: "test", Sidecar: injector.SidecarConfig{Image: "registry.example.com/api-proxy:test"}})
	if err != nil {
		t.Fatal(err)
	}
	return inj
}

func newHandler(t testing.TB, mode injector.NamespaceMode) *Handler {
	t.Helper()
	return NewHandler(newInjector(t), mode)
}

// reviewBody is an AdmissionReview v1 of the creation of a pod in namespace team-a, with raw
// (any bytes) as its object; edit changes the request first.
func reviewBody(t testing.TB, raw []byte, edit func(*admissionv1.AdmissionRequest)) []byte {
	t.Helper()
	req := &admissionv1.AdmissionRequest{
		UID:       testUID,
		Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Resource:  podResource,
		Namespace: "team-a",
		Operation: admissionv1.Create,
		Object:    runtime.RawExtension{Raw: []byte(`"OBJECT"`)},
	}
	if edit != nil {
		edit(req)
	}
	body, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: reviewV1, Kind: reviewKind},
		Request:  req,
	})
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Replace(body, []byte(`"OBJECT"`), raw, 1)
}

// count is the value of a counter.
func count(t testing.TB, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// post sends body to h as the API server does and returns the AdmissionReview it answers,
// after checking that the answer is one JSON document of the length it announces.
func post(t testing.TB, h http.Handler, body []byte, contentType string) *admissionv1.AdmissionReview {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, OptInPath, bytes.NewReader(body))
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("HTTP %d, Content-Type %q; want 200, application/json", rec.Code, rec.Header().Get("Content-Type"))
	}
	if got := rec.Header().Get("Content-Length"); got != strconv.Itoa(rec.Body.Len()) {
		t.Errorf("Content-Length %q for a body of %d bytes", got, rec.Body.Len())
	}
	var ar admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &ar); err != nil || ar.Response == nil {
		t.Fatalf("answer %s: not an AdmissionReview with a response (%v)", rec.Body.Bytes(), err)
	}
	return &ar
}

// applyPatch applies a JSON patch to the raw object, as the API server does.
func applyPatch(t testing.TB, raw, ops []byte) map[string]any {
	t.Helper()
	p, err := jsonpatchapply.DecodePatch(ops)
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.Apply(raw)
	if err != nil {
		t.Fatalf("applying the patch %s: %v", ops, err)
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestUnknownFieldsAreNeverTouched: a pod from a newer API server carries fields this binary's
// types do not know, in the spec and in init and regular containers. No patch operation may
// touch them, and they must stay in their own container although the sidecar is inserted
// before it.
func TestUnknownFieldsAreNeverTouched(t *testing.T) {
	raw := []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","annotations":{"apiaccess.io/inject":"true"}},
		"spec":{"futurePodField":{"a":1},"serviceAccountName":"sa",
		"initContainers":[{"name":"migrate","image":"m","futureContainerField":"init"}],
		"containers":[{"name":"app","image":"a","futureContainerField":"app","env":[{"name":"X","value":"1","futureEnvField":true}]}]}}`)
	resp := post(t, newHandler(t, injector.ModeOptIn), reviewBody(t, raw, nil), "application/json").Response
	if !resp.Allowed || len(resp.Patch) == 0 {
		t.Fatalf("not injected: %+v", resp.Result)
	}
	var ops []struct{ Op, Path string }
	if err := json.Unmarshal(resp.Patch, &ops); err != nil {
		t.Fatal(err)
	}
	for _, op := range ops {
		if strings.Contains(op.Path, "future") {
			t.Errorf("operation %s %s touches an unknown field", op.Op, op.Path)
		}
	}
	got := applyPatch(t, raw, resp.Patch)
	spec := got["spec"].(map[string]any)
	init := spec["initContainers"].([]any)
	containers := spec["containers"].([]any)
	checks := []struct {
		what string
		got  any
		want any
	}{
		{"spec.futurePodField", spec["futurePodField"], map[string]any{"a": 1.0}},
		{"initContainers[0].name", init[0].(map[string]any)["name"], injector.SidecarName},
		{"initContainers[0].futureContainerField", init[0].(map[string]any)["futureContainerField"], nil},
		{"initContainers[1].futureContainerField", init[1].(map[string]any)["futureContainerField"], "init"},
		{"containers[0].futureContainerField", containers[0].(map[string]any)["futureContainerField"], "app"},
		{"containers[0].env[0].futureEnvField", containers[0].(map[string]any)["env"].([]any)[0].(map[string]any)["futureEnvField"], true},
	}
	for _, c := range checks {
		if diff := cmp.Diff(c.want, c.got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", c.what, diff)
		}
	}
}

// TestPatchMatchesInjector: the patch applied to the request gives exactly the pod the
// injector produces, and the answer carries the request's UID.
func TestPatchMatchesInjector(t *testing.T) {
	raw := realisticPod(t)
	h := newHandler(t, injector.ModeOptIn)
	ar := post(t, h, reviewBody(t, raw, nil), "application/json")
	if ar.Response.UID != testUID || ar.APIVersion != reviewV1 || ar.Kind != reviewKind {
		t.Errorf("answer %s %s for UID %q; want %s %s for %q", ar.APIVersion, ar.Kind, ar.Response.UID, reviewV1, reviewKind, testUID)
	}
	if pt := ar.Response.PatchType; pt == nil || *pt != admissionv1.PatchTypeJSONPatch {
		t.Errorf("patchType %v, want JSONPatch", pt)
	}
	patched, err := json.Marshal(applyPatch(t, raw, ar.Response.Patch))
	if err != nil {
		t.Fatal(err)
	}
	var got, want corev1.Pod
	if err := json.Unmarshal(patched, &got); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	if _, err := h.injector.Mutate(injector.Namespace{Name: "team-a"}, &want); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&want, &got); diff != "" {
		t.Errorf("patched request differs from the injector's pod (-injector +patched):\n%s", diff)
	}
}

func TestResponses(t *testing.T) {
	pod := func(annotations string) []byte {
		return []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","annotations":` + annotations + `},"spec":{"containers":[{"name":"app","image":"a"}]}}`)
	}
	optIn := pod(`{"apiaccess.io/inject":"true"}`)
	tests := []struct {
		name        string
		mode        injector.NamespaceMode
		body        []byte
		contentType string // application/json unless set
		apiVersion  string // of the answer: v1 unless set
		uid         string // of the answer: testUID unless set
		allowed     bool
		patched     bool
		code        int32
		message     string
		warning     string
		out         outcome // the result and reason counted
	}{
		{name: "injected", body: reviewBody(t, optIn, nil), allowed: true, patched: true, out: outcome{resultInjected, int(injector.ReasonOptedIn)}},
		{name: "skipped", body: reviewBody(t, pod(`{}`), nil), allowed: true, code: 200, out: outcome{resultSkipped, int(injector.ReasonNotOptedIn)}},
		{name: "refused", body: reviewBody(t, pod(`{"apiaccess.io/inject":"true","apiaccess.io/read-only":"yes"}`), nil),
			code: http.StatusForbidden, message: `annotation apiaccess.io/read-only: invalid value "yes": must be "true" or "false"`, out: outcome{resultRefused, int(injector.ReasonRefusedAnnotation)}},
		{name: "enforced overrides opt-out", mode: injector.ModeEnforced, body: reviewBody(t, pod(`{"apiaccess.io/inject":"false"}`), nil),
			allowed: true, patched: true, warning: `"false" overridden`, out: outcome{resultInjected, int(injector.ReasonEnforcedOverride)}},
		{name: "a pod of the wrong shape", body: reviewBody(t, []byte(`{"metadata":{"name":"p"},"spec":{"containers":"app"}}`), nil),
			code: http.StatusBadRequest, message: "decoding pod: json: cannot unmarshal string", out: badRequest},
		{name: "not a pod", body: reviewBody(t, []byte(`{"metadata":{"name":"c"},"spec":"not a pod spec"}`), func(r *admissionv1.AdmissionRequest) {
			r.Resource = metav1.GroupVersionResource{Version: "v1", Resource: "configmaps"}
		}), allowed: true, code: 200, message: "not a pod creation", out: notPodCreate},
		{name: "an update", body: reviewBody(t, optIn, func(r *admissionv1.AdmissionRequest) { r.Operation = admissionv1.Update }),
			allowed: true, code: 200, message: "not a pod creation", out: notPodCreate},
		{name: "a v1beta1 review is answered in v1beta1", body: bytes.Replace(reviewBody(t, optIn, nil), []byte(reviewV1), []byte(reviewV1beta1), 1),
			apiVersion: reviewV1beta1, allowed: true, patched: true, out: outcome{resultInjected, int(injector.ReasonOptedIn)}},
		{name: "field names are case-sensitive", body: bytes.Replace(reviewBody(t, optIn, nil), []byte(`"annotations"`), []byte(`"Annotations"`), 1),
			allowed: true, code: 200, out: outcome{resultSkipped, int(injector.ReasonNotOptedIn)}},
		{name: "not JSON", body: []byte(`{"kind":`), uid: "-", code: http.StatusBadRequest, message: "decoding the AdmissionReview", out: badRequest},
		{name: "not an AdmissionReview", body: []byte(`{"apiVersion":"v1","kind":"Pod","request":{"uid":"x"}}`), uid: "-",
			code: http.StatusBadRequest, message: `apiVersion "v1", kind "Pod": want kind AdmissionReview`, out: badRequest},
		{name: "no request", body: []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`), uid: "-",
			code: http.StatusBadRequest, message: "it has no request.uid", out: badRequest},
		{name: "not application/json", body: reviewBody(t, optIn, nil), contentType: "application/yaml", uid: "-",
			code: http.StatusBadRequest, message: "contentType=application/yaml, expected application/json", out: badRequest},
		{name: "empty", body: []byte{}, uid: "-", code: http.StatusBadRequest, message: "request body is empty", out: badRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHandler(t, tt.mode)
			contentType := tt.contentType
			if contentType == "" {
				contentType = "application/json"
			}
			counter := count(t, h.counters[tt.out.result][tt.out.reason])
			ar := post(t, h, tt.body, contentType)
			resp := ar.Response
			if resp.Allowed != tt.allowed || (len(resp.Patch) > 0) != tt.patched {
				t.Errorf("allowed = %v, patch %s; want allowed %v, patched %v", resp.Allowed, resp.Patch, tt.allowed, tt.patched)
			}
			if tt.code != 0 && (resp.Result == nil || resp.Result.Code != tt.code || !strings.Contains(resp.Result.Message, tt.message)) {
				t.Errorf("result = %+v, want code %d and a message containing %q", resp.Result, tt.code, tt.message)
			}
			if got := strings.Join(resp.Warnings, "\n"); !strings.Contains(got, tt.warning) || (tt.warning == "") != (got == "") {
				t.Errorf("warnings = %q, want %q", resp.Warnings, tt.warning)
			}
			wantVersion, wantUID := reviewV1, testUID
			if tt.apiVersion != "" {
				wantVersion = tt.apiVersion
			}
			if tt.uid == "-" {
				wantUID = ""
			}
			if ar.APIVersion != wantVersion || string(resp.UID) != wantUID {
				t.Errorf("answer %s for UID %q, want %s for %q", ar.APIVersion, resp.UID, wantVersion, wantUID)
			}
			if got := count(t, h.counters[tt.out.result][tt.out.reason]) - counter; got != 1 {
				t.Errorf("apiaccess_injections_total{result=%q, reason=%q} went up by %v, want 1",
					resultLabels[tt.out.result], reasonLabel(tt.out.reason), got)
			}
		})
	}
}

// TestPanicIsRecovered: a panic in the admission is answered with an error for the same UID,
// counted in controller-runtime's panic metric, and the next admission is served.
func TestPanicIsRecovered(t *testing.T) {
	broken := NewHandler(nil, injector.ModeOptIn) // Mutate on a nil injector panics
	panics := count(t, admissionmetrics.WebhookPanics.WithLabelValues())
	resp := post(t, broken, reviewBody(t, realisticPod(t), nil), "application/json").Response
	if resp.Allowed || resp.UID != testUID || resp.Result == nil || resp.Result.Code != http.StatusInternalServerError ||
		!strings.Contains(resp.Result.Message, "[recovered]") {
		t.Errorf("answer %+v, want a 500 error for UID %s saying the panic was recovered", resp, testUID)
	}
	if got := count(t, admissionmetrics.WebhookPanics.WithLabelValues()) - panics; got != 1 {
		t.Errorf("controller_runtime_webhook_panics_total went up by %v, want 1", got)
	}
	if resp := post(t, newHandler(t, injector.ModeOptIn), reviewBody(t, realisticPod(t), nil), "application/json").Response; len(resp.Patch) == 0 {
		t.Errorf("the admission after the panic was not injected: %+v", resp.Result)
	}
}

// TestResponseEncoding: the hand-written answer is what encoding/json makes of the same
// admissionv1.AdmissionReview.
func TestResponseEncoding(t *testing.T) {
	tests := []struct {
		name string
		r    response
	}{
		{"patched with warnings", response{allowed: true, code: 200, message: "injected", patch: []byte(`[{"op":"add","path":"/a","value":"<&>"}]`),
			warnings: []string{`container "a" sets KUBECONFIG itself`, "tab\there, newline\nthere, \u2028, \x01, \xff"}}},
		{"allowed, no message", response{allowed: true, code: 200}},
		{"denied", denied(`annotation apiaccess.io/read-only: invalid value "yes"`)},
		{"errored", errored(http.StatusBadRequest, fmt.Errorf("decoding pod: \\ %q", "é"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := admissionv1.AdmissionReview{
				TypeMeta: metav1.TypeMeta{APIVersion: reviewV1beta1, Kind: reviewKind},
				Response: &admissionv1.AdmissionResponse{
					UID: testUID, Allowed: tt.r.allowed, Warnings: tt.r.warnings,
					Result: &metav1.Status{Code: tt.r.code, Reason: tt.r.reason, Message: tt.r.message},
				},
			}
			if tt.r.patch != nil {
				jsonPatch := admissionv1.PatchTypeJSONPatch
				want.Response.Patch, want.Response.PatchType = tt.r.patch, &jsonPatch
			}
			wantJSON, err := json.Marshal(want)
			if err != nil {
				t.Fatal(err)
			}
			var got, wantValue any
			if err := json.Unmarshal(appendReview(nil, reviewV1beta1, testUID, &tt.r), &got); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(wantJSON, &wantValue); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(wantValue, got); diff != "" {
				t.Errorf("answer differs from encoding/json's (-want +got):\n%s", diff)
			}
		})
	}
}

// FuzzHandle feeds arbitrary objects through the handler: it must answer every one of them
// (without the panic recovery, which the check below would see), and where it patches, the
// patch must apply to what was sent and agree with the whole-document diff.
func FuzzHandle(f *testing.F) {
	f.Add(realisticPod(f))
	f.Add([]byte(`{"metadata":{"annotations":{"apiaccess.io/inject":"true","apiaccess.io/proxy-port":"9"}},"spec":{"hostNetwork":true}}`))
	f.Add([]byte(`{"spec":{"initContainers":[{"name":"api-proxy"}],"volumes":[{"name":"apiaccess-token"}]}}`))
	f.Add([]byte(`{"metadata":{"annotations":{"apiaccess.io/inject":"true","apiaccess.io/status":"{\"sidecar\":\"api-proxy\"}"}}}`))
	f.Add([]byte(`null`))
	h := newHandler(f, injector.ModeEnabled)
	f.Fuzz(func(t *testing.T, raw []byte) {
		panics := count(t, admissionmetrics.WebhookPanics.WithLabelValues())
		resp := post(t, h, reviewBody(t, raw, nil), "application/json").Response
		if count(t, admissionmetrics.WebhookPanics.WithLabelValues()) != panics {
			t.Fatalf("the handler panicked: %+v", resp.Result)
		}
		if !resp.Allowed && (resp.Result == nil || resp.Result.Code == 0 || resp.Result.Message == "") {
			t.Errorf("refusal without code or message: %+v", resp.Result)
		}
		if resp.Allowed && len(resp.Patch) > 0 {
			// The patch applies to what was sent, and does what the whole-document diff does.
			got := applyPatch(t, raw, resp.Patch)
			var original corev1.Pod
			if err := sigsjson.UnmarshalCaseSensitivePreserveInts(raw, &original); err != nil {
				t.Fatal(err)
			}
			modified := original.DeepCopy()
			if _, err := h.injector.Mutate(injector.Namespace{Name: "team-a", Mode: h.mode}, modified); err != nil {
				t.Fatal(err)
			}
			a, _ := json.Marshal(&original)
			b, _ := json.Marshal(modified)
			ops, err := patch.Diff(a, b)
			if err != nil {
				t.Fatal(err)
			}
			whole, err := json.Marshal(ops)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(applyPatch(t, raw, whole), got); diff != "" {
				t.Errorf("the handler's patch and the whole-document diff differ (-whole +handler):\n%s", diff)
			}
		}
	})
}

// realisticPod is the benchmark pod (3 containers, ~5 KB), opted in, as JSON.
func realisticPod(t testing.TB) []byte {
	t.Helper()
	data, err := os.ReadFile("../injector/testdata/realistic.in.yaml")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := yaml.YAMLToJSON(data)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// discard is a ResponseWriter that keeps only what the benchmarks check.
type discard struct {
	header http.Header
	n      int
}

func (d *discard) Header() http.Header         { return d.header }
func (d *discard) Write(p []byte) (int, error) { d.n += len(p); return len(p), nil }
func (d *discard) WriteHeader(int)             {}

// rewinder is a request body that can be read again.
type rewinder struct{ bytes.Reader }

func (*rewinder) Close() error { return nil }

// BenchmarkServeHTTP measures the admission of the benchmark pod from the request body to the
// answer written: decode, inject, patch, encode. Its baseline in the same run, null, is the
// harness's floor as hack/webhookload defines it: decode the review and the pod with
// encoding/json, answer a one-operation patch with a json.Encoder.
func BenchmarkServeHTTP(b *testing.B) {
	body := reviewBody(b, realisticPod(b), nil)
	for _, bench := range []struct {
		name    string
		handler http.Handler
	}{
		{"api-access-injector", newHandler(b, injector.ModeOptIn)},
		// With the decision log on, as the binary logs at info, JSON to a discarded stream:
		// the cost of one log line per admission, against the row above.
		{"api-access-injector-info-log", withLog(newHandler(b, injector.ModeOptIn), zapcore.AddSync(io.Discard), zapcore.InfoLevel)},
		// With the namespace cache of the binary, holding the pod's namespace (no defaults).
		{"api-access-injector-namespace-cache", newHandler(b, injector.ModeOptIn).WithNamespaces(cachedNamespace(b, "team-a", nil))},
		{"null", http.HandlerFunc(nullWebhook)},
	} {
		b.Run(bench.name, func(b *testing.B) {
			w := &discard{header: http.Header{}}
			r := httptest.NewRequest(http.MethodPost, OptInPath, nil)
			r.Header.Set("Content-Type", "application/json")
			r.ContentLength = int64(len(body))
			var rw rewinder
			r.Body = &rw
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				rw.Reset(body)
				w.n = 0
				clear(w.header)
				bench.handler.ServeHTTP(w, r)
				if w.n < 100 {
					b.Fatal("no answer")
				}
			}
			b.ReportMetric(float64(w.n), "answer-bytes")
		})
	}
}

// nullWebhook is hack/webhookload's null webhook.
func nullWebhook(w http.ResponseWriter, r *http.Request) {
	var review admissionv1.AdmissionReview
	if err := json.NewDecoder(r.Body).Decode(&review); err != nil || review.Request == nil {
		http.Error(w, "bad review", http.StatusBadRequest)
		return
	}
	var pod corev1.Pod
	if err := json.Unmarshal(review.Request.Object.Raw, &pod); err != nil {
		http.Error(w, "bad pod", http.StatusBadRequest)
		return
	}
	jsonPatch := admissionv1.PatchTypeJSONPatch
	review.Response = &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true, PatchType: &jsonPatch,
		Patch: []byte(`[{"op":"add","path":"/metadata/annotations/null","value":"true"}]`)}
	review.Request = nil
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(&review)
}

// TestPatchAddsPullSecrets: with sidecar.imagePullSecrets, the derived patch adds those a pod
// lacks and keeps its own, as the whole-document diff would (the pod's list is not one
// patch.Snapshot clones, so the injector must not write it in place).
func TestPatchAddsPullSecrets(t *testing.T) {
	inj, err := injector.New(injector.Config{Version: "test", Sidecar: injector.SidecarConfig{
		Image:            "registry.example.com/api-proxy:test",
		ImagePullSecrets: []corev1.LocalObjectReference{{Name: "sidecar-registry"}, {Name: "shared"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	h := NewHandler(inj, injector.ModeOptIn)
	for _, tt := range []struct {
		name string
		own  string // the pod's spec.imagePullSecrets, as JSON
		want []corev1.LocalObjectReference
	}{
		{"none", ``, []corev1.LocalObjectReference{{Name: "sidecar-registry"}, {Name: "shared"}}},
		{"empty", `"imagePullSecrets":[],`, []corev1.LocalObjectReference{{Name: "sidecar-registry"}, {Name: "shared"}}},
		{"some, one shared", `"imagePullSecrets":[{"name":"team"},{"name":"shared"}],`,
			[]corev1.LocalObjectReference{{Name: "team"}, {Name: "shared"}, {Name: "sidecar-registry"}}},
		{"all", `"imagePullSecrets":[{"name":"shared"},{"name":"sidecar-registry"}],`,
			[]corev1.LocalObjectReference{{Name: "shared"}, {Name: "sidecar-registry"}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			raw := []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","annotations":{"apiaccess.io/inject":"true"}},` +
				`"spec":{` + tt.own + `"containers":[{"name":"app","image":"a"}]}}`)
			resp := post(t, h, reviewBody(t, raw, nil), "application/json").Response
			patched, err := json.Marshal(applyPatch(t, raw, resp.Patch))
			if err != nil {
				t.Fatal(err)
			}
			var got corev1.Pod
			if err := json.Unmarshal(patched, &got); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got.Spec.ImagePullSecrets); diff != "" {
				t.Errorf("imagePullSecrets (-want +got):\n%s\npatch: %s", diff, resp.Patch)
			}
			var want corev1.Pod
			if err := json.Unmarshal(raw, &want); err != nil {
				t.Fatal(err)
			}
			if _, err := inj.Mutate(injector.Namespace{Name: "team-a"}, &want); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(&want, &got); diff != "" {
				t.Errorf("patched request differs from the injector's pod (-injector +patched):\n%s", diff)
			}
		})
	}
}

// cachedNamespace is a NamespaceCache whose informer store holds one namespace.
func cachedNamespace(t testing.TB, name string, annotations map[string]string) *NamespaceCache {
	t.Helper()
	store := toolscache.NewStore(toolscache.MetaNamespaceKeyFunc)
	if err := store.Add(&metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations}}); err != nil {
		t.Fatal(err)
	}
	nc := &NamespaceCache{}
	nc.store.Store(&store)
	return nc
}

// TestNamespaceCacheDefaults: a pod of a namespace the cache holds gets its defaults, without
// the API server (the cache has no live reader here: a miss would panic).
func TestNamespaceCacheDefaults(t *testing.T) {
	h := newHandler(t, injector.ModeOptIn).WithNamespaces(cachedNamespace(t, "team-a", map[string]string{injector.ReadOnlyAnnotation: "true"}))
	raw := []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","annotations":{"apiaccess.io/inject":"true"}},"spec":{"containers":[{"name":"app","image":"a"}]}}`)
	resp := post(t, h, reviewBody(t, raw, nil), "application/json").Response
	patched := applyPatch(t, raw, resp.Patch)
	status := patched["metadata"].(map[string]any)["annotations"].(map[string]any)[injector.StatusAnnotation].(string)
	if !strings.Contains(status, `"readOnly":true`) {
		t.Errorf("status %s: want readOnly, the namespace's default", status)
	}
}
