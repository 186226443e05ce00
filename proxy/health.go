package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// readyCacheTTL bounds how often /readyz asks the API server: probes of every replica of
// every injected pod must not add up to load on it. A failure is kept for less time, so that
// a starting pod becomes ready soon after the API server answers.
const (
	readyCacheTTL    = 5 * time.Second
	notReadyCacheTTL = time.Second
)

// readyTimeout bounds one readiness round trip to the API server.
const readyTimeout = 5 * time.Second

// HealthHandler serves /healthz (the process is alive), /readyz (the credentials are readable
// and the API server accepts them) and /metrics. It never serves the API.
func (s *Server) HealthHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeText(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := s.ready.check(r.Context()); err != nil {
			writeText(w, http.StatusServiceUnavailable, "not ready: "+err.Error())
			return
		}
		writeText(w, http.StatusOK, "ok")
	})
	mux.Handle("GET /metrics", s.metrics)
	return mux
}

func writeText(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, msg+"\n")
}

// readiness checks, at most every readyCacheTTL, that the token is readable, not expired, and
// accepted by the API server.
type readiness struct {
	up     *upstream
	tokens *tokenSource
	target *url.URL

	mu      sync.Mutex
	checked time.Time
	result  error
}

func (rd *readiness) check(ctx context.Context) error {
	rd.mu.Lock()
	defer rd.mu.Unlock()
	ttl := readyCacheTTL
	if rd.result != nil {
		ttl = notReadyCacheTTL
	}
	if !rd.checked.IsZero() && time.Since(rd.checked) < ttl {
		return rd.result
	}
	rd.result = rd.probe(ctx, time.Now())
	rd.checked = time.Now()
	return rd.result
}

func (rd *readiness) probe(ctx context.Context, now time.Time) error {
	auth := rd.tokens.authorization()
	if err := rd.tokens.err(); err != nil {
		return err
	}
	if exp := rd.tokens.current().expiresAt; !exp.IsZero() && now.After(exp) {
		return fmt.Errorf("the service-account token expired at %s and no newer one was written", exp.UTC().Format(time.RFC3339))
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), readyTimeout)
	defer cancel()
	// /version is readable by every authenticated identity (the system:public-info-viewer
	// role), and a token the API server rejects gets 401 even there: a cheap proof that the
	// API server is reachable and accepts the credentials.
	u := *rd.target
	u.Path = strings.TrimRight(u.Path, "/") + "/version"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("building the readiness request: %w", err)
	}
	req.Header["Authorization"] = auth
	resp, err := rd.up.RoundTrip(req)
	if err != nil {
		return fmt.Errorf("reaching the API server: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close() // only the status matters
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return errors.New("the API server rejects the service-account token (401)")
	case resp.StatusCode >= 500:
		return fmt.Errorf("the API server answered %s", resp.Status)
	}
	// Any other answer, 403 included, comes from an API server that authenticated us.
	return nil
}
