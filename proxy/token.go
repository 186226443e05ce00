package proxy

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// tokenCheckInterval bounds how often a request stats the token file. The kubelet rotates a
// projected token at 80% of its lifetime while the old one stays valid, so a second of delay
// costs nothing; a revoked token is caught by the re-read on 401 anyway.
const tokenCheckInterval = time.Second

// Triggers of a token reload, the label of the reloads counter.
const (
	triggerChange       = "change"
	triggerUnauthorized = "unauthorized"
)

// tokenSource holds the bearer token read from a file and re-reads it when it changes.
//
// The kubelet updates a projected volume by writing a new timestamped directory and swapping
// the ..data symlink (https://github.com/kubernetes/kubernetes/blob/master/pkg/volume/util/atomic_writer.go),
// so the token file is followed through its symlinks and compared by identity, size and
// modification time: the swap changes the identity even when the size and time do not.
type tokenSource struct {
	path     string
	interval time.Duration
	log      *slog.Logger
	metrics  *metrics

	cur       atomic.Pointer[token]
	nextCheck atomic.Int64 // unix nanoseconds of the next stat

	mu      sync.Mutex // serializes reloads
	lastErr error      // of the last reload attempt, under mu
}

// token is one loaded token. It is immutable once published.
type token struct {
	// authorization is the Authorization header value, shared by every request: nothing
	// writes into a request's header values.
	authorization []string
	file          os.FileInfo
	issuedAt      time.Time // from the JWT, zero when absent
	expiresAt     time.Time // from the JWT, zero when absent
}

// newTokenSource reads the token once; an unreadable token is an error.
func newTokenSource(path string, log *slog.Logger, m *metrics) (*tokenSource, error) {
	ts := &tokenSource{path: path, interval: tokenCheckInterval, log: log, metrics: m}
	t, err := ts.read()
	if err != nil {
		return nil, err
	}
	ts.cur.Store(t)
	ts.nextCheck.Store(time.Now().Add(ts.interval).UnixNano())
	return ts, nil
}

// authorization returns the Authorization header value to send, re-reading the file first if
// it changed since the last check (at most once per interval).
func (ts *tokenSource) authorization() []string {
	now := time.Now().UnixNano()
	if next := ts.nextCheck.Load(); now >= next && ts.nextCheck.CompareAndSwap(next, now+int64(ts.interval)) {
		ts.reloadIfChanged()
	}
	return ts.cur.Load().authorization
}

// current returns the token in use.
func (ts *tokenSource) current() *token { return ts.cur.Load() }

// reloadIfChanged re-reads the token if the file is no longer the one loaded.
func (ts *tokenSource) reloadIfChanged() {
	fi, err := os.Stat(ts.path)
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if err != nil {
		ts.fail(fmt.Errorf("checking token file: %w", err))
		return
	}
	old := ts.cur.Load()
	if os.SameFile(fi, old.file) && fi.Size() == old.file.Size() && fi.ModTime().Equal(old.file.ModTime()) {
		ts.lastErr = nil
		return
	}
	ts.reloadLocked(triggerChange)
}

// reloadAfterUnauthorized re-reads the token after the API server answered 401 to a request
// sent with used. It returns the header to retry with, or nil if the token is unchanged and a
// retry would be pointless.
func (ts *tokenSource) reloadAfterUnauthorized(used []string) []string {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if cur := ts.cur.Load(); !sameHeader(cur.authorization, used) {
		return cur.authorization // another request reloaded it meanwhile
	}
	if t := ts.reloadLocked(triggerUnauthorized); t != nil {
		return t.authorization
	}
	return nil
}

// reloadLocked reads the file and publishes the token if it differs; it returns the new token
// or nil. ts.mu must be held.
func (ts *tokenSource) reloadLocked(trigger string) *token {
	t, err := ts.read()
	if err != nil {
		ts.fail(err)
		return nil
	}
	ts.lastErr = nil
	old := ts.cur.Load()
	if sameHeader(t.authorization, old.authorization) {
		ts.cur.Store(t) // same token, newer file identity: no need to stat-compare it again
		return nil
	}
	ts.cur.Store(t)
	ts.metrics.tokenReloaded(trigger)
	ts.log.Info("service-account token reloaded", "trigger", trigger,
		"issuedAt", t.issuedAt, "expiresAt", t.expiresAt)
	return t
}

// fail records a failed reload; the token in use stays. ts.mu must be held.
func (ts *tokenSource) fail(err error) {
	if ts.lastErr == nil || ts.lastErr.Error() != err.Error() {
		ts.log.Error("keeping the current service-account token", "error", err)
	}
	ts.lastErr = err
}

// err returns the error of the last reload attempt, nil if it succeeded.
func (ts *tokenSource) err() error {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.lastErr
}

// read reads and checks the token file. Errors never quote the token.
func (ts *tokenSource) read() (*token, error) {
	f, err := os.Open(ts.path)
	if err != nil {
		return nil, fmt.Errorf("reading token: %w", err)
	}
	defer func() { _ = f.Close() }() // only read
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("reading token: %w", err)
	}
	const maxTokenSize = 1 << 20
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(io.LimitReader(f, maxTokenSize+1)); err != nil {
		return nil, fmt.Errorf("reading token: %w", err)
	}
	if buf.Len() > maxTokenSize {
		return nil, fmt.Errorf("reading token %s: larger than %d bytes", ts.path, maxTokenSize)
	}
	tok := strings.TrimSpace(buf.String())
	if tok == "" {
		// A writer that is not the kubelet may have truncated the file and not yet written it.
		return nil, fmt.Errorf("reading token %s: the file is empty", ts.path)
	}
	for i := 0; i < len(tok); i++ {
		if c := tok[i]; c <= ' ' || c >= 0x7f {
			return nil, fmt.Errorf("reading token %s: byte %d is not a printable ASCII character", ts.path, i)
		}
	}
	t := &token{authorization: []string{"Bearer " + tok}, file: fi}
	t.issuedAt, t.expiresAt = jwtTimes(tok)
	return t, nil
}

// jwtTimes returns the iat and exp claims of a JWT, unverified (the API server verifies it):
// they only feed metrics and logs. Zero times when absent or not a JWT.
func jwtTimes(tok string) (issuedAt, expiresAt time.Time) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return
	}
	var claims struct {
		Iat json.Number `json:"iat"`
		Exp json.Number `json:"exp"`
	}
	if json.Unmarshal(payload, &claims) != nil {
		return
	}
	if v, err := claims.Iat.Int64(); err == nil {
		issuedAt = time.Unix(v, 0)
	}
	if v, err := claims.Exp.Int64(); err == nil {
		expiresAt = time.Unix(v, 0)
	}
	return
}

func sameHeader(a, b []string) bool {
	return len(a) == 1 && len(b) == 1 && a[0] == b[0]
}
