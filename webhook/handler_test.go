package webhook

import (
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	jsonpatchapply "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/api-access-injector/api-access-injector/injector"
	"github.com/api-access-injector/api-access-injector/internal/patch"
)

func newHandler(t testing.TB, mode injector.NamespaceMode) *Handler {
	t.Helper()
	inj, err := injector.New(injector.Config{Version: "test", Sidecar: injector.SidecarConfig{Image: "registry.example.com/api-proxy:test"}})
	if err != nil {
		t.Fatal(err)
	}
	return &Handler{Injector: inj, Mode: mode}
}

func podRequest(raw []byte) admission.Request {
	return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID:       "8d3b5d5e-0000-4000-8000-000000000001",
		Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Resource:  podResource,
		Namespace: "team-a",
		Operation: admissionv1.Create,
		Object:    runtime.RawExtension{Raw: raw},
	}}
}

// applyResponse applies the response's patch to the raw object, as the API server does.
func applyResponse(t *testing.T, raw []byte, resp admission.Response) map[string]any {
	t.Helper()
	ops := resp.Patch
	if len(resp.Patches) > 0 {
		var err error
		if ops, err = json.Marshal(resp.Patches); err != nil {
			t.Fatal(err)
		}
	}
	p, err := jsonpatchapply.DecodePatch(ops)
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.Apply(raw)
	if err != nil {
		t.Fatalf("applying the patch: %v", err)
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
	resp := newHandler(t, injector.ModeOptIn).Handle(t.Context(), podRequest(raw))
	if !resp.Allowed || len(resp.Patch) == 0 {
		t.Fatalf("not injected: %+v", resp.Result)
	}
	if strings.Contains(string(resp.Patch), "future") {
		t.Errorf("the patch touches an unknown field: %s", resp.Patch)
	}
	got := applyResponse(t, raw, resp)
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
// injector produces.
func TestPatchMatchesInjector(t *testing.T) {
	raw := realisticPod(t)
	h := newHandler(t, injector.ModeOptIn)
	resp := h.Handle(t.Context(), podRequest(raw))
	patched, err := json.Marshal(applyResponse(t, raw, resp))
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
	if _, err := h.Injector.Mutate(injector.Namespace{Name: "team-a"}, &want); err != nil {
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
	tests := []struct {
		name    string
		mode    injector.NamespaceMode
		req     admission.Request
		allowed bool
		patched bool
		code    int32
		message string
		warning string
	}{
		{name: "injected", req: podRequest(pod(`{"apiaccess.io/inject":"true"}`)), allowed: true, patched: true},
		{name: "skipped", req: podRequest(pod(`{}`)), allowed: true},
		{name: "refused", req: podRequest(pod(`{"apiaccess.io/inject":"true","apiaccess.io/read-only":"yes"}`)),
			code: http.StatusForbidden, message: `annotation apiaccess.io/read-only: invalid value "yes": must be "true" or "false"`},
		{name: "enforced overrides opt-out", mode: injector.ModeEnforced, req: podRequest(pod(`{"apiaccess.io/inject":"false"}`)),
			allowed: true, patched: true, warning: `"false" overridden`},
		{name: "not JSON", req: podRequest([]byte(`{"kind":`)), code: http.StatusBadRequest, message: "decoding pod"},
		{name: "not a pod", req: func() admission.Request {
			r := podRequest(pod(`{"apiaccess.io/inject":"true"}`))
			r.Resource = metav1.GroupVersionResource{Version: "v1", Resource: "configmaps"}
			return r
		}(), allowed: true},
		{name: "an update", req: func() admission.Request {
			r := podRequest(pod(`{"apiaccess.io/inject":"true"}`))
			r.Operation = admissionv1.Update
			return r
		}(), allowed: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := newHandler(t, tt.mode).Handle(t.Context(), tt.req)
			if resp.Allowed != tt.allowed || (len(resp.Patch) > 0) != tt.patched {
				t.Errorf("allowed = %v, %d patches; want allowed %v, patched %v", resp.Allowed, len(resp.Patches), tt.allowed, tt.patched)
			}
			if tt.code != 0 && (resp.Result == nil || resp.Result.Code != tt.code || !strings.Contains(resp.Result.Message, tt.message)) {
				t.Errorf("result = %+v, want code %d and a message containing %q", resp.Result, tt.code, tt.message)
			}
			if got := strings.Join(resp.Warnings, "\n"); !strings.Contains(got, tt.warning) || (tt.warning == "") != (got == "") {
				t.Errorf("warnings = %q, want %q", resp.Warnings, tt.warning)
			}
		})
	}
}

// FuzzHandle feeds arbitrary objects through the decode path: the handler must answer every
// one of them without panicking (the webhook's own panic recovery is not in this path).
func FuzzHandle(f *testing.F) {
	f.Add(realisticPod(f))
	f.Add([]byte(`{"metadata":{"annotations":{"apiaccess.io/inject":"true","apiaccess.io/proxy-port":"9"}},"spec":{"hostNetwork":true}}`))
	f.Add([]byte(`{"spec":{"initContainers":[{"name":"api-proxy"}],"volumes":[{"name":"apiaccess-token"}]}}`))
	f.Add([]byte(`{"metadata":{"annotations":{"apiaccess.io/inject":"true","apiaccess.io/status":"{\"sidecar\":\"api-proxy\"}"}}}`))
	f.Add([]byte(`null`))
	h := newHandler(f, injector.ModeEnabled)
	f.Fuzz(func(t *testing.T, raw []byte) {
		resp := h.Handle(t.Context(), podRequest(raw))
		if !resp.Allowed && (resp.Result == nil || resp.Result.Code == 0 || resp.Result.Message == "") {
			t.Errorf("refusal without code or message: %+v", resp.Result)
		}
		if resp.Allowed && len(resp.Patch) > 0 {
			// The patch applies to what was sent, and does what the whole-document diff does.
			got := applyResponse(t, raw, resp)
			var original corev1.Pod
			if err := sigsjson.UnmarshalCaseSensitivePreserveInts(raw, &original); err != nil {
				t.Fatal(err)
			}
			modified := original.DeepCopy()
			if _, err := h.Injector.Mutate(injector.Namespace{Name: "team-a", Mode: h.Mode}, modified); err != nil {
				t.Fatal(err)
			}
			a, _ := json.Marshal(&original)
			b, _ := json.Marshal(modified)
			ops, err := patch.Create(a, b)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(applyResponse(t, raw, admission.Patched("", ops...)), got); diff != "" {
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

// BenchmarkHandle measures the whole admission of the benchmark pod: decode, inject,
// marshal both versions, diff into a patch.
func BenchmarkHandle(b *testing.B) {
	h := newHandler(b, injector.ModeOptIn)
	req := podRequest(realisticPod(b))
	b.SetBytes(int64(len(req.Object.Raw)))
	b.ReportAllocs()
	for b.Loop() {
		if resp := h.Handle(b.Context(), req); len(resp.Patch) == 0 {
			b.Fatal("not injected")
		}
	}
}
