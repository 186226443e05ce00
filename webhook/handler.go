package webhook

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	sigsjson "sigs.k8s.io/json"

	"github.com/api-access-injector/api-access-injector/injector"
	"github.com/api-access-injector/api-access-injector/internal/patch"
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

// Handler admits the pods of namespaces in one injection mode.
type Handler struct {
	// Injector does the mutation.
	Injector *injector.Injector
	// Mode is the injection mode of the namespaces whose pods this handler receives.
	Mode injector.NamespaceMode
}

// Register serves one handler per namespace mode on a webhook server.
func Register(mux interface{ Register(string, http.Handler) }, inj *injector.Injector) {
	for path, mode := range Paths {
		hook := &admission.Webhook{Handler: &Handler{Injector: inj, Mode: mode}}
		mux.Register(path, hook.WithRecoverPanic(true))
	}
}

// Handle implements admission.Handler.
func (h *Handler) Handle(ctx context.Context, req admission.Request) admission.Response {
	log := ctrl.LoggerFrom(ctx)
	if req.Resource != podResource || req.SubResource != "" || req.Operation != admissionv1.Create {
		return admission.Allowed("not a pod creation")
	}
	// Decoded as the API server encodes it: case-sensitive field names, integers kept exact.
	pod := &corev1.Pod{}
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(req.Object.Raw, pod); err != nil {
		record(h.Mode, resultError)
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding pod: %w", err))
	}
	// The API server sends only pods that passed its own schema; anything else gets no patch,
	// which could not apply to an object missing the metadata or spec it adds to.
	if (pod.Name == "" && pod.GenerateName == "") || len(pod.Spec.Containers) == 0 {
		record(h.Mode, resultError)
		return admission.Errored(http.StatusBadRequest, errors.New("decoding pod: not a pod: it needs metadata.name or metadata.generateName, and spec.containers"))
	}
	// Diff against the decoded original, not the raw request: both sides then lack the
	// fields the compiled types do not know, so the patch never removes them
	// (https://github.com/Azure/azure-workload-identity/issues/1312); and diff named lists
	// by name (package patch), so that inserting the sidecar first in initContainers does
	// not shift those fields into the wrong container.
	var snap patch.Snapshot
	snap.Take(pod)
	res, err := h.Injector.Mutate(injector.Namespace{Name: req.Namespace, Mode: h.Mode}, pod)
	var refusal *injector.Refusal
	switch {
	case errors.As(err, &refusal):
		record(h.Mode, resultRefused)
		log.Info("pod refused", "namespace", req.Namespace, "reason", refusal.Error())
		return admission.Denied(refusal.Error())
	case err != nil:
		record(h.Mode, resultError)
		return admission.Errored(http.StatusInternalServerError, err)
	case !res.Inject:
		record(h.Mode, resultSkipped)
		return admission.Allowed(res.Reason).WithWarnings(res.Warnings...)
	}
	ops, n, err := snap.AppendPatch(nil, pod)
	if err != nil {
		record(h.Mode, resultError)
		return admission.Errored(http.StatusInternalServerError, err)
	}
	record(h.Mode, resultInjected)
	log.V(1).Info("pod injected", "namespace", req.Namespace, "reason", res.Reason)
	resp := admission.Allowed(res.Reason).WithWarnings(res.Warnings...)
	if n > 0 {
		jsonPatch := admissionv1.PatchTypeJSONPatch
		resp.Patch, resp.PatchType = ops, &jsonPatch
	}
	return resp
}
