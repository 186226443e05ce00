package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkServeHTTP measures the proxy's own cost per request (and its allocations), with
// the client and a TLS upstream in the same process. Latency against a real API server is
// measured with the binary, not here.
func BenchmarkServeHTTP(b *testing.B) {
	body := []byte(`{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[]}`)
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	}))
	up.EnableHTTP2 = true
	up.StartTLS()
	defer up.Close()
	f := newFixtureFor(b, up)
	req := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:8001/api/v1/namespaces/default/pods", nil)
	req.Header.Set("Accept", "application/json")
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		w := httptest.NewRecorder()
		f.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatalf("status %d", w.Code)
		}
		io.Copy(io.Discard, w.Body)
	}
}
