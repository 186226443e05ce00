package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/api-access-injector/api-access-injector/test/framework/syncbuffer"
)

// connCounter counts the connections an upstream accepted.
type connCounter struct{ n atomic.Int32 }

// newCountingFixture is newFixture with the upstream's new connections counted.
func newCountingFixture(t *testing.T, h http.Handler, mutate func(*Config)) (*fixture, *connCounter) {
	t.Helper()
	var c connCounter
	up := httptest.NewUnstartedServer(h)
	up.EnableHTTP2 = true
	up.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			c.n.Add(1)
		}
	}
	up.StartTLS()
	t.Cleanup(up.Close)
	f := &fixture{t: t, dir: t.TempDir(), upstream: up, logs: new(syncbuffer.Buffer)}
	f.srv = newServerFor(t, f, mutate)
	f.front = httptest.NewServer(f.srv)
	t.Cleanup(f.front.Close)
	return f, &c
}

// TestHTTP1PoolReuse checks that ordinary requests of every shape (a list streamed without a
// length, HEAD, 204, a write with a body, a client's Expect: 100-continue) go over HTTP/1.1
// and reuse one connection when they come one at a time.
func TestHTTP1PoolReuse(t *testing.T) {
	var protos []string
	var mu sync.Mutex
	f, conns := newCountingFixture(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		protos = append(protos, r.Method+" "+r.Proto)
		mu.Unlock()
		switch r.Method {
		case http.MethodDelete:
			w.WriteHeader(http.StatusNoContent)
		case http.MethodGet:
			for i := range 3 {
				fmt.Fprintf(w, "part %d;", i)
				w.(http.Flusher).Flush()
			}
		default:
			fmt.Fprintf(w, "got %s", b)
		}
	}), nil)

	for _, tt := range []struct {
		method, body string
		expect       bool
		wantCode     int
		wantBody     string
	}{
		{method: http.MethodGet, wantCode: 200, wantBody: "part 0;part 1;part 2;"},
		{method: http.MethodHead, wantCode: 200},
		{method: http.MethodDelete, wantCode: 204},
		{method: http.MethodPost, body: `{"kind":"ConfigMap"}`, wantCode: 200, wantBody: `got {"kind":"ConfigMap"}`},
		{method: http.MethodPut, body: `{"kind":"ConfigMap"}`, expect: true, wantCode: 200, wantBody: `got {"kind":"ConfigMap"}`},
		{method: http.MethodGet, wantCode: 200, wantBody: "part 0;part 1;part 2;"},
	} {
		var body io.Reader
		if tt.body != "" {
			body = strings.NewReader(tt.body)
		}
		req := newRequest(t, tt.method, f.front.URL+"/api/v1/namespaces/default/configmaps", body)
		if tt.expect {
			req.Header.Set("Expect", "100-continue")
		}
		resp, got := f.do(req)
		if resp.StatusCode != tt.wantCode || got != tt.wantBody {
			t.Errorf("%s: %d %q, want %d %q", tt.method, resp.StatusCode, got, tt.wantCode, tt.wantBody)
		}
	}
	want := []string{"GET HTTP/1.1", "HEAD HTTP/1.1", "DELETE HTTP/1.1", "POST HTTP/1.1", "PUT HTTP/1.1", "GET HTTP/1.1"}
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff(want, protos); diff != "" {
		t.Errorf("requests the upstream saw (-want +got):\n%s", diff)
	}
	if n := conns.n.Load(); n != 1 {
		t.Errorf("the upstream accepted %d connections for requests sent one at a time, want 1", n)
	}
}

// TestHTTP1PoolBounded checks that the pool opens at most --upstream-http1-conns connections:
// requests beyond them, and watches, go over HTTP/2, and the pool serves again once a
// connection is free.
func TestHTTP1PoolBounded(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan string, 16)
	f, conns := newCountingFixture(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- r.URL.Path + " " + r.Proto
		if r.URL.Query().Has("watch") || strings.HasPrefix(r.URL.Path, "/block") {
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		io.WriteString(w, r.Proto)
	}), func(c *Config) { c.HTTP1Conns = 2 })

	// Two requests that the upstream holds take both pooled connections.
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() {
			resp, err := f.front.Client().Do(newRequest(t, http.MethodGet, fmt.Sprintf("%s/block/%d", f.front.URL, i), nil))
			if err != nil {
				t.Errorf("held request %d: %v", i, err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("held request %d: %d", i, resp.StatusCode)
			}
		})
	}
	got := map[string]bool{}
	for range 2 {
		select {
		case a := <-arrived:
			got[a] = true
		case <-time.After(10 * time.Second):
			t.Fatal("the held requests did not reach the upstream")
		}
	}
	if diff := cmp.Diff(map[string]bool{"/block/0 HTTP/1.1": true, "/block/1 HTTP/1.1": true}, got); diff != "" {
		t.Errorf("held requests (-want +got):\n%s", diff)
	}
	// A third goes over HTTP/2 rather than open a third connection.
	if _, body := f.get("/api/v1/namespaces/default/configmaps"); body != "HTTP/2.0" {
		t.Errorf("a request beyond the pool went over %q, want HTTP/2.0", body)
	}
	<-arrived
	// A watch goes over HTTP/2 whatever the pool holds.
	ctx, cancel := context.WithCancel(t.Context())
	resp, err := f.front.Client().Do(newRequest(t, http.MethodGet, f.front.URL+"/api/v1/pods?watch=1", nil).WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	if a := <-arrived; a != "/api/v1/pods HTTP/2.0" {
		t.Errorf("the watch reached the upstream as %q, want over HTTP/2.0", a)
	}
	cancel()
	resp.Body.Close()

	close(release)
	wg.Wait()
	if _, body := f.get("/api/v1/namespaces/default/configmaps"); body != "HTTP/1.1" {
		t.Errorf("a request once the pool is free went over %q, want HTTP/1.1", body)
	}
	// Two pooled connections and one HTTP/2 connection.
	if n := conns.n.Load(); n != 3 {
		t.Errorf("the upstream accepted %d connections, want 3 (2 pooled, 1 HTTP/2)", n)
	}
}

// TestHTTP1PoolClosedByServer checks that a pooled connection the API server closed while it
// was idle is not used: a POST, which must not be sent twice, still gets its answer.
func TestHTTP1PoolClosedByServer(t *testing.T) {
	var posts atomic.Int32
	f, _ := newCountingFixture(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			posts.Add(1)
			w.WriteHeader(http.StatusCreated)
		}
	}), nil)
	if resp, _ := f.get("/api"); resp.StatusCode != http.StatusOK {
		t.Fatalf("first request: %d", resp.StatusCode)
	}
	f.upstream.CloseClientConnections()
	// The close reaches the proxy's socket at once on loopback; wait for it all the same,
	// bounded, so that what is tested is the proxy's check and not a race with the kernel.
	p := f.srv.up.cur.Load().http1
	deadline := time.Now().Add(5 * time.Second)
	for {
		p.mu.Lock()
		closed := len(p.idle) == 1 && !p.idle[0].alive()
		p.mu.Unlock()
		if closed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the pooled connection did not see the upstream's close within 5s")
		}
		time.Sleep(time.Millisecond)
	}
	resp, body := f.do(newRequest(t, http.MethodPost, f.front.URL+"/api/v1/namespaces/default/configmaps", strings.NewReader("{}")))
	if resp.StatusCode != http.StatusCreated || posts.Load() != 1 {
		t.Errorf("POST after the upstream closed the idle connection: %d %s, upstream saw %d POSTs; want 201 after 1",
			resp.StatusCode, body, posts.Load())
	}
}

// TestHTTP1PoolRetriesOnlyIdempotent checks what happens when a reused connection breaks
// before any answer: a GET is sent again on a new connection, a POST is not (the API server
// may have acted on it) and the client gets a 502.
func TestHTTP1PoolRetriesOnlyIdempotent(t *testing.T) {
	var drop atomic.Bool
	var seen atomic.Int32
	f, _ := newCountingFixture(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Test") == "" {
			return // the warm-up
		}
		seen.Add(1)
		if drop.CompareAndSwap(true, false) {
			// Gone after reading the request, with no answer: a crash, or a close racing the
			// request.
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}), nil)
	for _, tt := range []struct {
		method    string
		wantCode  int
		wantCalls int32
	}{
		{http.MethodGet, http.StatusAccepted, 2},
		{http.MethodPost, http.StatusBadGateway, 1},
	} {
		t.Run(tt.method, func(t *testing.T) {
			if resp, _ := f.get("/api"); resp.StatusCode != http.StatusOK { // a connection to reuse
				t.Fatalf("warm-up: %d", resp.StatusCode)
			}
			drop.Store(true)
			seen.Store(0)
			req := newRequest(t, tt.method, f.front.URL+"/api/v1/namespaces/default/configmaps", strings.NewReader("{}"))
			req.Header.Set("X-Test", "1")
			resp, body := f.do(req)
			if resp.StatusCode != tt.wantCode || seen.Load() != tt.wantCalls {
				t.Errorf("%d %s after %d upstream calls, want %d after %d", resp.StatusCode, body, seen.Load(), tt.wantCode, tt.wantCalls)
			}
		})
	}
}

// TestHTTP1PoolClientGoesAway checks that a client that leaves in the middle of an answer
// makes the proxy drop the pooled connection it was read from (what is left of the answer is
// never read), and that the pool serves on.
func TestHTTP1PoolClientGoesAway(t *testing.T) {
	upstreamDone := make(chan struct{})
	f, _ := newCountingFixture(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/pods" {
			return
		}
		// A body larger than the proxy reads ahead, then nothing until the proxy hangs up.
		w.Write(make([]byte, 2*maxBufferedBody))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		close(upstreamDone)
	}), nil)
	ctx, cancel := context.WithCancel(t.Context())
	resp, err := f.front.Client().Do(newRequest(t, http.MethodGet, f.front.URL+"/api/v1/pods", nil).WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(bufio.NewReader(resp.Body), make([]byte, 1024)); err != nil {
		t.Fatal(err)
	}
	cancel()
	resp.Body.Close()
	select {
	case <-upstreamDone:
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream connection stayed open after the client left")
	}
	if resp, _ := f.get("/api"); resp.StatusCode != http.StatusOK {
		t.Errorf("next request: %d, want 200", resp.StatusCode)
	}
}

// TestHTTP1PoolBoundsHeaders checks that an answer whose headers never end is refused instead
// of read into memory without bound, as net/http's Transport refuses it.
func TestHTTP1PoolBoundsHeaders(t *testing.T) {
	f, _ := newCountingFixture(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Big", strings.Repeat("a", http1MaxHeader+64<<10))
	}), nil)
	resp, body := f.get("/api")
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "headers are longer than") {
		t.Errorf("got %d %s, want 502 naming the headers' length", resp.StatusCode, body)
	}
}
