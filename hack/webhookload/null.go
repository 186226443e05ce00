package main

import (
	"crypto/tls"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
)

// nullPatch is the null webhook's answer: one operation.
var nullPatch = []byte(`[{"op":"add","path":"/metadata/annotations/null","value":"true"}]`)

// serveNull is the floor of the harness: TLS, decoding the review and the pod, encoding a
// response with a one-operation patch. No injection, no diff. With a patchFile, it answers
// with the patch that file holds instead (ours', recorded by the harness): what the API
// server spends on our mutation, apart from what our webhook spends to compute it. The file
// holds a JSON patch for every pod, or a JSON object from a pod's generateName to its patch.
func serveNull(port, certDir, patchFile string) error {
	patches := map[string]json.RawMessage{}
	patch := nullPatch
	if patchFile != "" {
		data, err := os.ReadFile(patchFile)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(data, &patches); err != nil {
			patch = data
		}
	}
	jsonPatch := admissionv1.PatchTypeJSONPatch
	http.HandleFunc("/null", func(w http.ResponseWriter, r *http.Request) {
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
		p := patch
		if len(patches) > 0 {
			if p = patches[pod.GenerateName]; p == nil {
				http.Error(w, "no patch for a pod named "+pod.GenerateName+"...", http.StatusBadRequest)
				return
			}
		}
		review.Response = &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true, Patch: p, PatchType: &jsonPatch}
		review.Request = nil
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(&review)
	})
	srv := &http.Server{Addr: ":" + port, ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{NextProtos: []string{"http/1.1"}, MinVersion: tls.VersionTLS12}}
	return srv.ListenAndServeTLS(filepath.Join(certDir, "tls.crt"), filepath.Join(certDir, "tls.key"))
}
