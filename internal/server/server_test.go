package server_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
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
	"github.com/api-access-injector/api-access-injector/test/framework/testenv"
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
	// The stop itself is TestStopsGracefully's subject; here it only has to end.
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Logf("stopping: %v", err)
		}
	})

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

// TestStopsGracefully cancels the process's context (SIGTERM) and checks the order of the
// stop: readiness fails at once; admissions are still answered during the shutdown delay,
// each closing its connection; then connections are refused and Start returns nil.
func TestStopsGracefully(t *testing.T) {
	inj, err := injector.New(injector.Config{Sidecar: injector.SidecarConfig{Image: "registry.example.com/api-proxy:test"}})
	if err != nil {
		t.Fatal(err)
	}
	certDir := t.TempDir()
	writeCert(t, certDir, 1)
	port, probe := freePort(t), "127.0.0.1:"+strconv.Itoa(freePort(t))
	// Long enough for an admission to be answered within it on a loaded machine.
	const delay = 3 * time.Second
	srv, err := server.New(&rest.Config{Host: "https://127.0.0.1:1"}, server.Options{
		Injector: inj, CertDir: certDir, Host: "127.0.0.1", Port: port, HealthProbeBindAddress: probe, MetricsBindAddress: "0",
		ShutdownDelay: delay,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	var startErr error
	stopped := make(chan struct{})
	go func() { startErr = srv.Start(ctx); close(stopped) }()
	t.Cleanup(func() { cancel(); <-stopped })
	ready := func() bool {
		resp, err := http.Get("http://" + probe + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	waitFor(t, "readiness", ready)

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // self-signed test certificate
	admit := func() (*http.Response, error) {
		body, _ := json.Marshal(admissionv1.AdmissionReview{
			TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
			Request: &admissionv1.AdmissionRequest{
				UID: "1", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
				Namespace: "team-a", Operation: admissionv1.Create,
				Object: runtime.RawExtension{Raw: []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"app","image":"a"}]}}`)},
			},
		})
		resp, err := client.Post("https://127.0.0.1:"+strconv.Itoa(port)+"/inject/enabled", "application/json", bytes.NewReader(body))
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return resp, err
	}
	if resp, err := admit(); err != nil || resp.StatusCode != http.StatusOK || resp.Close {
		t.Fatalf("before the stop: %v, %+v; want 200 on a kept-alive connection", err, resp)
	}

	cancel()
	stoppedAt := time.Now()
	waitFor(t, "readiness to fail", func() bool { return !ready() })
	if d := time.Since(stoppedAt); d > delay/2 {
		t.Errorf("readiness failed %v after the stop, want at once", d)
	}
	resp, err := admit()
	if err != nil || resp.StatusCode != http.StatusOK || !resp.Close {
		t.Fatalf("during the shutdown delay: %v, %+v; want 200 with Connection: close", err, resp)
	}
	if d := time.Since(stoppedAt); d >= delay {
		t.Fatalf("the admission during the delay took until %v after the stop; the test proves nothing", d)
	}
	select {
	case <-stopped:
		if startErr != nil {
			t.Errorf("Start = %v, want nil", startErr)
		}
	case <-time.After(delay + 30*time.Second):
		t.Fatal("Start did not return after the shutdown delay")
	}
	if d := time.Since(stoppedAt); d < delay {
		t.Errorf("stopped %v after the stop, want no sooner than the delay %v", d, delay)
	}
	if _, err := admit(); err == nil {
		t.Error("an admission was answered after the process stopped")
	}
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
