package proxy

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/api-access-injector/api-access-injector/internal/accessrecord"
)

// exchange is the accounting state of one API request, carried in its context from ServeHTTP
// to the hook that learns its outcome (reject, modifyResponse, upstreamError).
type exchange struct {
	info  requestInfo
	start time.Time
	// code and out are set once the outcome is known; recorded is false until then (a
	// request whose client went away before any answer has none).
	code     int
	out      outcome
	recorded bool
}

type exchangeKey struct{}

// withExchange returns r with a new exchange for it in its context.
func withExchange(r *http.Request, urlPath string, now time.Time) (*http.Request, *exchange) {
	x := &exchange{start: now}
	x.info, _ = parseRequestInfo(r.Method, urlPath, r.URL.RawQuery)
	return r.WithContext(context.WithValue(r.Context(), exchangeKey{}, x)), x
}

func exchangeOf(ctx context.Context) *exchange {
	x, _ := ctx.Value(exchangeKey{}).(*exchange)
	return x
}

// account records the outcome of a request, once, and explains a 403 of the API server.
func (s *Server) account(ctx context.Context, code int, o outcome) {
	x := exchangeOf(ctx)
	if x == nil || x.recorded { // nil: not an API request (CONNECT), or accounting off (benchmarks)
		return
	}
	x.code, x.out, x.recorded = code, o, true
	now := time.Now()
	t := s.access.record(&x.info, o, now)
	if o == outcomeForbidden && s.access.shouldExplain(t, now) {
		_, sa, _ := tokenIdentity(s.bearer())
		explainForbidden(s.log, &x.info, sa)
	}
}

// logAccess writes the access-log line of a finished request (--access-log): the tuple, the
// status code, the outcome, the latency to the end of the answer and the user agent. It holds
// no header but User-Agent, no query, no body and no token.
func (s *Server) logAccess(r *http.Request, x *exchange) {
	out := "canceled" // the client went away before any answer
	if x.recorded {
		out = x.out.String()
	}
	i := &x.info
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "request",
		slog.String("verb", i.verb),
		slog.String("apiGroup", i.apiGroup),
		slog.String("resource", i.resourceName),
		slog.String("subresource", i.subresource),
		slog.String("namespace", i.namespace),
		slog.String("nonResourceURL", i.path),
		slog.Int("code", x.code),
		slog.String("outcome", out),
		slog.Float64("latencySeconds", time.Since(x.start).Seconds()),
		slog.String("userAgent", r.UserAgent()),
	)
}

// bearer returns the token in use, for its claims.
func (s *Server) bearer() string {
	a := s.tokens.current().authorization
	if len(a) == 0 {
		return ""
	}
	return strings.TrimPrefix(a[0], "Bearer ")
}

// serveAccessRecord answers a request under AccessRecordPrefix. The record is served only
// to a connection whose local address is a loopback address, so that an --address of
// 0.0.0.0 never exposes it to the network; nothing under the prefix is ever forwarded.
// urlPath is the request's path, after --api-prefix.
func (s *Server) serveAccessRecord(w http.ResponseWriter, r *http.Request, urlPath string) {
	switch {
	case s.access == nil:
		writeStatus(w, http.StatusNotFound, reasonNotFound, "the access record is off")
	case !localLoopback(r):
		writeStatus(w, http.StatusNotFound, reasonNotFound, "the access record is served on loopback addresses only")
	case urlPath != AccessRecordPath:
		writeStatus(w, http.StatusNotFound, reasonNotFound, "the proxy serves only "+AccessRecordPath+" under "+AccessRecordPrefix)
	case r.Method != http.MethodGet && r.Method != http.MethodHead:
		w.Header().Set("Allow", "GET, HEAD")
		writeStatus(w, http.StatusMethodNotAllowed, "MethodNotAllowed", AccessRecordPath+" takes GET")
	case !s.cfg.DisableFilter && !s.filter.hostAccepted(r.Host):
		// As for the API: a page in a browser on the node must not read it by DNS rebinding.
		writeStatus(w, http.StatusForbidden, reasonForbidden, "host "+quote(r.Host)+" matches no --accept-hosts pattern")
	default:
		body, err := json.MarshalIndent(s.AccessRecord(), "", "  ")
		if err != nil { // cannot happen: strings, numbers and times
			writeStatus(w, http.StatusInternalServerError, "InternalError", err.Error())
			return
		}
		body = append(body, '\n')
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Content-Length", strconv.Itoa(len(body)))
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			_, _ = w.Write(body)
		}
	}
}

// AccessRecord returns what the proxy recorded so far.
func (s *Server) AccessRecord() accessrecord.Record {
	reqs, other := s.access.snapshot()
	ns, sa, pod := tokenIdentity(s.bearer())
	if n := readNamespace(s.cfg.ServiceAccountDir); n != "" {
		ns = n
	}
	return accessrecord.Record{
		APIVersion:     accessrecord.APIVersion,
		Kind:           accessrecord.Kind,
		Namespace:      ns,
		ServiceAccount: sa,
		Pod:            pod,
		Since:          s.access.since.UTC().Truncate(time.Second),
		Requests:       reqs,
		OtherCount:     int64(other), //nolint:gosec // a request count, far below 2^63
		Truncated:      other > 0,
	}
}

// localLoopback reports whether the request came in on a loopback address of the proxy.
func localLoopback(r *http.Request) bool {
	a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return false
	}
	tcp, ok := a.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}
