package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// http1Pool sends ordinary requests to the API server over HTTP/1.1 connections that it
// keeps open, each used by one request at a time and driven by the goroutine that sends the
// request: it writes the request and reads the answer itself. net/http's Transport instead
// gives every connection a reader and a writer goroutine, and an HTTP/2 connection one reader
// for all streams, and hands each request and answer between goroutines; on a loaded node
// each handoff may wait for a thread to be scheduled, and together they made the sidecar's
// hop cost as much as kubectl proxy's (hack/proxybench, docs/performance.md).
//
// It keeps at most max connections. A request that finds them all busy, a watch (which would
// hold a connection for as long as it lasts) and a request whose body is streamed go over
// the shared HTTP/2 connection instead (see upstream.RoundTrip), so that a burst of requests
// does not open a burst of connections to the API server.
type http1Pool struct {
	addr string // host:port of the API server
	tls  *tls.Config
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
	max  int

	mu     sync.Mutex
	idle   []*http1Conn // the most recently used last
	open   int          // connections busy or idle
	closed bool
}

// http1IdleTimeout is how long a connection may stay unused before it is closed instead of
// reused: below the 90 s that API servers and the load balancers in front of them commonly
// allow, so that the proxy closes first and rarely meets a connection the other side closed.
const http1IdleTimeout = 60 * time.Second

// http1MaxBody is the largest request body sent over the pool: one that fits in the socket's
// send buffer, so that the request is written whole before the answer is read, even if the
// API server answers before reading it (a 401 is decided before the body is read). Longer
// bodies go over HTTP/2, whose transport reads and writes at once.
const http1MaxBody = 64 << 10

// http1MaxHeader bounds what is read of an answer before its body, as net/http's Transport
// bounds it (MaxResponseHeaderBytes), though lower: the API server's headers are a few hundred
// bytes.
const http1MaxHeader = 1 << 20

// headerLimit is a reader that fails once n bytes were read, while n is not negative.
type headerLimit struct {
	r io.Reader
	n int64
}

func (l *headerLimit) Read(p []byte) (int, error) {
	if l.n < 0 {
		return l.r.Read(p)
	}
	if l.n == 0 {
		return 0, fmt.Errorf("the answer's headers are longer than %d bytes", http1MaxHeader)
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

// http1Conn is one connection of the pool.
type http1Conn struct {
	raw    net.Conn          // the TCP connection, closed to abort a read or write
	under  *readBufferedConn // raw, read through a buffer
	tls    *tls.Conn         // over under
	limit  *headerLimit      // between tls and br
	br     *bufio.Reader
	bw     *bufio.Writer
	usedAt time.Time // when it was last put back
	reused bool      // it served a request before
}

func newHTTP1Pool(addr string, cfg *tls.Config, dial func(ctx context.Context, network, addr string) (net.Conn, error), maxConns int) *http1Pool {
	cfg = cfg.Clone()
	cfg.NextProtos = []string{"http/1.1"}
	if cfg.ServerName == "" {
		host, _, _ := net.SplitHostPort(addr)
		cfg.ServerName = host
	}
	return &http1Pool{addr: addr, tls: cfg, dial: dial, max: maxConns}
}

// get returns an idle connection that is still open, or a new one; nil if max connections are
// busy already.
func (p *http1Pool) get(ctx context.Context, now time.Time) (*http1Conn, error) {
	p.mu.Lock()
	for len(p.idle) > 0 {
		c := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if now.Sub(c.usedAt) < http1IdleTimeout && c.alive() {
			p.mu.Unlock()
			return c, nil
		}
		p.open--
		_ = c.raw.Close()
	}
	if p.closed || p.open >= p.max {
		p.mu.Unlock()
		return nil, nil
	}
	p.open++
	p.mu.Unlock()
	c, err := p.connect(ctx)
	if err != nil {
		p.mu.Lock()
		p.open--
		p.mu.Unlock()
		return nil, err
	}
	return c, nil
}

func (p *http1Pool) connect(ctx context.Context) (*http1Conn, error) {
	// As net/http's Transport bounds the handshake (TLSHandshakeTimeout in loadTransports).
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	raw, err := p.dial(ctx, "tcp", p.addr)
	if err != nil {
		return nil, err
	}
	under := newReadBufferedConn(raw)
	tc := tls.Client(under, p.tls)
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = raw.Close()
		return nil, err
	}
	limit := &headerLimit{r: tc, n: -1}
	return &http1Conn{raw: raw, under: under, tls: tc, limit: limit, br: bufio.NewReaderSize(limit, 4<<10),
		bw: bufio.NewWriterSize(tc, 4<<10)}, nil
}

// put gives back a connection whose last answer was read to its end.
func (p *http1Pool) put(c *http1Conn, now time.Time) {
	c.usedAt, c.reused = now, true
	p.mu.Lock()
	if !p.closed {
		p.idle = append(p.idle, c)
		p.mu.Unlock()
		return
	}
	p.open--
	p.mu.Unlock()
	_ = c.raw.Close()
}

// discard closes a connection that cannot be reused.
func (p *http1Pool) discard(c *http1Conn) {
	_ = c.raw.Close()
	p.mu.Lock()
	p.open--
	p.mu.Unlock()
}

// close closes the idle connections and makes the busy ones close when they are given back.
func (p *http1Pool) close() {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	p.open -= len(idle)
	p.mu.Unlock()
	for _, c := range idle {
		_ = c.raw.Close()
	}
}

// errPoolBusy is returned by roundTrip when every connection is busy: the caller sends the
// request another way.
var errPoolBusy = errors.New("every HTTP/1.1 connection to the API server is busy")

// roundTrip sends req, whose body (if any) newBody returns, and returns the answer, whose
// body gives the connection back once read to its end (and closes it if closed before).
// A request that met a kept-alive connection the API server had closed, before any answer
// came, is sent again on a new connection if its method is idempotent, as net/http does.
func (p *http1Pool) roundTrip(req *http.Request, newBody func() io.ReadCloser) (*http.Response, error) {
	for {
		c, err := p.get(req.Context(), time.Now())
		if err != nil {
			return nil, err
		}
		if c == nil {
			return nil, errPoolBusy
		}
		resp, err := p.send(c, req, newBody)
		if err == nil {
			return resp, nil
		}
		if !c.reused || !errors.Is(err, errNoAnswer) || !idempotent(req.Method) || req.Context().Err() != nil {
			return nil, err
		}
	}
}

// errNoAnswer marks a failure before any byte of the answer was read.
var errNoAnswer = errors.New("the connection failed before the answer")

func (p *http1Pool) send(c *http1Conn, req *http.Request, newBody func() io.ReadCloser) (*http.Response, error) {
	// A cancelled request (its client went away, or the drain) aborts a blocked write or read.
	stop := context.AfterFunc(req.Context(), func() { _ = c.raw.Close() })
	fail := func(err error) (*http.Response, error) {
		stop()
		p.discard(c)
		if ctxErr := req.Context().Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, err
	}
	out := req
	if newBody != nil {
		out = req.WithContext(req.Context()) // a shallow copy: a RoundTripper must not modify req
		out.Body = newBody()
	}
	if err := out.Write(c.bw); err != nil {
		return fail(fmt.Errorf("%w: writing the request: %w", errNoAnswer, err))
	}
	if err := c.bw.Flush(); err != nil {
		return fail(fmt.Errorf("%w: writing the request: %w", errNoAnswer, err))
	}
	for {
		if _, err := c.br.Peek(1); err != nil {
			return fail(fmt.Errorf("%w: reading the answer: %w", errNoAnswer, err))
		}
		c.limit.n = http1MaxHeader
		resp, err := http.ReadResponse(c.br, req)
		c.limit.n = -1
		if err != nil {
			return fail(fmt.Errorf("reading the answer: %w", err))
		}
		// An informational answer (100 Continue to a client that sent Expect, 103) comes
		// before the final one; 101 is final, but upgrades are not sent this way.
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			resp.Body = &http1Body{pool: p, c: c, rc: resp.Body, stop: stop, keep: !resp.Close}
			return resp, nil
		}
		_ = resp.Body.Close()
	}
}

// http1Body is the body of an answer read from a pooled connection.
type http1Body struct {
	pool *http1Pool
	c    *http1Conn
	rc   io.ReadCloser
	stop func() bool // ends the cancellation watch; false if it fired
	keep bool        // the API server keeps the connection open
	done atomic.Bool
	eof  bool
}

func (b *http1Body) Read(p []byte) (int, error) {
	if b.eof {
		return 0, io.EOF
	}
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.eof = true
		b.finish(true)
	}
	return n, err
}

// Close gives the connection back if the body was read to its end, else closes it: what is
// left of the answer would have to be read first, and may never end.
func (b *http1Body) Close() error {
	b.finish(b.eof || b.rc == http.NoBody)
	return nil
}

func (b *http1Body) finish(atEOF bool) {
	if !b.done.CompareAndSwap(false, true) {
		return
	}
	if b.stop() && atEOF && b.keep {
		b.pool.put(b.c, time.Now())
		return
	}
	b.pool.discard(b.c)
}

// idempotent reports whether a request with this method may be sent twice.
func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}
