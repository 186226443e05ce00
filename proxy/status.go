package proxy

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// status is the subset of the Kubernetes metav1.Status that the proxy writes, so that
// clients (kubectl, client-go and the other official clients) show the message as they show
// the API server's own errors.
type status struct {
	Kind       string   `json:"kind"`
	APIVersion string   `json:"apiVersion"`
	Metadata   struct{} `json:"metadata"`
	Status     string   `json:"status"`
	Message    string   `json:"message"`
	Reason     string   `json:"reason,omitempty"`
	Code       int      `json:"code"`
}

// Reasons of the Status bodies the proxy writes, from the Kubernetes API's StatusReason values.
const (
	reasonForbidden = "Forbidden"
	reasonNotFound  = "NotFound"
)

// writeStatus answers with a Kubernetes Status body.
func writeStatus(w http.ResponseWriter, code int, reason, message string) {
	body, err := json.Marshal(status{
		Kind:       "Status",
		APIVersion: "v1",
		Status:     "Failure",
		Message:    message,
		Reason:     reason,
		Code:       code,
	})
	if err != nil { // cannot happen: every field is a string or an int
		http.Error(w, message, code)
		return
	}
	body = append(body, '\n')
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write(body)
}
