package proxy

import (
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
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

func TestHostWithoutPort(t *testing.T) {
	for in, want := range map[string]string{
		"localhost":        "localhost",
		"localhost:8001":   "localhost",
		"127.0.0.1:80":     "127.0.0.1",
		"[::1]:8001":       "[::1]",
		"[::1]":            "[::1]",
		"[::1":             "[::1",
		"::1":              "::1",
		"":                 "",
		"example.com:":     "example.com",
		"[fe80::1%eth0]:1": "[fe80::1%eth0]",
	} {
		if got := hostWithoutPort(in); got != want {
			t.Errorf("hostWithoutPort(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseAPIPath(t *testing.T) {
	tests := []struct{ path, verb, sub string }{
		{"/", "", ""},
		{"/api", "", ""},
		{"/api/v1", "", ""},
		{"/version", "", ""},
		{"/api/v1/pods", "", ""},
		{"/api/v1/namespaces", "", ""},
		{"/api/v1/namespaces/default", "", ""},
		{"/api/v1/namespaces/default/status", "", "status"},
		{"/api/v1/namespaces/default/finalize", "", "finalize"},
		{"/api/v1/namespaces/default/pods", "", ""},
		{"/api/v1/namespaces/default/pods/app", "", ""},
		{"/api/v1/namespaces/default/pods/app/exec", "", "exec"},
		{"/api/v1/namespaces/default/pods/app/exec/", "", "exec"},
		{"/api/v1/namespaces/default/pods/app/proxy/a/b", "", "proxy"},
		{"/api/v1/namespaces/exec/pods/exec", "", ""},
		{"/api/v1/nodes/n/proxy", "", "proxy"},
		{"/api/v1/watch/namespaces/default/pods", "watch", ""},
		{"/api/v1/proxy/nodes/n/", "proxy", ""},
		{"/apis/apps/v1/namespaces/default/deployments/web/scale", "", "scale"},
		{"/apis/apps/v1/deployments", "", ""},
		{"/healthz/etcd", "", ""},
	}
	for _, tt := range tests {
		verb, sub := parseAPIPath(tt.path)
		if verb != tt.verb || sub != tt.sub {
			t.Errorf("parseAPIPath(%q) = %q, %q; want %q, %q", tt.path, verb, sub, tt.verb, tt.sub)
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
	tests := []struct {
		url    string
		header http.Header
		want   bool
	}{
		{url: "/api/v1/pods", want: false},
		{url: "/api/v1/pods?watch=true", want: true},
		{url: "/api/v1/pods?watch=1&resourceVersion=5", want: true},
		{url: "/api/v1/pods?watch=false", want: false},
		{url: "/api/v1/watch/pods", want: true},
		{url: "/api/v1/namespaces/d/pods/p/log?follow=true", want: true},
		{url: "/api/v1/namespaces/d/pods/p/log", want: false},
		{url: "/api/v1/namespaces/d/configmaps?follow=true", want: false},
		{url: "/api/v1/namespaces/d/pods/p/exec", header: http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}}, want: true},
	}
	for _, tt := range tests {
		r, err := http.NewRequest(http.MethodGet, "http://localhost"+tt.url, nil)
		if err != nil {
			t.Fatal(err)
		}
		if tt.header != nil {
			r.Header = tt.header
		}
		if got := isLongRunning(r); got != tt.want {
			t.Errorf("isLongRunning(%s) = %v, want %v", tt.url, got, tt.want)
		}
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

// FuzzFilterCheck checks that the filter never panics and decides as kubectl proxy does
// wherever kubectl proxy parses the Host correctly (a name or IPv4 address with a port).
func FuzzFilterCheck(f *testing.F) {
	for _, s := range [][3]string{
		{"GET", "/api/v1/namespaces/default/pods", "127.0.0.1:8001"},
		{"POST", "/api/v1/namespaces/default/pods/app/exec", "localhost:8001"},
		{"GET", "/api/v1/namespaces/default/pods/app/attach", "[::1]:8001"},
		{"", "/", "evil.example.com:80"},
		{"GET", "/api/v1/proxy/nodes/x", "localhost"},
		{"GET", "/apis/a/b/namespaces/c/d/e/exec", "[::1"},
	} {
		f.Add(s[0], s[1], s[2], false)
		f.Add(s[0], s[1], s[2], true)
	}
	plain := mustFilter(f, nil)
	readOnly := mustFilter(f, func(c *Config) { c.ReadOnly = true })
	f.Fuzz(func(t *testing.T, method, path, host string, upgrade bool) {
		var h http.Header
		if upgrade {
			h = http.Header{"Connection": {"Upgrade"}, "Upgrade": {"SPDY/3.1"}}
		}
		got := plain.check(method, path, host, h)
		if h, port, err := net.SplitHostPort(host); err == nil && port != "" && !strings.Contains(h, ":") && !strings.Contains(host, "[") {
			if want := kubectlAccept(plain, method, path, host); (got == "") != want {
				t.Errorf("check(%q, %q, %q) = %q; kubectl proxy accepts: %v", method, path, host, got, want)
			}
		}
		ro := readOnly.check(method, path, host, h)
		if got != "" && ro == "" {
			t.Errorf("--read-only accepts %q %q %q, which the default filter refuses: %s", method, path, host, got)
		}
		if ro == "" && (upgrade || !readOnlyMethod(method)) {
			t.Errorf("--read-only accepts %q %q (upgrade %v)", method, path, upgrade)
		}
		if _, sub := parseAPIPath(path); ro == "" && (sub == "exec" || sub == "attach" || sub == "portforward" || sub == "proxy") {
			t.Errorf("--read-only accepts the %s subresource: %q", sub, path)
		}
	})
}
