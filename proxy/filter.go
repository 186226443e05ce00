package proxy

import (
	"net/http"
	"net/netip"
	"net/url"
	"path"
	"regexp"
	"strconv"
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
	return f.checkHost(method, path, host, header, false)
}

// checkHost is check where hostOK, when true, accepts the host whatever --accept-hosts says
// (transparent mode's TLS listener, for the names of its certificate).
func (f *filter) checkHost(method, path, host string, header http.Header, hostOK bool) string {
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
		if !hostOK && !f.hostAccepted(host) {
			if h, ok := splitHostHeader(host); ok {
				return "host " + quote(h) + " matches no --accept-hosts pattern"
			}
			return "Host " + quote(host) + " is not a valid host[:port], so no --accept-hosts pattern can accept it"
		}
	}
	if f.readOnly {
		return readOnlyCheck(method, path, header)
	}
	return ""
}

// hostAccepted matches the Host header against --accept-hosts: the whole host, without a
// port, an IPv6 literal with its brackets. A Host that is not a well-formed host[:port] is
// never accepted, so that nothing after a valid prefix ("[::1].evil.example.com",
// "localhost:8001@evil.example.com") can ride on it.
//
// kubectl proxy strips the port with net.SplitHostPort, which also strips an IPv6 address's
// brackets, so its own default ^\[::1\]$ never matches [::1]:8001, and a Host without a port
// is matched whole (https://github.com/kubernetes/kubernetes/issues/77496). Here an IPv6
// literal keeps its brackets, as in the URL the client used; for patterns written against
// kubectl's behaviour the bare address is tried as well (it names the same host).
func (f *filter) hostAccepted(host string) bool {
	h, ok := splitHostHeader(host)
	if !ok {
		return false
	}
	if firstMatch(f.acceptHosts, h) != nil {
		return true
	}
	if len(h) > 2 && h[0] == '[' {
		return firstMatch(f.acceptHosts, h[1:len(h)-1]) != nil
	}
	return false
}

// splitHostHeader returns the host of a Host header value without its port, and whether the
// value is a well-formed uri-host [ ":" port ] (RFC 9110 section 7.2, RFC 3986 section 3.2.2):
// an IPv6 address in brackets, or a name or IPv4 address (unreserved, percent-encoded and
// sub-delimiter characters, no colon), then nothing, or a colon and a port of 0 to 65535 (the
// digits may be absent, as RFC 3986 allows). An empty value is well-formed and yields "": an
// HTTP/1.0 request may come without a Host, and the patterns decide, as in kubectl proxy.
func splitHostHeader(v string) (host string, ok bool) {
	host, port := v, ""
	if strings.HasPrefix(v, "[") {
		end := strings.IndexByte(v, ']')
		if end < 0 {
			return "", false
		}
		host, port = v[:end+1], v[end+1:]
		if a, err := netip.ParseAddr(host[1:end]); err != nil || !a.Is6() {
			return "", false
		}
	} else {
		if i := strings.IndexByte(v, ':'); i >= 0 {
			host, port = v[:i], v[i:]
		}
		if host == "" && port != "" {
			return "", false
		}
		for i := 0; i < len(host); i++ {
			if !regNameByte(host[i]) {
				return "", false
			}
		}
	}
	if port == "" {
		return host, true
	}
	if port[0] != ':' {
		return "", false // something after "]" that is not a port
	}
	if port = port[1:]; port == "" {
		return host, true
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil { // digits only, at most 65535
		return "", false
	}
	return host, true
}

// regNameByte reports whether c may appear in a host name or IPv4 address: RFC 3986's
// unreserved, sub-delims and the percent sign of a percent-encoding.
func regNameByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("-._~%!$&'()*+,;=", c) >= 0
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
	p := parseAPIPath(path)
	if p.verb == "proxy" {
		return "--read-only refuses the proxy paths"
	}
	switch p.subresource {
	case "exec", "attach", "portforward", "proxy":
		return "--read-only refuses the " + p.subresource + " subresource"
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

// apiPath is what the API server reads from a request path
// (https://github.com/kubernetes/apiserver/blob/master/pkg/endpoints/request/requestinfo.go).
type apiPath struct {
	// verb is the special verb of the legacy /watch/ and /proxy/ forms
	// (/api/v1/watch/..., /apis/g/v/proxy/...), "" otherwise.
	verb string
	// resource, name and subresource are empty when the path does not name them; resource
	// is empty for every path that is not a resource request (/api/v1, /version, ...).
	resource, name, subresource string
}

// parseAPIPath parses a canonical path the way the API server's own request parsing does.
// It does not allocate.
func parseAPIPath(urlPath string) (p apiPath) {
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
		return p
	}
	part := next()
	if part == "watch" || part == "proxy" {
		p.verb, part = part, next()
	}
	if part == "namespaces" {
		ns := next()
		if ns == "" || rest == "" {
			p.resource, p.name = part, ns // the namespaces, or a namespace itself
			return p
		}
		// namespaces/{name}/status and namespaces/{name}/finalize are subresources of the
		// namespace; anything else after the name is a namespaced resource.
		if part = next(); part == "status" || part == "finalize" {
			p.resource, p.name, p.subresource = "namespaces", ns, part
			return p
		}
	}
	p.resource = part
	if p.name = next(); p.name != "" {
		p.subresource = next()
	}
	return p
}

// isLongRunning reports whether a request may stay open indefinitely: a watch, a followed log,
// or an upgrade. Such a request is streamed (every read of the answer flushed at once), and
// shutdown ends it instead of waiting for it.
//
// A watch is recognised as the API server recognises it: a /watch/ path, or a GET (or HEAD)
// of a collection (a resource without a name) whose watch parameter reads as true (see
// apiBool): ?watch, ?watch=1, ?watch=yes and ?watch=True are all watches, ?watch=0 and
// ?watch=FALSE are not. Missing one would buffer a stream that never ends.
func isLongRunning(r *http.Request) bool {
	if isUpgrade(r.Header) {
		return true
	}
	p := parseAPIPath(r.URL.Path)
	if p.verb == "watch" {
		return true
	}
	q := r.URL.RawQuery
	switch {
	case q == "":
		return false
	case p.verb == "" && p.resource != "" && p.name == "" && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		return mayHold(q, "watch") && apiBool(q, "watch")
	case p.subresource == "log":
		return mayHold(q, "follow") && apiBool(q, "follow")
	}
	return false
}

// mayHold is a cheap test that rules out a query holding key: neither key nor a
// percent-encoding (which may spell it, as in %77atch) appears in it.
func mayHold(rawQuery, key string) bool {
	return strings.Contains(rawQuery, key) || strings.IndexByte(rawQuery, '%') >= 0
}

// apiBool reports whether the query parameter key holds true as the API server decodes a
// boolean option (ListOptions.Watch, PodLogOptions.Follow): its first value is true unless it
// is "0" or "false" in any case, and a parameter without a value (?watch, ?watch=) is true
// (runtime.Convert_Slice_string_To_bool,
// https://github.com/kubernetes/apimachinery/blob/master/pkg/runtime/conversion.go). The
// query is read with url.ParseQuery, as the API server reads it, which keeps the valid
// parameters of a query that also holds invalid ones.
func apiBool(rawQuery, key string) bool {
	v, _ := url.ParseQuery(rawQuery)
	vs := v[key]
	return len(vs) > 0 && vs[0] != "0" && !strings.EqualFold(vs[0], "false")
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
