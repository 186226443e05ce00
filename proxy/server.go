package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Server is the api-proxy: the API handler on the loopback listener and the health handler on
// the health listener.
type Server struct {
	cfg     Config
	log     *slog.Logger
	target  *url.URL
	filter  *filter
	tokens  *tokenSource
	metrics *metrics
	access  *accounting // what the app did: the access record and the per-resource metrics
	up      *upstream
	rp      *httputil.ReverseProxy // streams: every read of the answer is flushed at once
	plain   *httputil.ReverseProxy // ordinary requests: the answer is buffered (buffer.go)
	ready   *readiness

	prefix apiPrefix

	// ca and names serve transparent mode's TLS listener (nil without --tls-port).
	ca    *servingCA
	names tlsNames

	// drain is cancelled when shutdown starts; long-running requests end on it.
	drain    context.Context
	drainNow context.CancelFunc
	// upgrades counts upgraded connections, which http.Server.Shutdown does not wait for.
	upgrades sync.WaitGroup

	apiLn, healthLn, tlsLn net.Listener
}

// New validates cfg, reads the credentials and builds the handlers. It does not listen.
func New(cfg Config) (*Server, error) {
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = DefaultDrainTimeout
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid configuration: %w", err)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, metrics: new(metrics), access: newAccounting(time.Now())}
	s.metrics.access = s.access
	s.drain, s.drainNow = context.WithCancel(context.Background())
	if s.log == nil {
		s.log = slog.Default()
	}
	s.target, _ = cfg.serverURL() // validated above
	var err error
	if s.filter, err = newFilter(&cfg); err != nil {
		return nil, err
	}
	s.prefix = newAPIPrefix(cfg.APIPrefix)
	if cfg.TLSPort != 0 {
		if s.ca, err = newServingCA(TransparentNames(cfg.ClusterDomain), cfg.CADir, s.log, time.Now()); err != nil {
			return nil, err
		}
		s.names = newTLSNames(cfg.ClusterDomain)
	}

	var errs []error
	s.tokens, err = newTokenSource(filepath.Join(cfg.ServiceAccountDir, TokenFile), s.log, s.metrics)
	errs = append(errs, err)
	s.up, err = newUpstream(upstreamOptions{server: s.target, caFile: filepath.Join(cfg.ServiceAccountDir, CAFile),
		http1Conns: cfg.HTTP1Conns, replay: newReplayBudget(cfg.ReplayBufferSize)}, s.tokens, s.metrics, s.log)
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	s.metrics.tokens.Store(s.tokens)
	s.rp = &httputil.ReverseProxy{
		Rewrite:        s.rewrite,
		Transport:      s.up,
		FlushInterval:  -1, // every watch event reaches the client at once
		BufferPool:     bufferPool{},
		ModifyResponse: s.modifyResponse,
		ErrorHandler:   s.upstreamError,
		ErrorLog:       slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	plain := *s.rp
	plain.FlushInterval = 0 // httputil still flushes each read of a body of unknown length
	plain.ModifyResponse = s.modifyPlainResponse
	s.plain = &plain
	s.ready = &readiness{up: s.up, tokens: s.tokens, target: s.target}
	return s, nil
}

// ServeHTTP serves the API: canonical path, --api-prefix, filters, then the API server.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodConnect { // not an API method; a proxy tunnel request
		s.reject(w, r, http.StatusMethodNotAllowed, "MethodNotAllowed", "CONNECT is not served")
		return
	}
	if p := cleanPath(r.URL.Path); p != r.URL.Path {
		// As net/http's ServeMux does (and so kubectl proxy), with 308 so that the method
		// and body survive the redirect.
		u := *r.URL
		u.Path, u.RawPath = p, ""
		s.metrics.request(r.Method, http.StatusPermanentRedirect)
		//nolint:gosec // to a cleaned path of this server (path.Clean leaves no leading //), not elsewhere
		http.Redirect(w, r, u.RequestURI(), http.StatusPermanentRedirect)
		return
	}
	if strings.HasPrefix(r.URL.Path, AccessRecordPrefix) {
		s.serveAccessRecord(w, r, r.URL.Path)
		return
	}
	p, redirect := s.prefix.route(r.URL.Path)
	if redirect {
		// As net/http's ServeMux (and so kubectl proxy) redirects to a subtree's root.
		u := *r.URL
		u.Path, u.RawPath = p, ""
		s.metrics.request(r.Method, http.StatusPermanentRedirect)
		//nolint:gosec // to the prefix's root on this server, not elsewhere
		http.Redirect(w, r, u.RequestURI(), http.StatusPermanentRedirect)
		return
	}
	if strings.HasPrefix(p, AccessRecordPrefix) { // under an --api-prefix that is stripped
		s.serveAccessRecord(w, r, p)
		return
	}
	// From here on the request is an API request: it is accounted for (access.go).
	infoPath := p
	if p == "" {
		infoPath = r.URL.Path
	}
	if s.access != nil {
		var x *exchange
		r, x = withExchange(r, infoPath, time.Now())
		if s.cfg.AccessLog {
			defer s.logAccess(r, x)
		}
	}
	switch {
	case p == "":
		s.reject(w, r, http.StatusNotFound, reasonNotFound, "path is outside --api-prefix "+s.prefix.prefix)
		return
	case p != r.URL.Path:
		r = stripPrefix(r, p)
	}
	// On the TLS listener, the names of its certificate are hosts too: in-cluster clients send
	// Host: kubernetes.default.svc, which a DNS-rebinding page cannot, since the app's own
	// /etc/hosts alone maps it to loopback and no browser would trust the certificate.
	if msg := s.filter.checkHost(r.Method, r.URL.Path, r.Host, r.Header, r.TLS != nil && s.names.accepts(r.Host)); msg != "" {
		s.reject(w, r, http.StatusForbidden, reasonForbidden, msg)
		return
	}
	if isLongRunning(r) {
		if isUpgrade(r.Header) {
			// http.Server.Shutdown does not track hijacked connections.
			s.upgrades.Add(1)
			defer s.upgrades.Done()
		}
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		if s.drain.Err() != nil {
			// Draining already: a new watch would only be cut at once.
			s.reject(w, r, http.StatusServiceUnavailable, "ServiceUnavailable", "the proxy is shutting down")
			return
		}
		stop := context.AfterFunc(s.drain, cancel)
		defer stop()
		r = r.WithContext(withLongRunning(ctx))
		s.rp.ServeHTTP(w, r)
		return
	}
	if mayStream(r.URL.Path) {
		s.rp.ServeHTTP(w, r)
		return
	}
	s.plain.ServeHTTP(w, r)
}

func (s *Server) reject(w http.ResponseWriter, r *http.Request, code int, reason, msg string) {
	s.metrics.request(r.Method, code)
	s.account(r.Context(), code, outcomeRefused)
	writeStatus(w, code, reason, msg)
}

// rewrite builds the request to the API server.
func (s *Server) rewrite(pr *httputil.ProxyRequest) {
	out := pr.Out
	if s.target.Path == "" || s.target.Path == "/" {
		out.URL.Scheme, out.URL.Host = s.target.Scheme, s.target.Host
		out.Host = ""
	} else {
		pr.SetURL(s.target)
	}
	// The pod's identity is the only one the proxy speaks with: a client's own credentials
	// and impersonation requests are dropped, not passed on as kubectl proxy does.
	h := out.Header
	for k := range h {
		if strings.HasPrefix(k, "Impersonate-") || k == "Authorization" {
			delete(h, k)
		}
	}
	h["Authorization"] = s.tokens.authorization()
}

// modifyResponse counts the answer and, for a watch or a followed log, makes the drain end the
// stream cleanly (the client sees the end of the stream, not a broken connection).
func (s *Server) modifyResponse(resp *http.Response) error {
	s.metrics.request(resp.Request.Method, resp.StatusCode)
	s.account(resp.Request.Context(), resp.StatusCode, upstreamOutcome(resp.StatusCode))
	if resp.StatusCode != http.StatusSwitchingProtocols && isLongRunningCtx(resp.Request.Context()) {
		resp.Body = newDrainBody(s.drain, resp.Body)
	}
	return nil
}

// modifyPlainResponse counts the answer to an ordinary request and reads its body ahead when
// it may (see bufferResponse).
func (s *Server) modifyPlainResponse(resp *http.Response) error {
	s.metrics.request(resp.Request.Method, resp.StatusCode)
	s.account(resp.Request.Context(), resp.StatusCode, upstreamOutcome(resp.StatusCode))
	if bufferable(resp) {
		bufferResponse(resp)
	}
	return nil
}

// upstreamError answers when the API server could not be reached.
func (s *Server) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		// The client went away (nobody reads an answer), or the drain ended a long-running
		// request before the API server answered.
		if s.drain.Err() != nil {
			s.account(r.Context(), http.StatusServiceUnavailable, outcomeFailed)
			writeStatus(w, http.StatusServiceUnavailable, "ServiceUnavailable", "the proxy is shutting down")
		}
		return
	}
	s.log.Warn("the API server could not be reached", "method", r.Method, "path", r.URL.Path, "error", err)
	s.metrics.request(r.Method, http.StatusBadGateway)
	s.account(r.Context(), http.StatusBadGateway, outcomeFailed)
	writeStatus(w, http.StatusBadGateway, "", "the API server could not be reached: "+err.Error())
}

// Listen binds the API and health listeners. Addr and HealthAddr are valid after it.
func (s *Server) Listen() error {
	apiLn, err := net.Listen("tcp", net.JoinHostPort(s.cfg.Address, strconv.Itoa(s.cfg.Port)))
	if err != nil {
		return fmt.Errorf("listening for the API: %w", err)
	}
	healthLn, err := net.Listen("tcp", ":"+strconv.Itoa(s.cfg.HealthPort))
	if err != nil {
		_ = apiLn.Close() // the listen error is the one to report
		return fmt.Errorf("listening for health checks: %w", err)
	}
	if s.cfg.TLSPort != 0 {
		tlsLn, err := s.listenTLS()
		if err != nil {
			// The listen error is the one to report.
			_, _ = apiLn.Close(), healthLn.Close()
			return err
		}
		s.tlsLn = tlsLn
	}
	s.apiLn, s.healthLn = apiLn, healthLn
	return nil
}

// Addr returns the address the API is served on, once Listen succeeded.
func (s *Server) Addr() net.Addr { return s.apiLn.Addr() }

// TLSAddr returns the address of transparent mode's TLS listener, once Listen succeeded; nil
// without --tls-port.
func (s *Server) TLSAddr() net.Addr {
	if s.tlsLn == nil {
		return nil
	}
	return s.tlsLn.Addr()
}

// CACertPEM returns the PEM certificate of the CA that signed the TLS listener's certificate;
// nil without --tls-port.
func (s *Server) CACertPEM() []byte {
	if s.ca == nil {
		return nil
	}
	return s.ca.caPEM
}

func (s *Server) tlsAddr() string {
	if a := s.TLSAddr(); a != nil {
		return "https://" + a.String()
	}
	return ""
}

// HealthAddr returns the address of /healthz, /readyz and /metrics, once Listen succeeded.
func (s *Server) HealthAddr() net.Addr { return s.healthLn.Addr() }

// Run listens (unless Listen was called), writes --kubeconfig-out if set, logs where, and
// serves until ctx is done; then it drains (see Serve).
func (s *Server) Run(ctx context.Context) error {
	if s.apiLn == nil {
		if err := s.Listen(); err != nil {
			return err
		}
	}
	if err := errors.Join(s.writeKubeconfig(), s.writeServiceAccount()); err != nil {
		// Nothing was served: the error above is the one to report.
		_, _ = s.apiLn.Close(), s.healthLn.Close()
		if s.tlsLn != nil {
			_ = s.tlsLn.Close()
		}
		return err
	}
	setSoftMemoryLimit(s.log, cgroupMemoryFiles)
	s.log.Info("api-proxy serving the Kubernetes API", "address", "http://"+s.Addr().String(),
		"health", s.HealthAddr().String(), "tls", s.tlsAddr(), "server", s.target.String(), "readOnly", s.cfg.ReadOnly,
		"filter", !s.cfg.DisableFilter, "namespace", readNamespace(s.cfg.ServiceAccountDir))
	return s.Serve(ctx)
}

// Serve serves on the listeners bound by Listen until ctx is done. It then drains: it stops
// accepting, ends watches, followed logs and upgraded connections, waits up to the drain
// timeout for the other in-flight requests, and returns nil if they all finished.
func (s *Server) Serve(ctx context.Context) error {
	if s.apiLn == nil {
		return errors.New("serve called before listen")
	}
	errorLog := slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)
	api := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       90 * time.Second,
		ErrorLog:          errorLog,
	}
	health := &http.Server{
		Handler:           s.HealthHandler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       90 * time.Second,
		ErrorLog:          errorLog,
	}
	errc := make(chan error, 3)
	go func() { errc <- api.Serve(s.apiLn) }()
	go func() { errc <- health.Serve(s.healthLn) }()
	var apiTLS *http.Server
	if s.tlsLn != nil {
		apiTLS = &http.Server{
			Handler:           s,
			ReadHeaderTimeout: 30 * time.Second,
			IdleTimeout:       90 * time.Second,
			ErrorLog:          errorLog,
			TLSConfig:         &tls.Config{Certificates: []tls.Certificate{s.ca.cert}, MinVersion: tls.VersionTLS12},
		}
		// ServeTLS, not Serve on a TLS listener: it sets up HTTP/2 too, which client-go uses.
		go func() { errc <- apiTLS.ServeTLS(s.tlsLn, "", "") }()
	}

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc: // a listener failed
	}
	s.log.Info("draining", "timeout", s.cfg.DrainTimeout.String())
	s.Drain()
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.DrainTimeout)
	defer cancel()
	var errs []error
	if err := api.Shutdown(dctx); err != nil {
		errs = append(errs, fmt.Errorf("draining the API listener: %w", err))
		_ = api.Close() // what is left is cut; the drain's error says so
	}
	if apiTLS != nil {
		if err := apiTLS.Shutdown(dctx); err != nil {
			errs = append(errs, fmt.Errorf("draining the TLS listener: %w", err))
			_ = apiTLS.Close() // what is left is cut; the drain's error says so
		}
	}
	upgradesDone := make(chan struct{})
	go func() { s.upgrades.Wait(); close(upgradesDone) }()
	select {
	case <-upgradesDone:
	case <-dctx.Done():
		errs = append(errs, errors.New("draining upgraded connections: timed out"))
	}
	if err := health.Shutdown(dctx); err != nil {
		_ = health.Close() // probes in flight when the pod stops need no answer
	}
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		errs = append(errs, fmt.Errorf("serving: %w", serveErr))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	s.log.Info("drained")
	return nil
}

// Drain ends long-running requests (watches, followed logs, upgraded connections) and
// refuses new ones. Serve calls it on shutdown; it is safe to call more than once.
func (s *Server) Drain() { s.drainNow() }

// apiPrefix is --api-prefix as kubectl proxy applies it: the prefix gets a trailing slash
// and only its subtree is served (with /api/ only the core group, with /apis/apps/ only that
// group; anything else is a 404), and it is stripped before the request is filtered and
// forwarded unless it starts with /api, in which case it is part of the API path
// (https://github.com/kubernetes/kubectl/blob/master/pkg/cmd/proxy/proxy.go,
// https://github.com/kubernetes/kubectl/blob/master/pkg/proxy/proxy_server.go).
type apiPrefix struct {
	prefix string // with its trailing slash
	strip  bool
}

func newAPIPrefix(p string) apiPrefix {
	if !strings.HasSuffix(p, "/") {
		p += "/"
	}
	return apiPrefix{prefix: p, strip: !strings.HasPrefix(p, "/api")}
}

// route returns the path that a canonical request path is filtered and forwarded as; "" if
// it is outside the prefix (a 404). redirect is true, with the prefix as the path, when the
// request names the prefix without its trailing slash.
func (a apiPrefix) route(urlPath string) (p string, redirect bool) {
	switch {
	case a.prefix == "/":
		return urlPath, false
	case strings.HasPrefix(urlPath, a.prefix):
		if a.strip {
			return urlPath[len(a.prefix)-1:], false // the slash stays
		}
		return urlPath, false
	case urlPath+"/" == a.prefix:
		return a.prefix, true
	}
	return "", false
}

// stripPrefix returns r with the path p, which is r's path without a leading part.
func stripPrefix(r *http.Request, p string) *http.Request {
	r2 := r.WithContext(r.Context())
	u := *r.URL
	prefix := r.URL.Path[:len(r.URL.Path)-len(p)]
	u.Path = p
	// Keep the client's escaping of the rest of the path (an escaped slash in a name) when
	// the escaped path starts with the same prefix; otherwise it is derived from Path.
	u.RawPath = ""
	if rp, ok := strings.CutPrefix(r.URL.RawPath, prefix); ok && strings.HasPrefix(rp, "/") {
		u.RawPath = rp
	}
	r2.URL = &u
	return r2
}

// readNamespace returns the pod's namespace for the startup log, "" if unknown.
func readNamespace(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, NamespaceFile))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// longRunningKey marks the context of a long-running request, for modifyResponse.
type longRunningKey struct{}

func withLongRunning(ctx context.Context) context.Context {
	return context.WithValue(ctx, longRunningKey{}, true)
}

func isLongRunningCtx(ctx context.Context) bool {
	v, _ := ctx.Value(longRunningKey{}).(bool)
	return v
}

// drainBody ends a streamed response body cleanly when the drain starts: it closes the
// upstream body to interrupt a blocked read and reports io.EOF instead of the error that
// closing causes.
type drainBody struct {
	io.ReadCloser
	drain context.Context
	stop  func() bool
}

func newDrainBody(drain context.Context, body io.ReadCloser) *drainBody {
	// Closing the body ends the stream; the reader sees the error of its Read.
	return &drainBody{ReadCloser: body, drain: drain, stop: context.AfterFunc(drain, func() { _ = body.Close() })}
}

func (b *drainBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && b.drain.Err() != nil {
		return n, io.EOF
	}
	return n, err
}

func (b *drainBody) Close() error {
	b.stop()
	return b.ReadCloser.Close()
}

// bufferPool lends the 32 KiB copy buffers of httputil.ReverseProxy, which otherwise
// allocates one per request.
type bufferPool struct{}

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *copyBuffers.Get().(*[]byte) }
func (bufferPool) Put(b []byte) { copyBuffers.Put(&b) }
