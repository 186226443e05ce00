package proxy

import (
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func mustFilter(t testing.TB, mutate func(*Config)) *filter {
	t.Helper()
	cfg := DefaultConfig()
	if mutate != nil {
		mutate(&cfg)
	}
	f, err := newFilter(&cfg)
	if err != nil {
		t.Fatalf("newFilter: %v", err)
	}
	return f
}

func TestFilterCheck(t *testing.T) {
	upgrade := http.Header{"Connection": {"Upgrade"}, "Upgrade": {"SPDY/3.1"}}
	websocket := http.Header{"Connection": {"keep-alive, Upgrade"}, "Upgrade": {"websocket"}}
	readOnly := func(c *Config) { c.ReadOnly = true }
	tests := []struct {
		name   string
		mutate func(*Config)
		method string
		path   string
		host   string
		header http.Header
		want   string // "" means accepted
	}{
		{name: "list pods", method: "GET", path: "/api/v1/namespaces/default/pods", host: "127.0.0.1:8001"},
		{name: "localhost", method: "GET", path: "/api", host: "localhost:8001"},
		{name: "localhost without port", method: "GET", path: "/api", host: "localhost"},
		{name: "IPv6 loopback with port", method: "GET", path: "/api", host: "[::1]:8001"},
		{name: "IPv6 loopback without port", method: "GET", path: "/api", host: "[::1]"},
		{name: "create", method: "POST", path: "/api/v1/namespaces/default/configmaps", host: "127.0.0.1:8001"},
		{name: "exec rejected", method: "POST", path: "/api/v1/namespaces/default/pods/app/exec", host: "127.0.0.1:8001",
			want: "path matches --reject-paths ^/api/.*/pods/.*/exec"},
		{name: "exec by GET rejected", method: "GET", path: "/api/v1/namespaces/default/pods/app/exec", host: "127.0.0.1:8001", header: websocket,
			want: "path matches --reject-paths ^/api/.*/pods/.*/exec"},
		{name: "attach rejected", method: "POST", path: "/api/v1/namespaces/default/pods/app/attach", host: "127.0.0.1:8001",
			want: "path matches --reject-paths ^/api/.*/pods/.*/attach"},
		{name: "portforward allowed by default", method: "POST", path: "/api/v1/namespaces/default/pods/app/portforward", host: "127.0.0.1:8001"},
		{name: "DNS rebinding", method: "GET", path: "/api", host: "evil.example.com",
			want: `host "evil.example.com" matches no --accept-hosts pattern`},
		{name: "DNS rebinding with port", method: "GET", path: "/api", host: "evil.example.com:8001",
			want: `host "evil.example.com" matches no --accept-hosts pattern`},
		{name: "loopback as a suffix", method: "GET", path: "/api", host: "localhost.evil.example.com:8001",
			want: `host "localhost.evil.example.com" matches no --accept-hosts pattern`},
		{name: "other IPv6 address", method: "GET", path: "/api", host: "[fe80::1]:8001",
			want: `host "[fe80::1]" matches no --accept-hosts pattern`},
		{name: "empty host", method: "GET", path: "/api", host: "", want: `host "" matches no --accept-hosts pattern`},
		{name: "IPv6 loopback followed by a domain", method: "GET", path: "/api", host: "[::1].evil.example.com",
			want: `Host "[::1].evil.example.com" is not a valid host[:port], so no --accept-hosts pattern can accept it`},
		{name: "IPv6 loopback glued to a domain, with port", method: "GET", path: "/api", host: "[::1]evil.example.com:80",
			want: `Host "[::1]evil.example.com:80" is not a valid host[:port], so no --accept-hosts pattern can accept it`},
		{name: "IPv6 loopback, port, then more", method: "GET", path: "/api", host: "[::1]:8001.evil.example.com",
			want: `Host "[::1]:8001.evil.example.com" is not a valid host[:port], so no --accept-hosts pattern can accept it`},
		{name: "localhost, port, then more", method: "GET", path: "/api", host: "localhost:8001@evil.example.com",
			want: `Host "localhost:8001@evil.example.com" is not a valid host[:port], so no --accept-hosts pattern can accept it`},
		{name: "port that is not a number", method: "GET", path: "/api", host: "localhost:http",
			want: `Host "localhost:http" is not a valid host[:port], so no --accept-hosts pattern can accept it`},
		{name: "port out of range", method: "GET", path: "/api", host: "127.0.0.1:65536",
			want: `Host "127.0.0.1:65536" is not a valid host[:port], so no --accept-hosts pattern can accept it`},
		{name: "unclosed bracket", method: "GET", path: "/api", host: "[::1",
			want: `Host "[::1" is not a valid host[:port], so no --accept-hosts pattern can accept it`},
		{name: "IPv6 without brackets", mutate: func(c *Config) { c.AcceptHosts = []string{`^::1$`} }, method: "GET", path: "/api", host: "::1",
			want: `Host "::1" is not a valid host[:port], so no --accept-hosts pattern can accept it`},
		{name: "IPv4 in brackets", mutate: func(c *Config) { c.AcceptHosts = []string{`^\[127\.0\.0\.1\]$`} }, method: "GET", path: "/api", host: "[127.0.0.1]",
			want: `Host "[127.0.0.1]" is not a valid host[:port], so no --accept-hosts pattern can accept it`},
		{name: "whole host matched by an unanchored pattern", mutate: func(c *Config) { c.AcceptHosts = []string{`^\[::1\]`} },
			method: "GET", path: "/api", host: "[::1].evil.example.com",
			want: `Host "[::1].evil.example.com" is not a valid host[:port], so no --accept-hosts pattern can accept it`},
		{name: "empty port", method: "GET", path: "/api", host: "localhost:"},
		{name: "IPv6 loopback, empty port", method: "GET", path: "/api", host: "[::1]:"},
		{name: "IPv4-mapped IPv6 loopback is another name", method: "GET", path: "/api", host: "[::ffff:127.0.0.1]:8001",
			want: `host "[::ffff:127.0.0.1]" matches no --accept-hosts pattern`},
		{name: "kubectl-style IPv6 pattern", mutate: func(c *Config) { c.AcceptHosts = []string{`^::1$`} },
			method: "GET", path: "/api", host: "[::1]:8001"},
		{name: "reject method", mutate: func(c *Config) { c.RejectMethods = []string{"^POST$", "^DELETE$"} },
			method: "DELETE", path: "/api/v1/namespaces/default/pods/app", host: "localhost",
			want: "method DELETE matches --reject-methods ^DELETE$"},
		{name: "reject-paths before reject-methods", mutate: func(c *Config) { c.RejectMethods = []string{"^POST$"} },
			method: "POST", path: "/api/v1/namespaces/default/pods/app/exec", host: "localhost",
			want: "path matches --reject-paths ^/api/.*/pods/.*/exec"},
		{name: "reject-methods before hosts", mutate: func(c *Config) { c.RejectMethods = []string{"^POST$"} },
			method: "POST", path: "/api", host: "evil.example.com", want: "method POST matches --reject-methods ^POST$"},
		{name: "path not accepted", mutate: func(c *Config) { c.AcceptPaths = []string{"^/api/v1/namespaces/default/"} },
			method: "GET", path: "/apis/apps/v1/deployments", host: "localhost", want: "path matches no --accept-paths pattern"},
		{name: "paths before hosts", mutate: func(c *Config) { c.AcceptPaths = []string{"^/version$"} },
			method: "GET", path: "/api", host: "evil.example.com", want: "path matches no --accept-paths pattern"},
		{name: "empty accept-hosts accepts nothing", mutate: func(c *Config) { c.AcceptHosts = []string{} },
			method: "GET", path: "/api", host: "localhost", want: `host "localhost" matches no --accept-hosts pattern`},
		{name: "disabled filter", mutate: func(c *Config) { c.DisableFilter = true },
			method: "POST", path: "/api/v1/namespaces/default/pods/app/exec", host: "evil.example.com"},

		{name: "read-only get", mutate: readOnly, method: "GET", path: "/api/v1/namespaces/default/pods", host: "localhost"},
		{name: "read-only watch", mutate: readOnly, method: "GET", path: "/api/v1/namespaces/default/pods?watch=true", host: "localhost"},
		{name: "read-only head", mutate: readOnly, method: "HEAD", path: "/api", host: "localhost"},
		{name: "read-only options", mutate: readOnly, method: "OPTIONS", path: "/api", host: "localhost"},
		{name: "read-only logs", mutate: readOnly, method: "GET", path: "/api/v1/namespaces/default/pods/app/log", host: "localhost"},
		{name: "read-only pod named exec", mutate: readOnly, method: "GET", path: "/api/v1/namespaces/default/pods/exec", host: "localhost"},
		{name: "read-only namespace named proxy", mutate: readOnly, method: "GET", path: "/api/v1/namespaces/proxy/pods/app", host: "localhost"},
		{name: "read-only post", mutate: readOnly, method: "POST", path: "/api/v1/namespaces/default/configmaps", host: "localhost",
			want: "--read-only lets only GET, HEAD and OPTIONS through, not POST"},
		{name: "read-only delete", mutate: readOnly, method: "DELETE", path: "/api/v1/namespaces/default/pods/app", host: "localhost",
			want: "--read-only lets only GET, HEAD and OPTIONS through, not DELETE"},
		{name: "read-only exec by GET, filter off", mutate: func(c *Config) { c.ReadOnly, c.DisableFilter = true, true },
			method: "GET", path: "/api/v1/namespaces/default/pods/app/exec", host: "localhost",
			want: "--read-only refuses the exec subresource"},
		{name: "read-only exec by GET with websocket", mutate: func(c *Config) { c.ReadOnly, c.RejectPaths = true, nil },
			method: "GET", path: "/api/v1/namespaces/default/pods/app/exec", host: "localhost", header: websocket,
			want: "--read-only refuses protocol upgrades (exec, attach and portforward)"},
		{name: "read-only attach by GET", mutate: func(c *Config) { c.ReadOnly, c.RejectPaths = true, nil },
			method: "GET", path: "/api/v1/namespaces/default/pods/app/attach", host: "localhost",
			want: "--read-only refuses the attach subresource"},
		{name: "read-only portforward by GET", mutate: readOnly,
			method: "GET", path: "/api/v1/namespaces/default/pods/app/portforward", host: "localhost",
			want: "--read-only refuses the portforward subresource"},
		{name: "read-only pod proxy", mutate: readOnly,
			method: "GET", path: "/api/v1/namespaces/default/pods/app:8080/proxy/admin/reset", host: "localhost",
			want: "--read-only refuses the proxy subresource"},
		{name: "read-only service proxy", mutate: readOnly,
			method: "GET", path: "/api/v1/namespaces/default/services/https:web:443/proxy/", host: "localhost",
			want: "--read-only refuses the proxy subresource"},
		{name: "read-only node proxy", mutate: readOnly,
			method: "GET", path: "/api/v1/nodes/node-1/proxy/configz", host: "localhost",
			want: "--read-only refuses the proxy subresource"},
		{name: "read-only legacy proxy path", mutate: readOnly,
			method: "GET", path: "/api/v1/proxy/namespaces/default/pods/app/", host: "localhost",
			want: "--read-only refuses the proxy paths"},
		{name: "read-only upgrade on any path", mutate: readOnly,
			method: "GET", path: "/apis/example.com/v1/namespaces/default/things/x/console", host: "localhost", header: upgrade,
			want: "--read-only refuses protocol upgrades (exec, attach and portforward)"},
		{name: "read-only upgrade header alone", mutate: readOnly,
			method: "GET", path: "/api", host: "localhost", header: http.Header{"Upgrade": {"websocket"}},
			want: "--read-only refuses protocol upgrades (exec, attach and portforward)"},
		{name: "read-only aggregated exec", mutate: readOnly,
			method: "GET", path: "/apis/example.com/v1/namespaces/default/vms/x/exec", host: "localhost",
			want: "--read-only refuses the exec subresource"},
		{name: "filters before read-only", mutate: readOnly,
			method: "POST", path: "/api", host: "evil.example.com",
			want: `host "evil.example.com" matches no --accept-hosts pattern`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := mustFilter(t, tt.mutate)
			path, _, _ := strings.Cut(tt.path, "?")
			if got := f.check(tt.method, path, tt.host, tt.header); got != tt.want {
				t.Errorf("check(%s %s, Host %q) = %q, want %q", tt.method, tt.path, tt.host, got, tt.want)
			}
		})
	}
}

func TestSplitHostHeader(t *testing.T) {
	type split struct {
		Host string
		OK   bool
	}
	for in, want := range map[string]split{
		"":                       {"", true},
		"localhost":              {"localhost", true},
		"localhost:8001":         {"localhost", true},
		"localhost:":             {"localhost", true},
		"127.0.0.1:80":           {"127.0.0.1", true},
		"127.0.0.1:65535":        {"127.0.0.1", true},
		"[::1]:8001":             {"[::1]", true},
		"[::1]":                  {"[::1]", true},
		"[::1]:":                 {"[::1]", true},
		"[fe80::1%25eth0]:1":     {"[fe80::1%25eth0]", true},
		"EXAMPLE.com":            {"EXAMPLE.com", true},
		"xn--bcher-kva.example":  {"xn--bcher-kva.example", true},
		"[::1].evil.example.com": {"", false},
		"[::1]evil.example.com":  {"", false},
		"[::1]evil.com:80":       {"", false},
		"[::1]:80:80":            {"", false},
		"[::1]:8001x":            {"", false},
		"[::1":                   {"", false},
		"[]":                     {"", false},
		"[127.0.0.1]":            {"", false},
		"[localhost]":            {"", false},
		"::1":                    {"", false},
		":8001":                  {"", false},
		"localhost:8001:8001":    {"", false},
		"localhost:+80":          {"", false},
		"localhost:-1":           {"", false},
		"localhost:65536":        {"", false},
		"localhost:0x50":         {"", false},
		"local host":             {"", false},
		"localhost/":             {"", false},
		"user@localhost":         {"", false},
		"localhost]":             {"", false},
	} {
		h, ok := splitHostHeader(in)
		if diff := cmp.Diff(want, split{h, ok}); diff != "" {
			t.Errorf("splitHostHeader(%q) (-want +got):\n%s", in, diff)
		}
	}
}

func TestParseAPIPath(t *testing.T) {
	tests := []struct {
		path string
		want apiPath
	}{
		{"/", apiPath{}},
		{"/api", apiPath{}},
		{"/api/v1", apiPath{}},
		{"/apis/apps", apiPath{}},
		{"/apis/apps/v1", apiPath{}},
		{"/version", apiPath{}},
		{"/healthz/etcd", apiPath{}},
		{"/api/v1/pods", apiPath{resource: "pods"}},
		{"/api/v1/pods/", apiPath{resource: "pods"}},
		{"/api/v1/namespaces", apiPath{resource: "namespaces"}},
		{"/api/v1/namespaces/default", apiPath{resource: "namespaces", name: "default"}},
		{"/api/v1/namespaces/default/status", apiPath{resource: "namespaces", name: "default", subresource: "status"}},
		{"/api/v1/namespaces/default/finalize", apiPath{resource: "namespaces", name: "default", subresource: "finalize"}},
		{"/api/v1/namespaces/default/pods", apiPath{resource: "pods"}},
		{"/api/v1/namespaces/default/pods/app", apiPath{resource: "pods", name: "app"}},
		{"/api/v1/namespaces/default/pods/app/exec", apiPath{resource: "pods", name: "app", subresource: "exec"}},
		{"/api/v1/namespaces/default/pods/app/exec/", apiPath{resource: "pods", name: "app", subresource: "exec"}},
		{"/api/v1/namespaces/default/pods/app/proxy/a/b", apiPath{resource: "pods", name: "app", subresource: "proxy"}},
		{"/api/v1/namespaces/exec/pods/exec", apiPath{resource: "pods", name: "exec"}},
		{"/api/v1/nodes/n/proxy", apiPath{resource: "nodes", name: "n", subresource: "proxy"}},
		{"/api/v1/watch/namespaces/default/pods", apiPath{verb: "watch", resource: "pods"}},
		{"/api/v1/watch/namespaces", apiPath{verb: "watch", resource: "namespaces"}},
		{"/api/v1/watch/pods", apiPath{verb: "watch", resource: "pods"}},
		{"/api/v1/proxy/nodes/n/", apiPath{verb: "proxy", resource: "nodes", name: "n"}},
		{"/apis/apps/v1/namespaces/default/deployments/web/scale", apiPath{resource: "deployments", name: "web", subresource: "scale"}},
		{"/apis/apps/v1/deployments", apiPath{resource: "deployments"}},
		{"/apis/apps/v1/watch/deployments", apiPath{verb: "watch", resource: "deployments"}},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, parseAPIPath(tt.path), cmp.AllowUnexported(apiPath{})); diff != "" {
			t.Errorf("parseAPIPath(%q) (-want +got):\n%s", tt.path, diff)
		}
	}
}

func TestCleanPath(t *testing.T) {
	for in, want := range map[string]string{
		"":                                   "/",
		"/":                                  "/",
		"/api":                               "/api",
		"/api/":                              "/api/",
		"api":                                "/api",
		"//api//v1":                          "/api/v1",
		"/api/v1/namespaces/x/pods/y/./exec": "/api/v1/namespaces/x/pods/y/exec",
		"/apis/../api/v1/x/pods/y/exec":      "/api/v1/x/pods/y/exec",
		"/api/v1/..":                         "/api",
		"/api/./":                            "/api/",
	} {
		if got := cleanPath(in); got != want {
			t.Errorf("cleanPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestIsLongRunning(t *testing.T) {
	upgrade := http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}}
	tests := []struct {
		method string // GET when empty
		url    string
		header http.Header
		want   bool
	}{
		{url: "/api/v1/pods", want: false},
		{url: "/api/v1/namespaces/d/pods?labelSelector=a%3Db", want: false},
		// Every spelling the API server decodes as true (runtime.Convert_Slice_string_To_bool):
		// anything but "0" and "false" in any case, a missing value included.
		{url: "/api/v1/pods?watch=true", want: true},
		{url: "/api/v1/pods?watch=1&resourceVersion=5", want: true},
		{url: "/api/v1/pods?watch=True", want: true},
		{url: "/api/v1/pods?watch=TRUE", want: true},
		{url: "/api/v1/pods?watch=t", want: true},
		{url: "/api/v1/pods?watch=yes", want: true},
		{url: "/api/v1/pods?watch=on", want: true},
		{url: "/api/v1/pods?watch=2", want: true},
		{url: "/api/v1/pods?watch=", want: true},
		{url: "/api/v1/pods?watch", want: true},
		{url: "/api/v1/pods?resourceVersion=5&watch", want: true},
		{url: "/api/v1/pods?%77atch=1", want: true},
		{url: "/api/v1/pods?watch=%74rue", want: true},
		{url: "/api/v1/pods?watch=true&watch=false", want: true},
		{url: "/api/v1/pods?x=%zz&watch=1", want: true},
		{url: "/api/v1/namespaces?watch=1", want: true},
		{url: "/apis/apps/v1/namespaces/d/deployments?watch=1", want: true},
		{url: "/api/v1/pods?watch=false", want: false},
		{url: "/api/v1/pods?watch=False", want: false},
		{url: "/api/v1/pods?watch=FALSE", want: false},
		{url: "/api/v1/pods?watch=0", want: false},
		{url: "/api/v1/pods?watch=false&watch=true", want: false},
		{url: "/api/v1/pods?watcher=1", want: false},
		{url: "/api/v1/pods?allowWatchBookmarks=true", want: false},
		// A named object is got, not watched, whatever the parameter says; so are the
		// discovery paths, and a POST creates.
		{url: "/api/v1/namespaces/d/pods/p?watch=1", want: false},
		{url: "/api/v1/namespaces/d?watch=1", want: false},
		{url: "/api/v1?watch=1", want: false},
		{url: "/apis?watch=1", want: false},
		{method: "POST", url: "/api/v1/namespaces/d/configmaps?watch=1", want: false},
		{method: "HEAD", url: "/api/v1/pods?watch=1", want: true},
		{url: "/api/v1/watch/pods", want: true},
		{url: "/api/v1/watch/namespaces/d/pods/p", want: true},
		{url: "/apis/apps/v1/watch/namespaces/d/deployments", want: true},
		{url: "/api/v1/namespaces/d/pods/p/log?follow=true", want: true},
		{url: "/api/v1/namespaces/d/pods/p/log?follow", want: true},
		{url: "/api/v1/namespaces/d/pods/p/log?follow=yes", want: true},
		{url: "/api/v1/namespaces/d/pods/p/log?follow=0", want: false},
		{url: "/api/v1/namespaces/d/pods/p/log", want: false},
		{url: "/api/v1/namespaces/d/configmaps?follow=true", want: false},
		{url: "/api/v1/namespaces/d/pods/p/exec", header: upgrade, want: true},
	}
	for _, tt := range tests {
		method := tt.method
		if method == "" {
			method = http.MethodGet
		}
		t.Run(method+" "+tt.url, func(t *testing.T) {
			r, err := http.NewRequest(method, "http://localhost"+tt.url, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tt.header != nil {
				r.Header = tt.header
			}
			if got := isLongRunning(r); got != tt.want {
				t.Errorf("isLongRunning(%s %s) = %v, want %v", method, tt.url, got, tt.want)
			}
		})
	}
}

// kubectlAccept is kubectl proxy's filter decision, transcribed from
// k8s.io/kubectl/pkg/proxy, to compare with.
func kubectlAccept(f *filter, method, path, hostPort string) bool {
	host, _, _ := net.SplitHostPort(hostPort)
	matches := func(s string, res []*regexp.Regexp) bool { return firstMatch(res, s) != nil }
	if matches(path, f.rejectPaths) || matches(method, f.rejectMethods) {
		return false
	}
	return matches(path, f.acceptPaths) && matches(host, f.acceptHosts)
}

// kubectlPrefixes are --api-prefix values the fuzzer picks from: stripped and kept ones,
// with and without a trailing slash.
var kubectlPrefixes = []string{"/", "/k8s/", "/k8s", "/api/", "/api", "/apis/", "/apis/apps/", "/apifoo/",
	"/api/v1/namespaces/default/", "/a/b"}

// kubectlPrefixMux is kubectl proxy's --api-prefix handling, built as kubectl proxy builds it
// (k8s.io/kubectl/pkg/cmd/proxy and pkg/proxy): the prefix gets a trailing slash and is the
// subtree pattern of a net/http ServeMux, whose handler strips it with stripLeaveSlash unless
// it starts with /api. The handler answers 200 with the path that kubectl's filter and the
// API server would see in the X-Path header.
func kubectlPrefixMux(prefix string) http.Handler {
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Path", r.URL.Path)
	})
	if !strings.HasPrefix(prefix, "/api") {
		next := h
		h = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) { // stripLeaveSlash
			p := strings.TrimPrefix(req.URL.Path, prefix)
			if len(p) >= len(req.URL.Path) {
				http.NotFound(w, req)
				return
			}
			if len(p) > 0 && p[:1] != "/" {
				p = "/" + p
			}
			req.URL.Path = p
			next.ServeHTTP(w, req)
		})
	}
	mux := http.NewServeMux()
	mux.Handle(prefix, h)
	return mux
}

// kubectlRoute asks mux (a kubectlPrefixMux) what becomes of a GET of urlPath: the path seen
// by the filter and the API server; or the redirect's Location (ServeMux redirects to a
// subtree's root with 301 or 307, depending on the Go release); or "" and the status code.
func kubectlRoute(mux http.Handler, urlPath string) (string, int) {
	r := httptest.NewRequest(http.MethodGet, "http://localhost/", nil)
	r.URL.Path, r.RequestURI = urlPath, (&url.URL{Path: urlPath}).RequestURI()
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, r)
	if w.Code/100 == 3 {
		return w.Header().Get("Location"), w.Code
	}
	if w.Code != http.StatusOK {
		return "", w.Code
	}
	p := w.Header().Get("X-Path")
	if p == "" {
		p = "/" // stripLeaveSlash leaves "" for the prefix itself, which reaches the API server as /
	}
	return p, http.StatusOK
}

// FuzzFilterCheck checks that the filter never panics and decides as kubectl proxy does
// wherever kubectl proxy parses the Host correctly (a name or IPv4 address with a port); that
// the default filter accepts only the loopback names, each whole; and that --api-prefix
// serves exactly the paths kubectl proxy serves under the same prefix, as the same path.
func FuzzFilterCheck(f *testing.F) {
	for i, s := range [][3]string{
		{"GET", "/api/v1/namespaces/default/pods", "127.0.0.1:8001"},
		{"POST", "/api/v1/namespaces/default/pods/app/exec", "localhost:8001"},
		{"GET", "/api/v1/namespaces/default/pods/app/attach", "[::1]:8001"},
		{"", "/", "evil.example.com:80"},
		{"GET", "/api/v1/proxy/nodes/x", "localhost"},
		{"GET", "/apis/a/b/namespaces/c/d/e/exec", "[::1"},
		{"GET", "/k8s/api/v1/pods", "[::1].evil.example.com"},
		{"GET", "/apis/apps/v1/deployments", "[::1]evil.example.com:80"},
		{"GET", "/k8s", "localhost:8001@evil.example.com"},
		{"GET", "/api", "127.0.0.1:65536"},
	} {
		f.Add(s[0], s[1], s[2], uint8(i), false)
		f.Add(s[0], s[1], s[2], uint8(i), true)
	}
	plain := mustFilter(f, nil)
	readOnly := mustFilter(f, func(c *Config) { c.ReadOnly = true })
	muxes := make([]http.Handler, len(kubectlPrefixes))
	for i, p := range kubectlPrefixes {
		muxes[i] = kubectlPrefixMux(p)
	}
	loopback := map[string]bool{"localhost": true, "127.0.0.1": true, "[::1]": true}
	f.Fuzz(func(t *testing.T, method, path, host string, prefix uint8, upgrade bool) {
		var h http.Header
		if upgrade {
			h = http.Header{"Connection": {"Upgrade"}, "Upgrade": {"SPDY/3.1"}}
		}
		got := plain.check(method, path, host, h)
		hostOnly, wellFormed := splitHostHeader(host)
		if wellFormed && hostOnly != "" && hostOnly[0] != '[' && strings.Contains(host, ":") {
			if want := kubectlAccept(plain, method, path, host); (got == "") != want {
				t.Errorf("check(%q, %q, %q) = %q; kubectl proxy accepts: %v", method, path, host, got, want)
			}
		}
		if got == "" && (!wellFormed || !loopback[hostOnly]) {
			t.Errorf("the default filter accepts Host %q (host %q, well-formed %v)", host, hostOnly, wellFormed)
		}
		ro := readOnly.check(method, path, host, h)
		if got != "" && ro == "" {
			t.Errorf("--read-only accepts %q %q %q, which the default filter refuses: %s", method, path, host, got)
		}
		if ro == "" && (upgrade || !readOnlyMethod(method)) {
			t.Errorf("--read-only accepts %q %q (upgrade %v)", method, path, upgrade)
		}
		if sub := parseAPIPath(path).subresource; ro == "" && (sub == "exec" || sub == "attach" || sub == "portforward" || sub == "proxy") {
			t.Errorf("--read-only accepts the %s subresource: %q", sub, path)
		}

		// --api-prefix, on the canonical paths that reach it.
		if !strings.HasPrefix(path, "/") || cleanPath(path) != path {
			return
		}
		i := int(prefix) % len(kubectlPrefixes)
		a := newAPIPrefix(kubectlPrefixes[i])
		routed, redirect := a.route(path)
		wantPath, wantCode := kubectlRoute(muxes[i], path)
		switch {
		case redirect:
			if wantCode/100 != 3 || routed != wantPath {
				t.Errorf("--api-prefix %s: %q redirects to %q; kubectl proxy answers %d %q", kubectlPrefixes[i], path, routed, wantCode, wantPath)
			}
		case routed == "":
			if wantCode != http.StatusNotFound {
				t.Errorf("--api-prefix %s: %q is outside; kubectl proxy answers %d (path %q)", kubectlPrefixes[i], path, wantCode, wantPath)
			}
		default:
			if wantCode != http.StatusOK || routed != wantPath {
				t.Errorf("--api-prefix %s: %q is served as %q; kubectl proxy answers %d (path %q)", kubectlPrefixes[i], path, routed, wantCode, wantPath)
			}
			if a.prefix != "/" && !strings.HasPrefix(path, a.prefix) {
				t.Errorf("--api-prefix %s: %q is served although it is outside", kubectlPrefixes[i], path)
			}
		}
	})
}
