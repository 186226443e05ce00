package server_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"

	"github.com/api-access-injector/api-access-injector/injector"
	"github.com/api-access-injector/api-access-injector/internal/server"
	"github.com/api-access-injector/api-access-injector/internal/testenv"
)

func writeCert(t *testing.T, dir string, serial int64) {
	t.Helper()
	if err := testenv.WriteServingCert(dir, serial); err != nil {
		t.Fatal(err)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func servedSerial(t *testing.T, addr string) int64 {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // the test inspects the served certificate
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// TestServes starts the process as the webhook command builds it and checks that it becomes
// ready, answers an AdmissionReview over TLS, and picks up a replaced certificate.
func TestServes(t *testing.T) {
	inj, err := injector.New(injector.Config{Sidecar: injector.SidecarConfig{Image: "registry.example.com/api-proxy:test"}})
	if err != nil {
		t.Fatal(err)
	}
	certDir := t.TempDir()
	writeCert(t, certDir, 1)
	port, probe := freePort(t), "127.0.0.1:"+strconv.Itoa(freePort(t))
	// No API server is needed to serve admissions; the address is never dialled.
	mgr, err := server.New(&rest.Config{Host: "https://127.0.0.1:1"}, server.Options{
		Injector: inj, CertDir: certDir, Host: "127.0.0.1", Port: port, HealthProbeBindAddress: probe, MetricsBindAddress: "0",
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	waitFor(t, "readiness", func() bool {
		resp, err := http.Get("http://" + probe + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	review := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: "1", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Namespace: "team-a", Operation: admissionv1.Create,
			Object: runtime.RawExtension{Raw: []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","annotations":{"apiaccess.io/inject":"true"}},"spec":{"containers":[{"name":"app","image":"a"}]}}`)},
		},
	}
	body, err := json.Marshal(review)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // self-signed test certificate
	resp, err := client.Post("https://127.0.0.1:"+strconv.Itoa(port)+"/inject/opt-in", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var answer admissionv1.AdmissionReview
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil {
		t.Fatal(err)
	}
	if answer.Response == nil || !answer.Response.Allowed || answer.Response.PatchType == nil || len(answer.Response.Patch) == 0 {
		t.Fatalf("response = %+v, want an allowed JSON patch", answer.Response)
	}

	addr := "127.0.0.1:" + strconv.Itoa(port)
	if got := servedSerial(t, addr); got != 1 {
		t.Fatalf("served certificate serial = %d, want 1", got)
	}
	writeCert(t, certDir, 2)
	waitFor(t, "the replaced certificate to be served", func() bool { return servedSerial(t, addr) == 2 })
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}
