package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// maxReplayBody is the largest request body kept in memory so that a request can be sent
// again after a 401. It covers every ordinary object (etcd refuses values over 1.5 MiB);
// larger or chunked bodies are sent once.
const maxReplayBody = 1 << 20

// replayBudget bounds the memory that request bodies kept for a retry hold, all requests
// together (Config.ReplayBufferSize), so that what clients send in parallel cannot grow the
// proxy past its memory limit: a body that does not fit in what is left is sent once, as it
// comes, and a 401 to it is passed on. Bodies are small as a rule (a few KiB), so the rotation
// guarantee holds for every ordinary request; only a burst of large writes is sent
// unbuffered, and a 401 hits such a write only when it coincides with a token rotation.
type replayBudget struct {
	avail atomic.Int64
}

func newReplayBudget(size int64) *replayBudget {
	b := new(replayBudget)
	b.avail.Store(size)
	return b
}

// take reserves n bytes, or reports false if fewer are left.
func (b *replayBudget) take(n int64) bool {
	for {
		a := b.avail.Load()
		if a < n {
			return false
		}
		if b.avail.CompareAndSwap(a, a-n) {
			return true
		}
	}
}

func (b *replayBudget) give(n int64) { b.avail.Add(n) }

// replayBody is a request body kept for a retry. Its bytes go back to the budget once no one
// holds them: RoundTrip, until it has its final answer, and each reader handed to the
// transport, until the transport closes it (which it may do after RoundTrip returned).
type replayBody struct {
	data   []byte
	refs   atomic.Int32
	budget *replayBudget
}

func newReplayBody(data []byte, b *replayBudget) *replayBody {
	rb := &replayBody{data: data, budget: b}
	rb.refs.Store(1) // RoundTrip's
	return rb
}

// reader returns a new reader of the body, for one attempt.
func (b *replayBody) reader() io.ReadCloser {
	b.refs.Add(1)
	return &replayReader{Reader: bytes.NewReader(b.data), body: b}
}

func (b *replayBody) release() {
	if b.refs.Add(-1) == 0 {
		b.budget.give(int64(len(b.data)))
	}
}

type replayReader struct {
	*bytes.Reader
	body *replayBody
	once sync.Once
}

func (r *replayReader) Close() error {
	r.once.Do(r.body.release)
	return nil
}

// caCheckInterval bounds how often a request stats the CA bundle. The bundle changes only
// when the cluster's CA is rotated, and then holds the old and the new CA for a while.
const caCheckInterval = 10 * time.Second

// transports are what is built from one CA bundle: the pool of HTTP/1.1 connections for
// ordinary requests (nil if none is configured), the transport for the other requests
// (watches, streamed bodies, what the pool has no connection for: HTTP/2 when the API server
// offers it, reused connections) and one for upgrades, which must be HTTP/1.1: an HTTP/2
// stream cannot switch protocols, and net/http sends only WebSocket upgrades over HTTP/1.1 by
// itself, not SPDY ones.
type transports struct {
	http1           *http1Pool
	normal, upgrade *http.Transport
	ca              os.FileInfo // the bundle they trust
}

// loadTransports reads the CA bundle and builds the transports that trust it, with a pool of
// at most http1Conns HTTP/1.1 connections to addr.
func loadTransports(caFile, addr string, http1Conns int) (*transports, error) {
	f, err := os.Open(caFile)
	if err != nil {
		return nil, fmt.Errorf("reading the API server's CA: %w", err)
	}
	defer func() { _ = f.Close() }() // only read
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
	//
	// The API server may send up to MaxReceiveBufferPerStream of an answer ahead of what
	// the proxy has passed on to its client, and the transport holds it in memory: with Go's
	// default of 4 MiB per stream, 64 concurrent 1 MiB answers to a slow client were all held
	// at once (hack/proxymem). 256 KiB is what the API server allows the other way
	// (https://github.com/kubernetes/apiserver/blob/master/pkg/server/secure_serving.go)
	// and keeps a list streaming at hundreds of MB/s at in-cluster round-trip times.
	t.normal.HTTP2 = &http.HTTP2Config{SendPingTimeout: 30 * time.Second, PingTimeout: 15 * time.Second,
		MaxReceiveBufferPerStream: upstreamStreamWindow}

	// SPDY upgrades would otherwise go over a pooled HTTP/2 connection and fail
	// (https://go.dev/issue/46657: net/http only forces HTTP/1.1 for WebSocket).
	t.upgrade.Protocols = new(http.Protocols)
	t.upgrade.Protocols.SetHTTP1(true)
	t.upgrade.TLSClientConfig.NextProtos = []string{"http/1.1"}
	if http1Conns > 0 {
		t.http1 = newHTTP1Pool(addr, t.upgrade.TLSClientConfig, dialer.DialContext, http1Conns)
	}
	return t, nil
}

// upstreamStreamWindow is the HTTP/2 flow-control window of each answer from the API server.
const upstreamStreamWindow = 256 << 10

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
	if t.http1 != nil {
		t.http1.close()
	}
	t.normal.CloseIdleConnections()
	t.upgrade.CloseIdleConnections()
}

// upstream is the RoundTripper to the API server: it picks the transport, observes latency and
// retries once, with a re-read token, a request the API server answered with 401.
type upstream struct {
	tokens  *tokenSource
	metrics *metrics
	log     *slog.Logger
	replay  *replayBudget

	addr       string // host:port of the API server
	http1Conns int    // the most HTTP/1.1 connections for ordinary requests

	// The CA bundle is re-read when it changes, so that a rotation of the cluster's CA
	// (kube-root-ca.crt then holds both CAs) does not need a restart.
	caFile     string
	caInterval time.Duration
	caNext     atomic.Int64 // unix nanoseconds of the next stat
	caMu       sync.Mutex   // serializes reloads
	cur        atomic.Pointer[transports]
}

// upstreamOptions are what newUpstream needs besides the token source and the metrics.
type upstreamOptions struct {
	server     *url.URL // the API server
	caFile     string
	http1Conns int
	replay     *replayBudget
}

func newUpstream(o upstreamOptions, tokens *tokenSource, m *metrics, log *slog.Logger) (*upstream, error) {
	addr := o.server.Host
	if o.server.Port() == "" {
		addr = net.JoinHostPort(o.server.Hostname(), "443")
	}
	t, err := loadTransports(o.caFile, addr, o.http1Conns)
	if err != nil {
		return nil, err
	}
	u := &upstream{tokens: tokens, metrics: m, log: log, replay: o.replay, addr: addr, http1Conns: o.http1Conns,
		caFile: o.caFile, caInterval: caCheckInterval}
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
	t, err := loadTransports(u.caFile, u.addr, u.http1Conns)
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

	// Keep a small body, so that it can be sent again, while the budget allows.
	var body *replayBody
	retryable := req.Body == nil || req.Body == http.NoBody
	if !retryable && req.ContentLength > 0 && req.ContentLength <= maxReplayBody && u.replay.take(req.ContentLength) {
		data := make([]byte, req.ContentLength)
		_, err := io.ReadFull(req.Body, data)
		_ = req.Body.Close() // read in full, or failed: err says which
		body = newReplayBody(data, u.replay)
		defer body.release()
		if err != nil {
			return nil, fmt.Errorf("reading the request body: %w", err)
		}
		retryable = true
	}

	used := req.Header["Authorization"]
	resp, err := u.send(t, req, body)
	if err != nil || resp.StatusCode != http.StatusUnauthorized || req.Context().Err() != nil {
		u.metrics.upstream(time.Since(start))
		return resp, err
	}
	// Re-read the token even when the body cannot be sent again, so that the next request
	// goes out with the new one.
	auth := u.tokens.reloadAfterUnauthorized(used)
	if auth == nil || !retryable {
		u.metrics.upstream(time.Since(start))
		return resp, nil // same token, or nothing to send again: the 401 stands
	}
	// Drain a little so that the connection can be reused (HTTP/1.1), then retry.
	_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
	_ = resp.Body.Close() // the answer is discarded
	retry := req.Clone(req.Context())
	retry.Header["Authorization"] = auth
	resp, err = u.send(t, retry, body)
	u.metrics.upstream(time.Since(start))
	return resp, err
}

// send sends req once, with a new reader of body if it was kept: over the HTTP/1.1 pool
// when the request is ordinary and a pooled connection is free, else over the other
// transport.
func (u *upstream) send(t *transports, req *http.Request, body *replayBody) (*http.Response, error) {
	noBody := req.Body == nil || req.Body == http.NoBody
	if t.http1 != nil && (noBody || body != nil && len(body.data) <= http1MaxBody) && !isLongRunningCtx(req.Context()) {
		var newBody func() io.ReadCloser
		if body != nil {
			newBody = body.reader
		}
		if resp, err := t.http1.roundTrip(req, newBody); !errors.Is(err, errPoolBusy) {
			return resp, err
		}
	}
	if body != nil {
		r2 := req.WithContext(req.Context()) // a shallow copy: a RoundTripper must not modify req
		r2.Body = body.reader()
		req = r2
	}
	return t.normal.RoundTrip(req)
}
