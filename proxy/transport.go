package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// maxReplayBody is the largest request body kept in memory so that a request can be sent
// again after a 401. It covers every ordinary object (etcd refuses values over 1.5 MiB);
// larger or chunked bodies are sent once.
const maxReplayBody = 1 << 20

// caCheckInterval bounds how often a request stats the CA bundle. The bundle changes only
// when the cluster's CA is rotated, and then holds the old and the new CA for a while.
const caCheckInterval = 10 * time.Second

// transports are the two transports built from one CA bundle: one for ordinary requests
// (HTTP/2 when the API server offers it, reused connections) and one for upgrades, which
// must be HTTP/1.1: an HTTP/2 stream cannot switch protocols, and net/http sends only
// WebSocket upgrades over HTTP/1.1 by itself, not SPDY ones.
type transports struct {
	normal, upgrade *http.Transport
	ca              os.FileInfo // the bundle they trust
}

// loadTransports reads the CA bundle and builds the transports that trust it.
func loadTransports(caFile string) (*transports, error) {
	f, err := os.Open(caFile)
	if err != nil {
		return nil, fmt.Errorf("reading the API server's CA: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("reading the API server's CA: %w", err)
	}
	pem, err := io.ReadAll(io.LimitReader(f, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("reading the API server's CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("reading the API server's CA: %s holds no PEM certificate", caFile)
	}
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	base := func() *http.Transport {
		return &http.Transport{
			Proxy:                 nil, // the API server is reached directly, never through HTTPS_PROXY
			DialContext:           dialer.DialContext,
			TLSClientConfig:       &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
			TLSHandshakeTimeout:   10 * time.Second,
			MaxIdleConns:          100,
			MaxIdleConnsPerHost:   100,
			IdleConnTimeout:       90 * time.Second,
			ExpectContinueTimeout: time.Second,
			// Pass the client's Accept-Encoding and the API server's compressed answer
			// through untouched instead of decompressing on the client's behalf.
			DisableCompression: true,
		}
	}

	t := &transports{normal: base(), upgrade: base(), ca: fi}
	t.normal.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dialer.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return newReadBufferedConn(c), nil
	}
	t.normal.ForceAttemptHTTP2 = true
	t.normal.Protocols = new(http.Protocols)
	t.normal.Protocols.SetHTTP1(true)
	t.normal.Protocols.SetHTTP2(true)
	// Detect a dead connection (an API server that vanished without closing it) within
	// a minute instead of the kernel's TCP timeout, as client-go does
	// (https://github.com/kubernetes/kubernetes/issues/87615).
	t.normal.HTTP2 = &http.HTTP2Config{SendPingTimeout: 30 * time.Second, PingTimeout: 15 * time.Second}

	// SPDY upgrades would otherwise go over a pooled HTTP/2 connection and fail
	// (https://go.dev/issue/46657: net/http only forces HTTP/1.1 for WebSocket).
	t.upgrade.Protocols = new(http.Protocols)
	t.upgrade.Protocols.SetHTTP1(true)
	t.upgrade.TLSClientConfig.NextProtos = []string{"http/1.1"}
	return t, nil
}

// upstreamReadBuffer is the read buffer under TLS on a connection to the API server.
const upstreamReadBuffer = 64 << 10

// readBufferedConn reads through a buffer large enough for a whole answer, so that what
// the API server sent is taken in one read instead of one (or more) per TLS record: TLS
// reads a record at a time, with a buffer sized to the record.
type readBufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func newReadBufferedConn(c net.Conn) *readBufferedConn {
	return &readBufferedConn{Conn: c, r: bufio.NewReaderSize(c, upstreamReadBuffer)}
}

func (c *readBufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// close closes the idle connections; requests in flight finish on theirs.
func (t *transports) close() {
	t.normal.CloseIdleConnections()
	t.upgrade.CloseIdleConnections()
}

// upstream is the RoundTripper to the API server: it picks the transport, observes latency and
// retries once, with a re-read token, a request the API server answered with 401.
type upstream struct {
	tokens  *tokenSource
	metrics *metrics
	log     *slog.Logger

	// The CA bundle is re-read when it changes, so that a rotation of the cluster's CA
	// (kube-root-ca.crt then holds both CAs) does not need a restart.
	caFile     string
	caInterval time.Duration
	caNext     atomic.Int64 // unix nanoseconds of the next stat
	caMu       sync.Mutex   // serializes reloads
	cur        atomic.Pointer[transports]
}

func newUpstream(caFile string, tokens *tokenSource, m *metrics, log *slog.Logger) (*upstream, error) {
	t, err := loadTransports(caFile)
	if err != nil {
		return nil, err
	}
	u := &upstream{tokens: tokens, metrics: m, log: log, caFile: caFile, caInterval: caCheckInterval}
	u.cur.Store(t)
	u.caNext.Store(time.Now().Add(u.caInterval).UnixNano())
	return u, nil
}

// transports returns the transports to use, re-reading the CA bundle first if it changed
// since the last check (at most once per interval).
func (u *upstream) transports(now time.Time) *transports {
	n := now.UnixNano()
	if next := u.caNext.Load(); n >= next && u.caNext.CompareAndSwap(next, n+int64(u.caInterval)) {
		u.reloadCAIfChanged()
	}
	return u.cur.Load()
}

func (u *upstream) reloadCAIfChanged() {
	u.caMu.Lock()
	defer u.caMu.Unlock()
	old := u.cur.Load()
	fi, err := os.Stat(u.caFile)
	if err != nil || (os.SameFile(fi, old.ca) && fi.Size() == old.ca.Size() && fi.ModTime().Equal(old.ca.ModTime())) {
		return // unchanged, or gone for a moment: keep trusting what we trust
	}
	t, err := loadTransports(u.caFile)
	if err != nil {
		u.log.Error("keeping the current CA bundle", "error", err)
		return
	}
	u.cur.Store(t)
	old.close()
	u.log.Info("CA bundle reloaded", "file", u.caFile)
}

// RoundTrip sends req, whose Authorization header the caller set from u.tokens.
func (u *upstream) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	t := u.transports(start)
	if len(req.Header["Upgrade"]) > 0 {
		// A 101 answer hands the connection over, so there is nothing to retry.
		resp, err := t.upgrade.RoundTrip(req)
		u.metrics.upstream(time.Since(start))
		return resp, err
	}

	// Keep a small body, so that it can be sent again.
	var body []byte
	retryable := req.Body == nil || req.Body == http.NoBody
	if !retryable && req.ContentLength > 0 && req.ContentLength <= maxReplayBody {
		body = make([]byte, req.ContentLength)
		_, err := io.ReadFull(req.Body, body)
		req.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("reading the request body: %w", err)
		}
		r2 := req.WithContext(req.Context()) // a shallow copy: a RoundTripper must not modify req
		r2.Body = io.NopCloser(bytes.NewReader(body))
		req, retryable = r2, true
	}

	used := req.Header["Authorization"]
	resp, err := t.normal.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusUnauthorized || !retryable || req.Context().Err() != nil {
		u.metrics.upstream(time.Since(start))
		return resp, err
	}
	auth := u.tokens.reloadAfterUnauthorized(used)
	if auth == nil {
		u.metrics.upstream(time.Since(start))
		return resp, nil // same token: the 401 stands
	}
	// Drain a little so that the connection can be reused (HTTP/1.1), then retry.
	_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
	resp.Body.Close()
	retry := req.Clone(req.Context())
	retry.Header["Authorization"] = auth
	if body != nil {
		retry.Body = io.NopCloser(bytes.NewReader(body))
	}
	resp, err = t.normal.RoundTrip(retry)
	u.metrics.upstream(time.Since(start))
	return resp, err
}
