package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/api-access-injector/api-access-injector/test/framework/syncbuffer"
)

// fixture is a proxy in front of a TLS (HTTP/2-capable) test upstream, with a
// service-account directory laid out as the kubelet lays it out.
type fixture struct {
	t        *testing.T
	tb       testing.TB // t, or the benchmark
	dir      string
	upstream *httptest.Server
	srv      *Server
	front    *httptest.Server // serves srv's API handler on 127.0.0.1
	logs     *syncbuffer.Buffer
	tokens   []string // every token written, none of which may appear in a log
}

func newFixture(t *testing.T, upstream http.Handler, mutate func(*Config)) *fixture {
	t.Helper()
	up := httptest.NewUnstartedServer(upstream)
	up.EnableHTTP2 = true
	up.StartTLS()
	t.Cleanup(up.Close)

	f := &fixture{t: t, dir: t.TempDir(), upstream: up, logs: new(syncbuffer.Buffer)}
	f.srv = newServerFor(t, f, mutate)
	f.front = httptest.NewServer(f.srv)
	t.Cleanup(f.front.Close)
	t.Cleanup(func() {
		logs := f.logs.String()
		for _, tok := range f.tokens {
			if strings.Contains(logs, tok) {
				t.Errorf("a log line holds the token %q:\n%s", tok, logs)
			}
		}
	})
	return f
}

// newFixtureFor returns a proxy to up with default settings, for benchmarks.
func newFixtureFor(b *testing.B, up *httptest.Server) *Server {
	return newFixtureWith(b, up, nil)
}

// newFixtureWith is newFixtureFor with the configuration changed by mutate.
func newFixtureWith(b *testing.B, up *httptest.Server, mutate func(*Config)) *Server {
	f := &fixture{dir: b.TempDir(), upstream: up, logs: new(syncbuffer.Buffer)}
	return newServerFor(b, f, mutate)
}

// newServerFor writes the service-account files of f and builds a proxy to f.upstream.
func newServerFor(t testing.TB, f *fixture, mutate func(*Config)) *Server {
	t.Helper()
	f.tb = t
	up := f.upstream
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: up.Certificate().Raw})
	if err := os.WriteFile(filepath.Join(f.dir, CAFile), ca, 0o644); err != nil {
		t.Fatal(err)
	}
	f.writeToken("token-a")

	cfg := DefaultConfig()
	cfg.Server = up.URL
	cfg.ServiceAccountDir = f.dir
	if mutate != nil {
		mutate(&cfg)
	}
	srv, err := newServerWith(cfg, f)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return srv
}

// newServerWith builds a proxy that logs into f.logs.
func newServerWith(cfg Config, f *fixture) (*Server, error) {
	cfg.Port, cfg.HealthPort = 0, 0
	cfg.Logger = slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return New(cfg)
}

// writeToken replaces the token as the kubelet does: a new timestamped directory, then an
// atomic swap of the ..data symlink that the token symlink points through.
func (f *fixture) writeToken(tok string) {
	f.tb.Helper()
	f.tokens = append(f.tokens, tok)
	ts, err := os.MkdirTemp(f.dir, "..ts")
	if err != nil {
		f.tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ts, TokenFile), []byte(tok), 0o644); err != nil {
		f.tb.Fatal(err)
	}
	tmp := filepath.Join(f.dir, "..data_tmp")
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		f.tb.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(f.dir, "..data")); err != nil {
		f.tb.Fatal(err)
	}
	link := filepath.Join(f.dir, TokenFile)
	if _, err := os.Lstat(link); errors.Is(err, os.ErrNotExist) {
		if err := os.Symlink(filepath.Join("..data", TokenFile), link); err != nil {
			f.tb.Fatal(err)
		}
	}
}

func (f *fixture) do(req *http.Request) (*http.Response, string) {
	f.t.Helper()
	resp, err := f.front.Client().Do(req)
	if err != nil {
		f.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		f.t.Fatalf("reading the body of %s %s: %v", req.Method, req.URL, err)
	}
	return resp, string(body)
}

func (f *fixture) get(path string) (*http.Response, string) {
	f.t.Helper()
	return f.do(newRequest(f.t, http.MethodGet, f.front.URL+path, nil))
}

func newRequest(t testing.TB, method, url string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// echoAuth answers with the Authorization header it received and the protocol.
func echoAuth(w http.ResponseWriter, r *http.Request) {
	fmt.Fprintf(w, "%s %s", r.Proto, r.Header.Get("Authorization"))
}

func TestRejectionStatus(t *testing.T) {
	var upstreamCalls int
	var mu sync.Mutex
	f := newFixture(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		upstreamCalls++
		mu.Unlock()
	}), func(c *Config) { c.RejectMethods = []string{"^PATCH$"} })
	ro := newFixture(t, http.NotFoundHandler(), func(c *Config) { c.ReadOnly = true })

	tests := []struct {
		name    string
		f       *fixture
		method  string
		path    string
		host    string
		header  http.Header
		message string
	}{
		{name: "exec", f: f, method: "POST", path: "/api/v1/namespaces/default/pods/app/exec?command=sh",
			message: "path matches --reject-paths ^/api/.*/pods/.*/exec"},
		{name: "attach", f: f, method: "POST", path: "/api/v1/namespaces/default/pods/app/attach",
			message: "path matches --reject-paths ^/api/.*/pods/.*/attach"},
		{name: "exec via dot segment is redirected, then rejected", f: f, method: "POST", path: "/api/v1/namespaces/default/pods/app/./exec",
			message: "path matches --reject-paths ^/api/.*/pods/.*/exec"},
		{name: "method", f: f, method: "PATCH", path: "/api/v1/namespaces/default/pods/app",
			message: "method PATCH matches --reject-methods ^PATCH$"},
		{name: "DNS rebinding", f: f, method: "GET", path: "/api/v1/namespaces/default/secrets", host: "evil.example.com:8001",
			message: `host "evil.example.com" matches no --accept-hosts pattern`},
		{name: "read-only POST", f: ro, method: "POST", path: "/api/v1/namespaces/default/configmaps",
			message: "--read-only lets only GET, HEAD and OPTIONS through, not POST"},
		{name: "read-only exec by GET", f: ro, method: "GET", path: "/api/v1/namespaces/default/pods/app/exec",
			message: "path matches --reject-paths ^/api/.*/pods/.*/exec"},
		{name: "read-only portforward by GET", f: ro, method: "GET", path: "/api/v1/namespaces/default/pods/app/portforward",
			message: "--read-only refuses the portforward subresource"},
		{name: "read-only upgrade by GET", f: ro, method: "GET", path: "/api/v1/namespaces/default/pods/app/portforward",
			header:  http.Header{"Connection": {"Upgrade"}, "Upgrade": {"SPDY/3.1"}},
			message: "--read-only refuses protocol upgrades (exec, attach and portforward)"},
		{name: "read-only node proxy", f: ro, method: "GET", path: "/api/v1/nodes/n/proxy/pods",
			message: "--read-only refuses the proxy subresource"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := newRequest(t, tt.method, tt.f.front.URL+tt.path, strings.NewReader("{}"))
			if tt.host != "" {
				req.Host = tt.host
			}
			maps.Copy(req.Header, tt.header)
			resp, body := tt.f.do(req)
			if resp.StatusCode != http.StatusForbidden {
				t.Fatalf("status %d, want 403; body %s", resp.StatusCode, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q, want application/json", ct)
			}
			var got map[string]any
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatalf("body is not JSON: %v: %s", err, body)
			}
			want := map[string]any{
				"kind": "Status", "apiVersion": "v1", "metadata": map[string]any{}, "status": "Failure",
				"message": tt.message, "reason": "Forbidden", "code": float64(403),
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Status body (-want +got):\n%s", diff)
			}
		})
	}
	mu.Lock()
	defer mu.Unlock()
	if upstreamCalls != 0 {
		t.Errorf("the upstream was called %d times for rejected requests", upstreamCalls)
	}
}

// TestForwarding checks what reaches the API server, over the pool of HTTP/1.1 connections
// (the default) and over HTTP/2 alone.
func TestForwarding(t *testing.T) {
	for _, tc := range []struct {
		conns int
		proto string
	}{
		{DefaultHTTP1Conns, "HTTP/1.1"},
		{0, "HTTP/2.0"},
	} {
		t.Run(fmt.Sprintf("upstream-http1-conns=%d", tc.conns), func(t *testing.T) {
			testForwarding(t, tc.conns, tc.proto)
		})
	}
}

func testForwarding(t *testing.T, conns int, proto string) {
	type seen struct {
		Method, Path, RawQuery, Proto, Host string
		Header                              http.Header
		Body                                string
	}
	var mu sync.Mutex
	var last seen
	f := newFixture(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		last = seen{r.Method, r.URL.Path, r.URL.RawQuery, r.Proto, r.Host, r.Header.Clone(), string(b)}
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"kind":"ConfigMap"}`)
	}), func(c *Config) { c.HTTP1Conns = conns })

	req := newRequest(t, http.MethodPost, f.front.URL+"/api/v1/namespaces/default/configmaps?fieldManager=app", strings.NewReader(`{"a":1}`))
	req.Header.Set("Authorization", "Bearer stolen")
	req.Header.Set("Impersonate-User", "system:admin")
	req.Header.Add("Impersonate-Group", "system:masters")
	req.Header.Set("Impersonate-Uid", "1")
	req.Header.Set("Impersonate-Extra-Scopes", "all")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("X-Forwarded-For", "10.0.0.1")
	resp, body := f.do(req)
	if resp.StatusCode != http.StatusCreated || body != `{"kind":"ConfigMap"}` {
		t.Fatalf("got %d %q, want the upstream's 201 answer", resp.StatusCode, body)
	}
	mu.Lock()
	defer mu.Unlock()
	want := seen{Method: "POST", Path: "/api/v1/namespaces/default/configmaps", RawQuery: "fieldManager=app",
		Proto: proto, Host: f.upstream.Listener.Addr().String(), Body: `{"a":1}`}
	got := last
	got.Header = nil
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("upstream request (-want +got):\n%s", diff)
	}
	for k := range last.Header {
		if strings.HasPrefix(k, "Impersonate-") || k == "X-Forwarded-For" {
			t.Errorf("header %s reached the API server", k)
		}
	}
	if diff := cmp.Diff([]string{"Bearer token-a"}, last.Header["Authorization"]); diff != "" {
		t.Errorf("Authorization (-want +got):\n%s", diff)
	}
	if got := last.Header.Get("Accept"); got != "application/json" {
		t.Errorf("Accept = %q, want it passed on", got)
	}
}

// TestAPIPrefix checks that --api-prefix confines the proxy as it confines kubectl proxy:
// only its subtree is served, whatever the prefix starts with.
func TestAPIPrefix(t *testing.T) {
	const outside = 404
	for _, tt := range []struct {
		prefix, path string
		code         int
		upstreamPath string // for 200
		location     string // for 308
	}{
		{prefix: "/k8s/", path: "/k8s/api/v1/pods", code: 200, upstreamPath: "/api/v1/pods"},
		{prefix: "/k8s/", path: "/k8s/", code: 200, upstreamPath: "/"},
		{prefix: "/k8s/", path: "/k8s", code: 308, location: "/k8s/"},
		{prefix: "/k8s/", path: "/k8s?timeout=5s", code: 308, location: "/k8s/?timeout=5s"},
		{prefix: "/k8s/", path: "/api/v1/pods", code: outside},
		{prefix: "/k8s/", path: "/k8s-other/api/v1/pods", code: outside},
		{prefix: "/k8s/", path: "/", code: outside},
		// Without its trailing slash the prefix is the same subtree, as kubectl proxy makes it.
		{prefix: "/k8s", path: "/k8s/api/v1/pods", code: 200, upstreamPath: "/api/v1/pods"},
		{prefix: "/k8s", path: "/k8sapi/v1/pods", code: outside},
		{prefix: "/k8s", path: "/k8s-x/api/v1/secrets", code: outside},
		{prefix: "/k8s", path: "/k8s", code: 308, location: "/k8s/"},
		{prefix: "/a/b/", path: "/a/b/api", code: 200, upstreamPath: "/api"},
		{prefix: "/a/b/", path: "/a/api", code: outside},
		// kubectl proxy keeps a prefix that starts with /api: it is part of the API path and
		// serves only its subtree.
		{prefix: "/api/", path: "/api/v1/pods", code: 200, upstreamPath: "/api/v1/pods"},
		{prefix: "/api/", path: "/api", code: 308, location: "/api/"},
		{prefix: "/api/", path: "/apis/apps/v1/deployments", code: outside},
		{prefix: "/api/", path: "/version", code: outside},
		{prefix: "/api/", path: "/", code: outside},
		{prefix: "/api", path: "/api/v1/pods", code: 200, upstreamPath: "/api/v1/pods"},
		{prefix: "/api", path: "/apis/apps/v1/deployments", code: outside},
		{prefix: "/apis/", path: "/apis/apps/v1/deployments", code: 200, upstreamPath: "/apis/apps/v1/deployments"},
		{prefix: "/apis/", path: "/api/v1/secrets", code: outside},
		{prefix: "/apis/apps/", path: "/apis/apps/v1/deployments", code: 200, upstreamPath: "/apis/apps/v1/deployments"},
		{prefix: "/apis/apps/", path: "/apis/batch/v1/jobs", code: outside},
		{prefix: "/api/v1/namespaces/team/", path: "/api/v1/namespaces/team/pods", code: 200, upstreamPath: "/api/v1/namespaces/team/pods"},
		{prefix: "/api/v1/namespaces/team/", path: "/api/v1/namespaces/other/pods", code: outside},
		{prefix: "/apifoo/", path: "/apifoo/api/v1/pods", code: 200, upstreamPath: "/apifoo/api/v1/pods"},
		{prefix: "/apifoo/", path: "/api/v1/pods", code: outside},
		{prefix: "/", path: "/version", code: 200, upstreamPath: "/version"},
		// The filters see the path without the prefix.
		{prefix: "/k8s/", path: "/k8s/api/v1/namespaces/d/pods/p/exec", code: 403},
	} {
		t.Run(tt.prefix+" "+tt.path, func(t *testing.T) {
			f := newFixture(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, r.URL.Path)
			}), func(c *Config) { c.APIPrefix = tt.prefix })
			c := f.front.Client()
			c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
			resp, err := c.Do(newRequest(t, http.MethodGet, f.front.URL+tt.path, nil))
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			body := string(b)
			if resp.StatusCode != tt.code {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.code, body)
			}
			switch tt.code {
			case 200:
				if body != tt.upstreamPath {
					t.Errorf("upstream saw %q, want %q", body, tt.upstreamPath)
				}
			case 308:
				if got := resp.Header.Get("Location"); got != tt.location {
					t.Errorf("Location %q, want %q", got, tt.location)
				}
			case outside:
				want := "path is outside --api-prefix " + newAPIPrefix(tt.prefix).prefix
				var st struct{ Message, Reason string }
				if err := json.Unmarshal(b, &st); err != nil || st.Message != want || st.Reason != "NotFound" {
					t.Errorf("body %s, want a NotFound Status saying %q", body, want)
				}
			}
		})
	}
}

func TestTokenReloadOnChange(t *testing.T) {
	f := newFixture(t, http.HandlerFunc(echoAuth), nil)
	f.srv.tokens.interval = 0 // stat on every request
	f.srv.tokens.nextCheck.Store(0)
	if _, body := f.get("/api"); !strings.HasSuffix(body, "Bearer token-a") {
		t.Fatalf("first request sent %q, want token-a", body)
	}
	f.writeToken("token-b")
	if _, body := f.get("/api"); !strings.HasSuffix(body, "Bearer token-b") {
		t.Fatalf("after rotation the request sent %q, want token-b", body)
	}
	if n := f.srv.metrics.reloadsChange.Load(); n != 1 {
		t.Errorf("reloads on change = %d, want 1", n)
	}
	// An unreadable token keeps the last good one.
	if err := os.Remove(filepath.Join(f.dir, TokenFile)); err != nil {
		t.Fatal(err)
	}
	if _, body := f.get("/api"); !strings.HasSuffix(body, "Bearer token-b") {
		t.Fatalf("with the token file gone the request sent %q, want the last token", body)
	}
	if f.srv.tokens.err() == nil {
		t.Error("a missing token file is not reported")
	}
}

// TestTokenReloadOn401 checks the retry after a 401 with a re-read token, over the pool of
// HTTP/1.1 connections (the default) and over HTTP/2 alone.
func TestTokenReloadOn401(t *testing.T) {
	for _, conns := range []int{DefaultHTTP1Conns, 0} {
		t.Run(fmt.Sprintf("upstream-http1-conns=%d", conns), func(t *testing.T) { testTokenReloadOn401(t, conns) })
	}
}

func testTokenReloadOn401(t *testing.T, conns int) {
	var mu sync.Mutex
	var calls []string
	valid := "Bearer token-b"
	f := newFixture(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, r.Header.Get("Authorization")+" "+string(b))
		if r.Header.Get("Authorization") != valid {
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"kind":"Status","code":401}`)
			return
		}
		fmt.Fprintf(w, "ok %s", b)
	}), func(c *Config) { c.HTTP1Conns = conns })
	f.srv.tokens.interval = time.Hour // only a 401 can make the proxy read the file now
	f.srv.tokens.nextCheck.Store(time.Now().Add(time.Hour).UnixNano())

	tests := []struct {
		name      string
		rotateTo  string // written to the file, and the only token the upstream accepts
		method    string
		body      string
		wantCode  int
		wantCalls []string
	}{
		{name: "unchanged token: the 401 is passed on after one attempt", method: "GET",
			wantCode: 401, wantCalls: []string{"Bearer token-a "}},
		{name: "GET retried with the new token", rotateTo: "token-b", method: "GET",
			wantCode: 200, wantCalls: []string{"Bearer token-a ", "Bearer token-b "}},
		{name: "POST body replayed with the new token", rotateTo: "token-c", method: "POST", body: `{"kind":"ConfigMap"}`,
			wantCode: 200, wantCalls: []string{`Bearer token-b {"kind":"ConfigMap"}`, `Bearer token-c {"kind":"ConfigMap"}`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.rotateTo != "" {
				f.writeToken(tt.rotateTo)
				mu.Lock()
				valid = "Bearer " + tt.rotateTo
				mu.Unlock()
			}
			var body io.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
			}
			resp, got := f.do(newRequest(t, tt.method, f.front.URL+"/api/v1/namespaces/default/configmaps", body))
			if resp.StatusCode != tt.wantCode {
				t.Errorf("status %d %q, want %d", resp.StatusCode, got, tt.wantCode)
			}
			if tt.wantCode == 200 && got != "ok "+tt.body {
				t.Errorf("body %q, want %q", got, "ok "+tt.body)
			}
			mu.Lock()
			defer mu.Unlock()
			if diff := cmp.Diff(tt.wantCalls, calls); diff != "" {
				t.Errorf("upstream calls (-want +got):\n%s", diff)
			}
			calls = nil
		})
	}
	if n := f.srv.metrics.reloadsUnauthorized.Load(); n != 2 {
		t.Errorf("reloads on 401 = %d, want 2", n)
	}
}

// TestWatchFlushesEachEvent checks that a watch, in every spelling the API server streams,
// reaches the client event by event while it stays open (an answer taken for an ordinary one
// would be read ahead, and the client would see nothing).
func TestWatchFlushesEachEvent(t *testing.T) {
	release := make(chan struct{})
	f := newFixture(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"type":"ADDED"}`+"\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}), nil)
	defer close(release)
	for _, path := range []string{
		"/api/v1/pods?watch=true",
		"/api/v1/pods?watch=1",
		"/api/v1/pods?watch=True",
		"/api/v1/pods?watch=yes",
		"/api/v1/pods?watch=on",
		"/api/v1/pods?watch=",
		"/api/v1/pods?watch",
		"/api/v1/namespaces/d/pods?labelSelector=a&%77atch=1",
		"/api/v1/watch/namespaces/d/pods",
		"/apis/apps/v1/watch/deployments",
	} {
		t.Run(path, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			resp, err := f.front.Client().Do(newRequest(t, http.MethodGet, f.front.URL+path, nil).WithContext(ctx))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			lines := make(chan string, 1)
			go func() {
				line, _ := bufio.NewReader(resp.Body).ReadString('\n')
				lines <- line
			}()
			select {
			case line := <-lines:
				if line != `{"type":"ADDED"}`+"\n" {
					t.Errorf("first event %q", line)
				}
			case <-time.After(2 * time.Second):
				t.Fatal("the first event did not arrive while the watch stays open")
			}
		})
	}
}

// upgradeEcho answers an upgrade request with 101 and echoes lines back, prefixed with the
// protocol the request arrived on.
func upgradeEcho(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Upgrade") == "" {
		echoAuth(w, r)
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer conn.Close()
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n", r.Header.Get("Upgrade"))
	if brw.Flush() != nil {
		return
	}
	for {
		line, err := brw.ReadString('\n')
		if err != nil {
			return
		}
		fmt.Fprintf(brw, "%s %s %s", r.Proto, r.Header.Get("Authorization"), line)
		if brw.Flush() != nil {
			return
		}
	}
}

func TestUpgrade(t *testing.T) {
	f := newFixture(t, http.HandlerFunc(upgradeEcho), func(c *Config) { c.RejectPaths = nil })
	for _, proto := range []string{"SPDY/3.1", "websocket"} {
		t.Run(proto, func(t *testing.T) {
			conn, err := net.Dial("tcp", f.front.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if err := conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(conn, "GET /api/v1/namespaces/default/pods/app/exec?command=sh HTTP/1.1\r\nHost: localhost\r\n"+
				"Connection: Upgrade\r\nUpgrade: %s\r\nAuthorization: Bearer stolen\r\n\r\n", proto)
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("status %d, want 101", resp.StatusCode)
			}
			io.WriteString(conn, "hello\n")
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if want := "HTTP/1.1 Bearer token-a hello\n"; line != want {
				t.Errorf("echo %q, want %q", line, want)
			}
		})
	}
}

func TestUpstreamUnreachable(t *testing.T) {
	f := newFixture(t, http.NotFoundHandler(), nil)
	f.upstream.Close()
	resp, body := f.get("/api")
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, `"kind":"Status"`) {
		t.Errorf("got %d %s, want 502 with a Status body", resp.StatusCode, body)
	}
}

func TestHealth(t *testing.T) {
	var mu sync.Mutex
	status := http.StatusOK
	f := newFixture(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.WriteHeader(status)
		io.WriteString(w, `{"gitVersion":"v1.37.2"}`)
	}), nil)
	health := httptest.NewServer(f.srv.HealthHandler())
	defer health.Close()
	get := func(path string) (int, string) {
		resp, err := health.Client().Do(newRequest(t, http.MethodGet, health.URL+path, nil))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("/healthz %d, want 200", code)
	}
	if code, body := get("/readyz"); code != 200 {
		t.Errorf("/readyz %d %s, want 200", code, body)
	}
	if code, _ := get("/api/v1/pods"); code != 404 {
		t.Errorf("the health port answered the API with %d, want 404", code)
	}

	mu.Lock()
	status = http.StatusUnauthorized
	mu.Unlock()
	f.srv.ready.mu.Lock()
	f.srv.ready.checked = time.Time{} // expire the cache
	f.srv.ready.mu.Unlock()
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "401") {
		t.Errorf("/readyz with a rejected token: %d %q, want 503 naming the 401", code, body)
	}

	f.get("/api")
	f.get("/api/v1/namespaces/default/pods/app/exec")
	code, body := get("/metrics")
	if code != 200 {
		t.Fatalf("/metrics %d", code)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics is not valid Prometheus text: %v\n%s", err, body)
	}
	counts := map[string]float64{}
	for _, m := range families["api_proxy_requests_total"].GetMetric() {
		var code, method string
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "code":
				code = l.GetValue()
			case "method":
				method = l.GetValue()
			}
		}
		counts[code+" "+method] = m.GetCounter().GetValue()
	}
	if diff := cmp.Diff(map[string]float64{"401 GET": 1, "403 GET": 1}, counts); diff != "" {
		t.Errorf("api_proxy_requests_total (-want +got):\n%s", diff)
	}
	for _, name := range []string{"api_proxy_upstream_request_duration_seconds", "api_proxy_token_reloads_total", "api_proxy_token_age_seconds"} {
		if families[name] == nil {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	// Two upstream requests so far: the readiness checks (the first one cached) and the 401.
	if n := families["api_proxy_upstream_request_duration_seconds"].GetMetric()[0].GetHistogram().GetSampleCount(); n != 3 {
		t.Errorf("upstream latency samples = %d, want 3", n)
	}
}

func TestDrain(t *testing.T) {
	started := make(chan struct{}, 2)
	release := make(chan struct{})
	f := newFixture(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("watch") == "true" {
			io.WriteString(w, `{"type":"ADDED"}`+"\n")
			w.(http.Flusher).Flush()
			started <- struct{}{}
			<-r.Context().Done() // a watch that only the proxy can end
			return
		}
		started <- struct{}{}
		<-release
		io.WriteString(w, "slow answer")
	}), func(c *Config) { c.DrainTimeout = 5 * time.Second })
	if err := f.srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- f.srv.Serve(ctx) }()

	base := "http://" + f.srv.Addr().String()
	type result struct {
		code int
		body string
		err  error
	}
	// fetch reads the answer to a GET; firstLine receives the first line as soon as it arrives.
	fetch := func(path string, firstLine chan<- struct{}) <-chan result {
		ch := make(chan result, 1)
		go func() {
			resp, err := http.Get(base + path)
			if err != nil {
				ch <- result{err: err}
				return
			}
			defer resp.Body.Close()
			br := bufio.NewReader(resp.Body)
			line, err := br.ReadString('\n')
			if firstLine != nil {
				close(firstLine)
			}
			rest, err2 := io.ReadAll(br)
			if err == nil || errors.Is(err, io.EOF) {
				err = err2
			}
			ch <- result{resp.StatusCode, line + string(rest), err}
		}()
		return ch
	}
	slow := fetch("/api/v1/pods", nil)
	gotEvent := make(chan struct{})
	watch := fetch("/api/v1/pods?watch=true", gotEvent)
	<-started
	<-started
	<-gotEvent

	cancel() // SIGTERM
	select {
	case err := <-served:
		t.Fatalf("Serve returned %v with a request in flight", err)
	case r := <-watch:
		// The watch ends cleanly: the client sees the end of the stream, not an error.
		if r.err != nil || r.code != 200 || r.body != `{"type":"ADDED"}`+"\n" {
			t.Errorf("watch ended with %d %q %v, want a clean end after the first event", r.code, r.body, r.err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the drain did not end the watch")
	}
	// The drain ends watches first and then closes the listener: wait for the refusal.
	refused := false
	for deadline := time.Now().Add(3 * time.Second); !refused && time.Now().Before(deadline); {
		c, err := net.DialTimeout("tcp", f.srv.Addr().String(), time.Second)
		if err != nil {
			refused = true
			break
		}
		c.Close()
		time.Sleep(10 * time.Millisecond)
	}
	if !refused {
		t.Error("the listener still accepts connections while draining")
	}
	close(release)
	if r := <-slow; r.err != nil || r.code != 200 || r.body != "slow answer" {
		t.Errorf("in-flight request ended with %d %q %v, want the full answer", r.code, r.body, r.err)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve = %v, want nil after a complete drain", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after the drain")
	}
}

func TestConfigValidate(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBERNETES_SERVICE_PORT", "")
	cfg := DefaultConfig()
	cfg.Port = 70000
	cfg.AcceptPaths = []string{"^/api", "("}
	cfg.RejectMethods = []string{"[", "^POST$"}
	cfg.APIPrefix = "k8s"
	if err := cfg.Validate(); err == nil {
		t.Fatal("Validate accepted a bad configuration")
	} else {
		for _, want := range []string{"--port 70000", "--accept-paths: error parsing regexp", "--reject-methods: error parsing regexp",
			`--api-prefix "k8s" must start with /`, "--server is empty and KUBERNETES_SERVICE_HOST"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("Validate error lacks %q:\n%v", want, err)
			}
		}
	}

	for _, tt := range []struct {
		host, port, server, want string
	}{
		{host: "10.96.0.1", port: "443", want: "https://10.96.0.1:443"},
		{host: "fd00::1", port: "443", want: "https://[fd00::1]:443"},
		{host: "10.96.0.1", port: "443", server: "https://api.example.com:6443", want: "https://api.example.com:6443"},
	} {
		t.Setenv("KUBERNETES_SERVICE_HOST", tt.host)
		t.Setenv("KUBERNETES_SERVICE_PORT", tt.port)
		cfg := DefaultConfig()
		cfg.Server = tt.server
		u, err := cfg.serverURL()
		if err != nil || u.String() != tt.want {
			t.Errorf("serverURL with %s:%s and --server %q = %v, %v; want %s", tt.host, tt.port, tt.server, u, err, tt.want)
		}
	}
	cfg = DefaultConfig()
	cfg.Server = "http://10.96.0.1"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "want an https:// URL") {
		t.Errorf("Validate(http server) = %v, want a refusal of plain http", err)
	}
}

func TestFlagsMatchKubectlProxy(t *testing.T) {
	cfg := DefaultConfig()
	fs := newFlagSet(&cfg)
	want := map[string]string{
		"port":               "8001",
		"address":            "127.0.0.1",
		"accept-hosts":       `^localhost$,^127\.0\.0\.1$,^\[::1\]$`,
		"accept-paths":       `^.*`,
		"reject-paths":       `^/api/.*/pods/.*/exec,^/api/.*/pods/.*/attach`,
		"reject-methods":     `^$`,
		"api-prefix":         "/",
		"disable-filter":     "false",
		"server":             "",
		"serviceaccount-dir": "/var/run/secrets/kubernetes.io/serviceaccount",
		"read-only":          "false",
		"health-port":        "8002",
	}
	for name, def := range want {
		fl := fs.Lookup(name)
		if fl == nil {
			t.Errorf("flag --%s is missing", name)
			continue
		}
		if fl.DefValue != def {
			t.Errorf("--%s defaults to %q, want %q", name, fl.DefValue, def)
		}
		if !strings.HasSuffix(fl.Usage, ".") {
			t.Errorf("--%s help is not a full sentence: %q", name, fl.Usage)
		}
	}
	if err := fs.Parse([]string{"--port=9001", "--accept-hosts=^a$,^b$", "--reject-methods=", "--read-only"}); err != nil {
		t.Fatal(err)
	}
	if cfg.Port != 9001 || !cmp.Equal(cfg.AcceptHosts, []string{"^a$", "^b$"}) || len(cfg.RejectMethods) != 0 || !cfg.ReadOnly {
		t.Errorf("parsed config %+v", cfg)
	}
}

func newFlagSet(cfg *Config) *flag.FlagSet {
	fs := flag.NewFlagSet("api-proxy", flag.ContinueOnError)
	cfg.BindFlags(fs)
	return fs
}
