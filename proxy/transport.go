package proxy

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

// maxReplayBody is the largest request body kept in memory so that a request can be sent
// again after a 401. It covers every ordinary object (etcd refuses values over 1.5 MiB);
// larger or chunked bodies are sent once.
const maxReplayBody = 1 << 20

// newTransports returns the transport for ordinary requests (HTTP/2 when the API server
// offers it, reused connections) and the one for upgrades, which must be HTTP/1.1: an
// HTTP/2 stream cannot switch protocols, and net/http sends only WebSocket upgrades over
// HTTP/1.1 by itself, not SPDY ones (https://go.dev/issue/46657).
func newTransports(caFile string) (normal, upgrade *http.Transport, err error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, nil, fmt.Errorf("reading the API server's CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, nil, fmt.Errorf("reading the API server's CA: %s holds no PEM certificate", caFile)
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

	normal = base()
	normal.ForceAttemptHTTP2 = true
	normal.Protocols = new(http.Protocols)
	normal.Protocols.SetHTTP1(true)
	normal.Protocols.SetHTTP2(true)
	// Detect a dead connection (an API server that vanished without closing it) within
	// a minute instead of the kernel's TCP timeout, as client-go does
	// (https://github.com/kubernetes/kubernetes/issues/87615).
	normal.HTTP2 = &http.HTTP2Config{SendPingTimeout: 30 * time.Second, PingTimeout: 15 * time.Second}

	upgrade = base()
	upgrade.Protocols = new(http.Protocols)
	upgrade.Protocols.SetHTTP1(true)
	upgrade.TLSClientConfig.NextProtos = []string{"http/1.1"}
	return normal, upgrade, nil
}

// upstream is the RoundTripper to the API server: it picks the transport, observes latency and
// retries once, with a re-read token, a request the API server answered with 401.
type upstream struct {
	normal, upgrade http.RoundTripper
	tokens          *tokenSource
	metrics         *metrics
}

// RoundTrip sends req, whose Authorization header the caller set from u.tokens.
func (u *upstream) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	if len(req.Header["Upgrade"]) > 0 {
		// A 101 answer hands the connection over, so there is nothing to retry.
		resp, err := u.upgrade.RoundTrip(req)
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
	resp, err := u.normal.RoundTrip(req)
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
	resp, err = u.normal.RoundTrip(retry)
	u.metrics.upstream(time.Since(start))
	return resp, err
}
