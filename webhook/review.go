package webhook

import (
	"encoding/base64"
	"strconv"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/api-access-injector/api-access-injector/injector/patch"
)

// The AdmissionReview versions the handler reads and answers in: the one it was asked in.
// v1beta1 has the same fields (controller-runtime's handler accepts both likewise).
const (
	reviewV1      = "admission.k8s.io/v1"
	reviewV1beta1 = "admission.k8s.io/v1beta1"
	reviewKind    = "AdmissionReview"
)

// review is an AdmissionReview as far as the handler reads it, the pod decoded in the same
// pass as the rest: the body is parsed once. Fields it does not need (userInfo, oldObject,
// options) are skipped by the decoder, not decoded.
type review struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Request    *request `json:"request"`
}

type request struct {
	UID         types.UID                   `json:"uid"`
	Resource    metav1.GroupVersionResource `json:"resource"`
	SubResource string                      `json:"subResource"`
	Namespace   string                      `json:"namespace"`
	Operation   admissionv1.Operation       `json:"operation"`
	Object      corev1.Pod                  `json:"object"`
}

// reviewHeader is a review without its object: what is read of a body whose object is not a
// pod, to tell a request the webhook should not have been sent from a malformed pod.
type reviewHeader struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Request    *struct {
		UID         types.UID                   `json:"uid"`
		Resource    metav1.GroupVersionResource `json:"resource"`
		SubResource string                      `json:"subResource"`
		Operation   admissionv1.Operation       `json:"operation"`
	} `json:"request"`
}

// response is the handler's answer, as controller-runtime's admission.Response would put it.
type response struct {
	allowed  bool
	code     int32
	reason   metav1.StatusReason
	message  string
	patch    []byte // a JSON patch, or nil
	warnings []string
}

func allowed(message string) response { return response{allowed: true, code: 200, message: message} }

func denied(message string) response {
	return response{code: 403, reason: metav1.StatusReasonForbidden, message: message}
}

func errored(code int32, err error) response { return response{code: code, message: err.Error()} }

// appendReview appends the AdmissionReview answering uid with r, in the version apiVersion,
// as encoding/json would write an admissionv1.AdmissionReview (TestResponseEncoding checks
// that), without reflection and with the patch base64-encoded straight into the buffer.
func appendReview(b []byte, apiVersion, uid string, r *response) []byte {
	b = append(b, `{"kind":"AdmissionReview","apiVersion":`...)
	b = patch.AppendJSONString(b, apiVersion)
	b = append(b, `,"response":{"uid":`...)
	b = patch.AppendJSONString(b, uid)
	b = append(b, `,"allowed":`...)
	b = strconv.AppendBool(b, r.allowed)
	b = append(b, `,"status":{"metadata":{}`...)
	if r.message != "" {
		b = append(b, `,"message":`...)
		b = patch.AppendJSONString(b, r.message)
	}
	if r.reason != "" {
		b = append(b, `,"reason":`...)
		b = patch.AppendJSONString(b, string(r.reason))
	}
	if r.code != 0 {
		b = append(b, `,"code":`...)
		b = strconv.AppendInt(b, int64(r.code), 10)
	}
	b = append(b, '}')
	if r.patch != nil {
		b = append(b, `,"patch":"`...)
		b = base64.StdEncoding.AppendEncode(b, r.patch)
		b = append(b, `","patchType":"JSONPatch"`...)
	}
	if len(r.warnings) > 0 {
		b = append(b, `,"warnings":[`...)
		for i, w := range r.warnings {
			if i > 0 {
				b = append(b, ',')
			}
			b = patch.AppendJSONString(b, w)
		}
		b = append(b, ']')
	}
	return append(b, "}}\n"...)
}
