package proxy

import (
	"net/http"
	"net/url"
	"path"
	"regexp"
	"strings"
)

// filter decides whether a request may reach the API server. Its zero value lets everything
// through.
type filter struct {
	enabled       bool
	acceptHosts   []*regexp.Regexp
	acceptPaths   []*regexp.Regexp
	rejectPaths   []*regexp.Regexp
	rejectMethods []*regexp.Regexp
	readOnly      bool
}

// newFilter compiles the filter of a validated Config.
func newFilter(c *Config) (*filter, error) {
	f := &filter{enabled: !c.DisableFilter, readOnly: c.ReadOnly}
	var err error
	if f.acceptHosts, err = compileList("--accept-hosts", c.AcceptHosts); err != nil {
		return nil, err
	}
	if f.acceptPaths, err = compileList("--accept-paths", c.AcceptPaths); err != nil {
		return nil, err
	}
	if f.rejectPaths, err = compileList("--reject-paths", c.RejectPaths); err != nil {
		return nil, err
	}
	if f.rejectMethods, err = compileList("--reject-methods", c.RejectMethods); err != nil {
		return nil, err
	}
	return f, nil
}

// check returns "" if the request may pass, or the message of the 403 that refuses it, naming
// the rule. path is the path after --api-prefix handling, host the Host header as sent.
//
// The order is kubectl proxy's: --reject-paths, --reject-methods, then accept only if the path
// matches --accept-paths and the host matches --accept-hosts
// (https://github.com/kubernetes/kubectl/blob/master/pkg/proxy/proxy_server.go). --read-only
// comes last and applies even with --disable-filter.
func (f *filter) check(method, path, host string, header http.Header) string {
	if f.enabled {
		if re := firstMatch(f.rejectPaths, path); re != nil {
			return "path matches --reject-paths " + re.String()
		}
		if re := firstMatch(f.rejectMethods, method); re != nil {
			return "method " + method + " matches --reject-methods " + re.String()
		}
		if firstMatch(f.acceptPaths, path) == nil {
			return "path matches no --accept-paths pattern"
		}
		if !f.hostAccepted(host) {
			return "host " + quote(hostWithoutPort(host)) + " matches no --accept-hosts pattern"
		}
	}
	if f.readOnly {
		return readOnlyCheck(method, path, header)
	}
	return ""
}

// hostAccepted matches the Host header without its port against --accept-hosts.
//
// kubectl proxy strips the port with net.SplitHostPort, which also strips an IPv6 address's
// brackets, so its own default ^\[::1\]$ never matches [::1]:8001, and a Host without a port
// becomes "" (https://github.com/kubernetes/kubernetes/issues/77496). Here an IPv6 literal
// keeps its brackets, as in the URL the client used; for patterns written against kubectl's
// behaviour the bare address is tried as well (it names the same host).
func (f *filter) hostAccepted(host string) bool {
	h := hostWithoutPort(host)
	if firstMatch(f.acceptHosts, h) != nil {
		return true
	}
	if len(h) > 2 && h[0] == '[' {
		return firstMatch(f.acceptHosts, h[1:len(h)-1]) != nil
	}
	return false
}

// hostWithoutPort strips the port from a Host header, keeping an IPv6 literal's brackets.
func hostWithoutPort(host string) string {
	if strings.HasPrefix(host, "[") {
		if i := strings.IndexByte(host, ']'); i > 0 {
			return host[:i+1]
		}
		return host
	}
	// A host name or IPv4 address holds no colon; more than one colon is an IPv6 address
	// without brackets, which is not a valid Host, and is left for the patterns to refuse.
	if i := strings.IndexByte(host, ':'); i >= 0 && strings.IndexByte(host[i+1:], ':') < 0 {
		return host[:i]
	}
	return host
}

// readOnlyMethods are the methods --read-only lets through.
func readOnlyMethod(method string) bool {
	return method == http.MethodGet || method == http.MethodHead || method == http.MethodOptions
}

// readOnlyCheck refuses what --read-only forbids. A check by method alone would let exec
// through, since exec, attach and portforward start with a GET that upgrades the
// connection; the proxy subresources forward a GET to a pod, service or node, where it may
// change anything.
func readOnlyCheck(method, path string, header http.Header) string {
	if !readOnlyMethod(method) {
		return "--read-only lets only GET, HEAD and OPTIONS through, not " + method
	}
	if isUpgrade(header) {
		return "--read-only refuses protocol upgrades (exec, attach and portforward)"
	}
	verb, sub := parseAPIPath(path)
	if verb == "proxy" {
		return "--read-only refuses the proxy paths"
	}
	switch sub {
	case "exec", "attach", "portforward", "proxy":
		return "--read-only refuses the " + sub + " subresource"
	}
	return ""
}

// isUpgrade reports whether a request asks for a protocol upgrade (SPDY or WebSocket, as
// exec, attach and portforward do). It errs towards yes: either header is enough.
func isUpgrade(h http.Header) bool {
	if len(h["Upgrade"]) > 0 {
		return true
	}
	for _, v := range h["Connection"] {
		for tok := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), "upgrade") {
				return true
			}
		}
	}
	return false
}

// parseAPIPath returns the special verb (watch or proxy, from the legacy /api/v1/watch/...
// and /api/v1/proxy/... forms) and the subresource named by an API path, the way the API
// server's own request parsing does
// (https://github.com/kubernetes/apiserver/blob/master/pkg/endpoints/request/requestinfo.go).
// It does not allocate.
func parseAPIPath(urlPath string) (verb, subresource string) {
	rest := strings.Trim(urlPath, "/")
	next := func() string {
		var s string
		s, rest, _ = strings.Cut(rest, "/")
		return s
	}
	switch next() {
	case "api":
		next() // version
	case "apis":
		next() // group
		next() // version
	default:
		return "", ""
	}
	part := next()
	if part == "watch" || part == "proxy" {
		verb, part = part, next()
	}
	if part == "namespaces" {
		next() // the namespace's name
		if rest == "" {
			return verb, "" // a namespace itself
		}
		// namespaces/{name}/status and namespaces/{name}/finalize are subresources of the
		// namespace; anything else after the name is a namespaced resource.
		part = next()
		if part == "status" || part == "finalize" {
			return verb, part
		}
	}
	if next() == "" { // resource name
		return verb, ""
	}
	return verb, next()
}

// isLongRunning reports whether a request may stay open indefinitely: a watch, a followed log,
// or an upgrade. Shutdown ends these instead of waiting for them.
func isLongRunning(r *http.Request) bool {
	if isUpgrade(r.Header) {
		return true
	}
	verb, sub := parseAPIPath(r.URL.Path)
	if verb == "watch" {
		return true
	}
	q := r.URL.RawQuery
	switch {
	case strings.Contains(q, "watch="):
		return queryTrue(q, "watch")
	case sub == "log" && strings.Contains(q, "follow="):
		return queryTrue(q, "follow")
	}
	return false
}

// queryTrue reports whether a query parameter holds a true boolean, as the API server parses it:
// with url.Values, which keeps the valid parameters of a query that also holds invalid ones
// (a watch with a stray semicolon is still a watch).
func queryTrue(rawQuery, key string) bool {
	v, _ := url.ParseQuery(rawQuery)
	switch v.Get(key) {
	case "1", "t", "T", "true", "TRUE", "True":
		return true
	}
	return false
}

// firstMatch returns the first expression that matches s, or nil.
func firstMatch(res []*regexp.Regexp, s string) *regexp.Regexp {
	for _, re := range res {
		if re.MatchString(s) {
			return re
		}
	}
	return nil
}

// cleanPath returns the canonical form of p, as net/http's ServeMux (which kubectl proxy
// serves through) computes it: no dot segments, no double slashes, a trailing slash kept.
// The filters see only canonical paths, so that /api/v1/namespaces/x/pods/y/./exec cannot
// slip past ^/api/.*/pods/.*/exec.
func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	if p[0] != '/' {
		p = "/" + p
	}
	np := path.Clean(p)
	if p[len(p)-1] == '/' && np != "/" {
		if len(p) == len(np)+1 && strings.HasPrefix(p, np) {
			np = p
		} else {
			np += "/"
		}
	}
	return np
}

// quote quotes a client-supplied string for a message, keeping it short.
func quote(s string) string {
	const maxLen = 256
	if len(s) > maxLen {
		s = s[:maxLen] + "..."
	}
	return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"`
}
