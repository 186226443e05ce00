package proxy

import (
	"bytes"
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
		_, _ = io.Copy(io.Discard, w.Body)
	}
}

// BenchmarkList measures a list of about the size of ten pods through the proxy over
// loopback, as an application's client sees it: HTTP/1.1 to the proxy, then, from the proxy
// to an upstream that streams the list in several writes without a Content-Length as the API
// server does, over TLS: HTTP/1.1 on the proxy's pool (the default) or HTTP/2 alone
// (--upstream-http1-conns=0). Compare with BenchmarkListDirect.
func BenchmarkList(b *testing.B) {
	for _, bc := range []struct {
		name  string
		conns int
	}{{"pool", DefaultHTTP1Conns}, {"http2", 0}} {
		b.Run(bc.name, func(b *testing.B) {
			up := newListUpstream(b)
			srv := newFixtureWith(b, up, func(c *Config) { c.HTTP1Conns = bc.conns })
			front := httptest.NewServer(srv)
			defer front.Close()
			benchmarkGet(b, front.Client(), front.URL+"/api/v1/namespaces/default/pods")
		})
	}
}

// BenchmarkListDirect is BenchmarkList without the proxy: HTTP/2 over TLS to the upstream.
func BenchmarkListDirect(b *testing.B) {
	up := newListUpstream(b)
	benchmarkGet(b, up.Client(), up.URL+"/api/v1/namespaces/default/pods")
}

func newListUpstream(b *testing.B) *httptest.Server {
	item := []byte(`{"metadata":{"name":"pod-00","namespace":"default","labels":{"app":"bench"}},"spec":{"containers":[{"name":"app","image":"registry.k8s.io/pause:3.10","resources":{}}]},"status":{"phase":"Pending","qosClass":"BestEffort"}},`)
	item = append(item, bytes.Repeat([]byte(" "), 2100-len(item))...)
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[`)
		for range 10 {
			w.Write(item)
		}
		io.WriteString(w, `{}]}`)
	}))
	up.EnableHTTP2 = true
	up.StartTLS()
	b.Cleanup(up.Close)
	return up
}

func benchmarkGet(b *testing.B, c *http.Client, url string) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		resp, err := c.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || n < 20000 {
			b.Fatalf("status %d, %d bytes", resp.StatusCode, n)
		}
	}
}
