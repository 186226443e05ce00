package webhook

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	admissionmetrics "sigs.k8s.io/controller-runtime/pkg/webhook/admission/metrics"
	sigsjson "sigs.k8s.io/json"

	"github.com/api-access-injector/api-access-injector/injector"
	"github.com/api-access-injector/api-access-injector/injector/patch"
)

// Paths the webhook serves, one per namespace mode. The webhook configuration's entries
// call them; see config/webhook.
const (
	// OptInPath serves namespaces without the injection label, for pods annotated inject "true".
	OptInPath = "/inject/opt-in"
	// EnabledPath serves namespaces labelled enabled.
	EnabledPath = "/inject/enabled"
	// EnforcedPath serves namespaces labelled enforced.
	EnforcedPath = "/inject/enforced"
)

// Paths maps each served path to the namespace mode it stands for.
var Paths = map[string]injector.NamespaceMode{
	OptInPath:    injector.ModeOptIn,
	EnabledPath:  injector.ModeEnabled,
	EnforcedPath: injector.ModeEnforced,
}

var podResource = metav1.GroupVersionResource{Version: "v1", Resource: "pods"}

// maxRequestSize bounds the body read, as controller-runtime's admission webhook does: two
// objects of at most 3 MiB each and the rest of the review.
const maxRequestSize = 7 << 20

// Handler admits the pods of namespaces in one injection mode. It serves the AdmissionReview
// path itself, as an http.Handler registered on controller-runtime's webhook server (which
// brings TLS, certificate reloading and the request metrics): controller-runtime's
// admission.Webhook would parse each body twice (once only to read its apiVersion and kind),
// then again the pod it carries, and encode a patch it re-scans, all of which showed in the
// profiles of docs/performance.md. This one parses the body once, pod included, by the API
// server's own rules, derives the patch from what the injector did, and writes the answer in
// one buffer. It keeps what admission.Webhook gives: panic recovery, warnings, both
// AdmissionReview versions.
type Handler struct {
	injector   *injector.Injector
	mode       injector.NamespaceMode
	namespaces Namespaces // nil: no namespace defaults
	log        decisionLog
	// counters holds the counter of each valid result and reason for this mode, so that
	// counting costs no label lookup; nil where the pair cannot occur.
	counters [numResults][numReasons]prometheus.Counter
}

// NewHandler returns the handler of the pods of namespaces in mode. It logs its decisions
// with ctrl.Log, as it is when NewHandler is called.
func NewHandler(inj *injector.Injector, mode injector.NamespaceMode) *Handler {
	h := &Handler{injector: inj, mode: mode, log: newDecisionLog(ctrl.Log.WithName("admission"), modeLabel(mode))}
	for result := range numResults {
		for reason := range numReasons {
			if valid(result, reason) {
				h.counters[result][reason] = injections.WithLabelValues(resultLabels[result], reasonLabel(reason), modeLabel(mode))
			}
		}
	}
	return h
}

// record counts and logs how an admission ended.
func (h *Handler) record(st *state, out outcome, resp *response) {
	if c := h.counters[out.result][out.reason]; c != nil {
		c.Inc()
	} else {
		// A pair valid says cannot occur: still counted, under the same closed set of labels.
		injections.WithLabelValues(resultLabels[out.result], reasonLabel(out.reason), h.log.mode).Inc()
	}
	if h.log.enabled() {
		h.log.write(st, out, resp)
	}
}

// WithNamespaces has the handler read its pods' namespace defaults from ns, and returns it.
func (h *Handler) WithNamespaces(ns Namespaces) *Handler {
	h.namespaces = ns
	return h
}

// Register serves one handler per namespace mode on a webhook server, each reading namespace
// defaults from ns (none if nil).
func Register(mux interface{ Register(string, http.Handler) }, inj *injector.Injector, ns Namespaces) {
	for path, mode := range Paths {
		mux.Register(path, NewHandler(inj, mode).WithNamespaces(ns))
	}
}

// state is the memory one admission works in, reused from one to the next.
type state struct {
	body, out, patch []byte
	review           review
	req              request
	snap             patch.Snapshot
	// What the answer needs of the request: its UID and the version it was asked in.
	uid        string
	apiVersion string
}

var states = sync.Pool{New: func() any { return new(state) }}

// reset drops what refers to the last admission; buffers grown by an unusually large one are
// dropped too, so that the pool does not hold them.
func (st *state) reset() {
	st.review, st.req = review{}, request{}
	st.snap.Reset()
	for _, b := range []*[]byte{&st.body, &st.out, &st.patch} {
		if cap(*b) > 1<<20 {
			*b = nil
		}
	}
}

// jsonContentType is shared by every answer's header, which net/http only reads: setting the
// map entry directly saves the slice and key canonicalisation Header.Set would cost.
var jsonContentType = []string{"application/json"}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	st := states.Get().(*state)
	st.uid, st.apiVersion = "", reviewV1
	defer func() {
		if p := recover(); p != nil {
			// As controller-runtime's admission.Webhook does: count it, hand it to the panic
			// handlers (which log it with its stack), answer an error. The state may be
			// half-written: it does not go back to the pool.
			admissionmetrics.WebhookPanics.WithLabelValues().Inc()
			for _, fn := range utilruntime.PanicHandlers {
				fn(r.Context(), p)
			}
			resp := errored(http.StatusInternalServerError, fmt.Errorf("panic: %v [recovered]", p))
			h.record(st, internalError, &resp)
			write(w, appendReview(nil, st.apiVersion, st.uid, &resp))
			return
		}
		st.reset()
		states.Put(st)
	}()
	resp, out := h.serve(r, st)
	h.record(st, out, &resp)
	st.out = appendReview(st.out[:0], st.apiVersion, st.uid, &resp)
	write(w, st.out)
}

// write sends the answer in one piece, with its length: no chunked encoding.
func write(w http.ResponseWriter, b []byte) {
	header := w.Header()
	header["Content-Type"] = jsonContentType
	header["Content-Length"] = []string{strconv.Itoa(len(b))}
	_, _ = w.Write(b) // an error is the connection's: there is no one left to tell
}

// serve reads, decodes and admits one review, and says how it ended.
func (h *Handler) serve(r *http.Request, st *state) (response, outcome) {
	var body []byte
	var err error
	if r.Body != nil {
		body, err = readBody(st.body[:0], r.Body, r.ContentLength)
		st.body = body
	}
	switch {
	case err == nil && len(body) == 0:
		return errored(http.StatusBadRequest, errors.New("request body is empty")), badRequest
	case errors.Is(err, errTooLarge):
		return errored(http.StatusRequestEntityTooLarge, err), badRequest
	case err != nil:
		return errored(http.StatusBadRequest, fmt.Errorf("reading the request: %w", err)), badRequest
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		return errored(http.StatusBadRequest, fmt.Errorf("contentType=%s, expected application/json", ct)), badRequest
	}

	// Decoded as the API server decodes: case-sensitive field names, integers kept exact.
	st.review.Request = &st.req
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(body, &st.review); err != nil {
		return h.undecodable(body, st, err)
	}
	if resp, ok := h.checkVersion(st, st.review.APIVersion, st.review.Kind); !ok {
		return resp, badRequest
	}
	// The request points into the state, so an absent one looks empty: without a UID, it
	// could not be answered anyway.
	req := st.review.Request
	if req == nil || req.UID == "" {
		return errored(http.StatusBadRequest, errors.New("decoding the AdmissionReview: it has no request.uid")), badRequest
	}
	st.uid = string(req.UID)
	if req.Resource != podResource || req.SubResource != "" || req.Operation != admissionv1.Create {
		return allowed("not a pod creation"), notPodCreate
	}
	pod := &req.Object
	// The API server sends only pods that passed its own schema; anything else gets no patch,
	// which could not apply to an object missing the metadata or spec it adds to.
	if (pod.Name == "" && pod.GenerateName == "") || len(pod.Spec.Containers) == 0 {
		return errored(http.StatusBadRequest, errors.New("decoding pod: not a pod: it needs metadata.name or metadata.generateName, and spec.containers")), badRequest
	}

	// The patch is derived from what the injector changed, compared with a snapshot of the
	// pod as decoded (package patch): both sides lack the fields the compiled types do not
	// know, so the patch never removes them
	// (https://github.com/Azure/azure-workload-identity/issues/1312); and named lists are
	// patched by name, so that inserting the sidecar first in initContainers does not shift
	// those fields into the wrong container.
	ns := injector.Namespace{Name: req.Namespace, Mode: h.mode}
	if h.namespaces != nil {
		ns.Annotations = h.namespaces.Annotations(r.Context(), req.Namespace)
	}
	st.snap.Take(pod)
	res, err := h.injector.Mutate(ns, pod)
	var refusal *injector.Refusal
	switch {
	case errors.As(err, &refusal):
		return denied(refusal.Error()), outcome{resultRefused, int(refusal.Why())}
	case err != nil:
		return errored(http.StatusInternalServerError, err), internalError
	case !res.Inject:
		resp := allowed(res.Reason)
		resp.warnings = res.Warnings
		return resp, outcome{resultSkipped, int(res.Code)}
	}
	var n int
	if st.patch, n, err = st.snap.AppendPatch(st.patch[:0], pod); err != nil {
		return errored(http.StatusInternalServerError, fmt.Errorf("computing the patch: %w", err)), internalError
	}
	resp := allowed(res.Reason)
	resp.warnings = res.Warnings
	if n > 0 {
		resp.patch = st.patch
	}
	if res.Updated {
		return resp, outcome{resultUpdated, int(res.Code)}
	}
	return resp, outcome{resultInjected, int(res.Code)}
}

// undecodable answers a review whose full decoding failed: a request the webhook should not
// have been sent, whose object need not be a pod, is allowed as controller-runtime's handler
// would; a malformed pod or review is an error.
func (h *Handler) undecodable(body []byte, st *state, err error) (response, outcome) {
	var hdr reviewHeader
	if sigsjson.UnmarshalCaseSensitivePreserveInts(body, &hdr) != nil || hdr.Request == nil {
		return errored(http.StatusBadRequest, fmt.Errorf("decoding the AdmissionReview: %w", err)), badRequest
	}
	if resp, ok := h.checkVersion(st, hdr.APIVersion, hdr.Kind); !ok {
		return resp, badRequest
	}
	st.uid = string(hdr.Request.UID)
	req := hdr.Request
	if req.Resource != podResource || req.SubResource != "" || req.Operation != admissionv1.Create {
		return allowed("not a pod creation"), notPodCreate
	}
	return errored(http.StatusBadRequest, fmt.Errorf("decoding pod: %w", err)), badRequest
}

// checkVersion records the version to answer in, or answers an error for a body that is not
// an AdmissionReview the handler knows.
func (h *Handler) checkVersion(st *state, apiVersion, kind string) (response, bool) {
	switch {
	case (apiVersion == reviewV1 || apiVersion == reviewV1beta1) && (kind == reviewKind || kind == ""):
		st.apiVersion = apiVersion
	case apiVersion == "" && (kind == reviewKind || kind == ""):
	default:
		return errored(http.StatusBadRequest, fmt.Errorf("decoding the AdmissionReview: apiVersion %q, kind %q: want kind %s of %s or %s",
			apiVersion, kind, reviewKind, reviewV1, reviewV1beta1)), false
	}
	return response{}, true
}

var errTooLarge = fmt.Errorf("request entity is too large; limit is %d bytes", maxRequestSize)

// readBody appends the body to buf, sized at once when its length is known.
func readBody(buf []byte, body io.Reader, length int64) ([]byte, error) {
	if length > maxRequestSize {
		return buf, errTooLarge
	}
	if length > 0 {
		buf = slices.Grow(buf, int(length)+1) // one more byte, to read the end without growing
	}
	for {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, 4096)
		}
		n, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if len(buf) > maxRequestSize {
			return buf, errTooLarge
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}
