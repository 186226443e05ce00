package proxy

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/api-access-injector/api-access-injector/proxy/proxyargs"
)

// Defaults shared with kubectl proxy, so that a pod that ran kubectl proxy as a sidecar can
// switch without changing its arguments.
// See https://kubernetes.io/docs/reference/kubectl/generated/kubectl_proxy/.
const (
	// DefaultPort is the loopback port the API is served on.
	DefaultPort = 8001
	// DefaultAddress is the address the API is served on: loopback only, since whoever reaches
	// the port speaks with the pod's identity.
	DefaultAddress = "127.0.0.1"
	// DefaultAcceptHosts accepts only loopback names in the Host header. It protects against
	// DNS rebinding (a web page in a browser on the same host naming its own domain); it is
	// not access control.
	DefaultAcceptHosts = `^localhost$,^127\.0\.0\.1$,^\[::1\]$`
	// DefaultAcceptPaths accepts every path.
	DefaultAcceptPaths = `^.*`
	// DefaultRejectPaths rejects exec and attach, as kubectl proxy does.
	DefaultRejectPaths = `^/api/.*/pods/.*/exec,^/api/.*/pods/.*/attach`
	// DefaultRejectMethods rejects no method (it matches only the empty method).
	DefaultRejectMethods = `^$`
	// DefaultAPIPrefix serves the API at the root of the listener.
	DefaultAPIPrefix = "/"
)

// Defaults of the flags kubectl proxy does not have.
const (
	// DefaultServiceAccountDir is where the kubelet mounts the service-account volume; the
	// injector mounts its projected volume at the same place.
	DefaultServiceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"
	// DefaultHealthPort serves /healthz, /readyz and /metrics on all interfaces, for the
	// kubelet's probes (which reach the pod IP, not 127.0.0.1) and for Prometheus.
	DefaultHealthPort = 8002
	// DefaultReplayBufferSize bounds the memory that request bodies kept for a retry after a
	// 401 hold together. Ordinary bodies are a few KiB, so thousands fit; a burst of large
	// writes uses it up and the rest of the burst is sent unbuffered. It leaves room under
	// the sidecar's default 64Mi memory limit for the rest of a burst (see hack/proxymem).
	DefaultReplayBufferSize = 8 << 20
	// DefaultDrainTimeout bounds how long SIGTERM waits for in-flight requests. A native
	// sidecar is stopped after the app containers, within what is left of the pod's
	// terminationGracePeriodSeconds (30 s by default).
	DefaultDrainTimeout = 10 * time.Second
	// DefaultHTTP1Conns is how many HTTP/1.1 connections to the API server ordinary
	// requests may use at once: an app's client seldom has more requests in flight, and
	// those beyond go over HTTP/2 rather than open more connections to the API server. Over
	// HTTP/1.1 the proxy's hop costs a fraction of what it costs over HTTP/2
	// (docs/performance.md).
	DefaultHTTP1Conns = 8
	// MaxHTTP1Conns bounds HTTP1Conns: every connection is one more for the API server to
	// hold.
	MaxHTTP1Conns = 256
)

// Files read from Config.ServiceAccountDir, named as in the kubelet's service-account volume.
const (
	// TokenFile holds the bearer token.
	TokenFile = "token"
	// CAFile holds the PEM bundle of the API server's certificate authorities.
	CAFile = "ca.crt"
	// NamespaceFile holds the pod's namespace.
	NamespaceFile = "namespace"
)

// Config is the configuration of a Server: the kubectl proxy flags, the proxy's own flags and
// what the process wires in. Start from DefaultConfig; New validates it.
type Config struct {
	// Port is the port the API is served on; 0 picks a free port.
	Port int
	// Address is the IP address the API is served on.
	Address string
	// AcceptHosts are regular expressions; a request is served only if its Host is a
	// well-formed host[:port] whose host (an IPv6 literal with its brackets) matches one of
	// them.
	AcceptHosts []string
	// AcceptPaths are regular expressions; a request is served only if its path matches one
	// of them.
	AcceptPaths []string
	// RejectPaths are regular expressions; a request whose path matches one is rejected,
	// whatever AcceptPaths says.
	RejectPaths []string
	// RejectMethods are regular expressions; a request whose method matches one is rejected.
	RejectMethods []string
	// APIPrefix is the path the API is served under: only paths under it (with a trailing
	// slash added) are served, anything else is a 404. As in kubectl proxy, it is stripped
	// before the request is forwarded unless it starts with /api.
	APIPrefix string
	// DisableFilter turns off AcceptHosts, AcceptPaths, RejectPaths and RejectMethods.
	// ReadOnly still applies.
	DisableFilter bool

	// Server is the URL of the API server. Empty means
	// https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT.
	Server string
	// ServiceAccountDir holds the token, ca.crt and namespace files.
	ServiceAccountDir string
	// ReadOnly lets only GET, HEAD and OPTIONS through and refuses exec, attach, portforward,
	// the proxy subresources and every protocol upgrade, even by GET.
	ReadOnly bool
	// HealthPort serves /healthz, /readyz and /metrics on all interfaces; 0 picks a free
	// port.
	HealthPort int
	// KubeconfigOut, when set, is the file where Run writes, before it serves, a kubeconfig
	// for the app containers that points at the API listener, with the namespace read from
	// ServiceAccountDir (see Kubeconfig).
	KubeconfigOut string
	// TLSPort, when not 0, is the port of transparent mode's second listener, on Address: it
	// serves the API over TLS with a certificate for TransparentNames(ClusterDomain) and the
	// loopback addresses, from a CA kept in CADir, or created at start and kept in memory.
	TLSPort int
	// ClusterDomain is the cluster's DNS domain, for the certificate's name
	// kubernetes.default.svc.<ClusterDomain>. Default DefaultClusterDomain.
	ClusterDomain string
	// ServiceAccountOut, when set (with TLSPort), is the directory where Run writes, before
	// it serves, the service-account files of the app containers: ca.crt (the CA of the TLS
	// listener), namespace, and token (PlaceholderToken, no credential).
	ServiceAccountOut string
	// CADir, when set (with TLSPort), is the directory where the CA of the TLS listener and its
	// private key are kept (CAStateFile), so that a restarted proxy serves under the CA the app
	// containers already trust; a missing, unusable or nearly expired CA there is replaced.
	// Only the proxy should be able to read it.
	CADir string
	// ReplayBufferSize bounds, in bytes, the memory that request bodies kept for a retry after
	// a 401 hold together; a body that does not fit is sent once, unbuffered. 0 keeps none.
	ReplayBufferSize int64
	// AccessLog, when true, logs one JSON line per API request at info level: the verb and
	// resource tuple, the status code, the outcome, the latency and the user agent; never a
	// header but User-Agent, a query, a body or a token.
	AccessLog bool
	// HTTP1Conns (--upstream-http1-conns) is the most HTTP/1.1 connections to the API server
	// that ordinary requests are sent over, each driven by the request that uses it; watches,
	// streamed or large request bodies and requests beyond them go over one HTTP/2
	// connection. 0 sends every request over HTTP/2.
	HTTP1Conns int

	// DrainTimeout bounds the drain on shutdown; 0 means DefaultDrainTimeout.
	DrainTimeout time.Duration
	// Logger receives the proxy's logs; nil means slog.Default(). No log line ever holds the
	// token.
	Logger *slog.Logger
}

// DefaultConfig returns the configuration that the flags default to.
func DefaultConfig() Config {
	return Config{
		Port:              DefaultPort,
		Address:           DefaultAddress,
		AcceptHosts:       splitList(DefaultAcceptHosts),
		AcceptPaths:       splitList(DefaultAcceptPaths),
		RejectPaths:       splitList(DefaultRejectPaths),
		RejectMethods:     splitList(DefaultRejectMethods),
		APIPrefix:         DefaultAPIPrefix,
		ServiceAccountDir: DefaultServiceAccountDir,
		HealthPort:        DefaultHealthPort,
		ReplayBufferSize:  DefaultReplayBufferSize,
		HTTP1Conns:        DefaultHTTP1Conns,
		DrainTimeout:      DefaultDrainTimeout,
		ClusterDomain:     DefaultClusterDomain,
	}
}

// BindFlags registers the proxy's flags on fs, with c's current values as defaults.
func (c *Config) BindFlags(fs *flag.FlagSet) {
	fs.IntVar(&c.Port, proxyargs.Port, c.Port, "The port on which to serve the API. Set to 0 to pick a free port.")
	fs.IntVar(&c.Port, "p", c.Port, "Shorthand for --port.")
	fs.StringVar(&c.Address, "address", c.Address, "The IP address on which to serve the API.")
	fs.Var((*regexpList)(&c.AcceptHosts), "accept-hosts", "Comma-separated regular expressions for hosts the proxy accepts; "+
		"the Host header is compared without its port, an IPv6 address with its brackets.")
	fs.Var((*regexpList)(&c.AcceptPaths), "accept-paths", "Comma-separated regular expressions for paths the proxy accepts.")
	fs.Var((*regexpList)(&c.RejectPaths), proxyargs.RejectPaths, "Comma-separated regular expressions for paths the proxy rejects. "+
		"Paths matched here are rejected even if they match --accept-paths.")
	fs.Var((*regexpList)(&c.RejectMethods), "reject-methods", "Comma-separated regular expressions for HTTP methods the proxy rejects "+
		"(for example POST,PUT,PATCH).")
	fs.StringVar(&c.APIPrefix, "api-prefix", c.APIPrefix, "The path prefix under which to serve the API; other paths are not found. "+
		"It is stripped before forwarding unless it starts with /api.")
	fs.BoolVar(&c.DisableFilter, "disable-filter", c.DisableFilter, "If true, disable the host, path and method filters. "+
		"This is dangerous and can leave you open to cross-site request forgery; --read-only still applies.")
	fs.StringVar(&c.Server, "server", c.Server, "The URL of the Kubernetes API server. "+
		"Empty means https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT.")
	fs.StringVar(&c.ServiceAccountDir, "serviceaccount-dir", c.ServiceAccountDir, "The directory holding the service-account files "+
		"token, ca.crt and namespace. The token is re-read whenever it changes.")
	fs.BoolVar(&c.ReadOnly, proxyargs.ReadOnly, c.ReadOnly, "If true, let only GET, HEAD and OPTIONS through, and refuse exec, attach, "+
		"portforward, the proxy subresources and every protocol upgrade, even by GET.")
	fs.IntVar(&c.HealthPort, proxyargs.HealthPort, c.HealthPort, "The port on which to serve /healthz, /readyz and /metrics on all interfaces. "+
		"It never serves the API. Set to 0 to pick a free port.")
	fs.StringVar(&c.KubeconfigOut, proxyargs.KubeconfigOut, c.KubeconfigOut, "If set, the file to write, before serving, a kubeconfig "+
		"for the app containers: its only cluster is this proxy, its namespace the one in --serviceaccount-dir. "+
		"It is written atomically with mode 0644.")
	fs.IntVar(&c.TLSPort, proxyargs.TLSPort, c.TLSPort, "If not 0, also serve the API over TLS on --address and this port (transparent mode), "+
		"with a certificate for kubernetes, kubernetes.default, kubernetes.default.svc, kubernetes.default.svc.<cluster-domain>, "+
		"localhost and the loopback addresses, signed by the CA of --ca-dir, or by a CA created at start and kept in memory.")
	fs.StringVar(&c.ClusterDomain, proxyargs.ClusterDomain, c.ClusterDomain, "The cluster's DNS domain, for the certificate of --tls-port.")
	fs.StringVar(&c.ServiceAccountOut, proxyargs.ServiceAccountOut, c.ServiceAccountOut, "If set (with --tls-port), the directory to write, "+
		"before serving, the app containers' service-account files: ca.crt (the CA of --tls-port), namespace, "+
		"and a token that is no credential. Each is written atomically with mode 0644.")
	fs.BoolVar(&c.AccessLog, proxyargs.AccessLog, c.AccessLog, "If true, log one JSON line per API request: verb, API group, resource, "+
		"subresource, namespace or non-resource URL, status code, outcome, latency and user agent. It never logs a credential.")
	fs.StringVar(&c.CADir, proxyargs.CADir, c.CADir, "If set (with --tls-port), the directory where the CA of --tls-port and its private key "+
		"are kept (file "+CAStateFile+", mode 0600), so that a restarted proxy serves under the CA the app containers already trust. "+
		"A missing, unusable or nearly expired CA is replaced, and the log says why. Mount there a volume no other container mounts.")
	fs.Var((*byteSize)(&c.ReplayBufferSize), "replay-buffer-size", "The most memory that request bodies kept for a retry after a 401 "+
		"(a rotated token) may hold together, in bytes or with a Ki or Mi suffix. A body that does not fit is sent once, unbuffered. "+
		"0 keeps none.")
	fs.IntVar(&c.HTTP1Conns, "upstream-http1-conns", c.HTTP1Conns, "The most HTTP/1.1 connections to the API server "+
		"that ordinary requests are sent over, one request at a time each; watches, request bodies over 64 KiB or streamed, and requests beyond "+
		"these go over one HTTP/2 connection. 0 sends every request over HTTP/2.")
}

// Validate reports every problem with c at once.
func (c *Config) Validate() error {
	var errs []error
	if c.Port < 0 || c.Port > 65535 {
		errs = append(errs, fmt.Errorf("--port %d is not a port: want 0 to 65535", c.Port))
	}
	if c.HealthPort < 0 || c.HealthPort > 65535 {
		errs = append(errs, fmt.Errorf("--health-port %d is not a port: want 0 to 65535", c.HealthPort))
	}
	if c.Port != 0 && c.Port == c.HealthPort {
		errs = append(errs, fmt.Errorf("--port and --health-port are both %d: the health port listens on all interfaces, "+
			"so it must differ from the API port", c.Port))
	}
	if c.TLSPort < 0 || c.TLSPort > 65535 {
		errs = append(errs, fmt.Errorf("--tls-port %d is not a port: want 0 (off) to 65535", c.TLSPort))
	}
	if c.TLSPort != 0 && (c.TLSPort == c.Port || c.TLSPort == c.HealthPort) {
		errs = append(errs, fmt.Errorf("--tls-port %d is also --port or --health-port: the three must differ", c.TLSPort))
	}
	if c.TLSPort != 0 && !isDomain(c.ClusterDomain) {
		errs = append(errs, fmt.Errorf("--cluster-domain %q is not a DNS domain such as cluster.local", c.ClusterDomain))
	}
	if c.ServiceAccountOut != "" && c.TLSPort == 0 {
		errs = append(errs, errors.New("--serviceaccount-out needs --tls-port: its ca.crt is the CA of the TLS listener"))
	}
	if c.CADir != "" && c.TLSPort == 0 {
		errs = append(errs, errors.New("--ca-dir needs --tls-port: it keeps the CA of the TLS listener"))
	}
	if c.Address == "" {
		errs = append(errs, errors.New("--address is empty: want an IP address such as 127.0.0.1"))
	}
	for _, l := range []struct {
		flag     string
		patterns []string
	}{
		{"--accept-hosts", c.AcceptHosts},
		{"--accept-paths", c.AcceptPaths},
		{"--reject-paths", c.RejectPaths},
		{"--reject-methods", c.RejectMethods},
	} {
		if _, err := compileList(l.flag, l.patterns); err != nil {
			errs = append(errs, err)
		}
	}
	if !strings.HasPrefix(c.APIPrefix, "/") {
		errs = append(errs, fmt.Errorf("--api-prefix %q must start with /", c.APIPrefix))
	}
	if _, err := c.serverURL(); err != nil {
		errs = append(errs, err)
	}
	if c.ServiceAccountDir == "" {
		errs = append(errs, errors.New("--serviceaccount-dir is empty"))
	}
	if c.ReplayBufferSize < 0 {
		errs = append(errs, fmt.Errorf("--replay-buffer-size %d is negative: want 0 or more bytes", c.ReplayBufferSize))
	}
	if c.HTTP1Conns < 0 || c.HTTP1Conns > MaxHTTP1Conns {
		errs = append(errs, fmt.Errorf("--upstream-http1-conns %d is out of range: want 0 (every request over HTTP/2) to %d",
			c.HTTP1Conns, MaxHTTP1Conns))
	}
	if c.DrainTimeout < 0 {
		errs = append(errs, fmt.Errorf("drain timeout %v is negative", c.DrainTimeout))
	}
	return errors.Join(errs...)
}

// serverURL resolves Server, falling back to the in-cluster service environment variables.
func (c *Config) serverURL() (*url.URL, error) {
	raw := c.Server
	if raw == "" {
		host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
		if host == "" || port == "" {
			return nil, errors.New("--server is empty and KUBERNETES_SERVICE_HOST or KUBERNETES_SERVICE_PORT is not set: " +
				"set --server to the API server's URL")
		}
		// JoinHostPort brackets an IPv6 address.
		raw = "https://" + net.JoinHostPort(host, port)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("--server %q: %w", raw, err)
	}
	// The token must never travel in clear text.
	if u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("--server %q: want an https:// URL with a host", raw)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("--server %q: want no user, query or fragment", raw)
	}
	return u, nil
}

// isDomain reports whether s is a DNS domain: dot-separated DNS-1123 labels.
func isDomain(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for l := range strings.SplitSeq(s, ".") {
		if len(l) > 63 || !namespaceRE.MatchString(l) {
			return false
		}
	}
	return true
}

// compileList compiles a flag's regular expressions, reporting all bad ones together.
func compileList(flagName string, patterns []string) ([]*regexp.Regexp, error) {
	res := make([]*regexp.Regexp, 0, len(patterns))
	var errs []error
	for _, p := range patterns {
		re, err := regexp.Compile(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", flagName, err))
			continue
		}
		res = append(res, re)
	}
	return res, errors.Join(errs...)
}

// splitList splits a comma-separated flag value as kubectl proxy does: "" is the empty list,
// and a comma always separates (a regular expression cannot contain one).
func splitList(s string) []string {
	if s == "" {
		return []string{}
	}
	return strings.Split(s, ",")
}

// regexpList is a flag.Value for a comma-separated list of regular expressions.
type regexpList []string

func (l *regexpList) String() string {
	if l == nil {
		return ""
	}
	return strings.Join(*l, ",")
}

func (l *regexpList) Set(s string) error {
	*l = splitList(s)
	return nil
}

// byteSize is a flag.Value for a number of bytes, written as a plain number or with a Ki, Mi
// or Gi suffix, as in a Kubernetes quantity.
type byteSize int64

func (b *byteSize) String() string {
	if b == nil {
		return "0"
	}
	n := int64(*b)
	for _, u := range []struct {
		suffix string
		shift  uint
	}{{"Gi", 30}, {"Mi", 20}, {"Ki", 10}} {
		if n != 0 && n%(1<<u.shift) == 0 {
			return strconv.FormatInt(n>>u.shift, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

func (b *byteSize) Set(s string) error {
	num, shift := s, uint(0)
	for suffix, sh := range map[string]uint{"Ki": 10, "Mi": 20, "Gi": 30} {
		if v, ok := strings.CutSuffix(s, suffix); ok {
			num, shift = v, sh
		}
	}
	n, err := strconv.ParseUint(num, 10, 63)
	if err != nil || n > math.MaxInt64>>shift {
		return fmt.Errorf("%q is not a size: want a number of bytes, optionally with a Ki, Mi or Gi suffix (such as 8Mi)", s)
	}
	*b = byteSize(n << shift) //nolint:gosec // n < 2^63 >> shift, checked above: no overflow
	return nil
}
