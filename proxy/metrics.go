package proxy

import (
	"bufio"
	"io"
	"math"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/api-access-injector/api-access-injector/internal/version"
)

// The proxy writes the Prometheus text exposition format itself
// (https://prometheus.io/docs/instrumenting/exposition_formats/): four metric families do not
// justify a client library in a sidecar that every injected pod runs.

// methodLabels are the method label values; any other method counts as "other", so that a
// client cannot grow the series without bound.
var methodLabels = [...]string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "other"}

func methodIndex(m string) int {
	switch m {
	case http.MethodGet:
		return 0
	case http.MethodHead:
		return 1
	case http.MethodPost:
		return 2
	case http.MethodPut:
		return 3
	case http.MethodPatch:
		return 4
	case http.MethodDelete:
		return 5
	case http.MethodOptions:
		return 6
	case http.MethodConnect:
		return 7
	}
	return len(methodLabels) - 1
}

// minCode and maxCode bound the status codes counted one by one; others are counted as 0.
const (
	minCode = 100
	maxCode = 599
)

// latencyBuckets are the upper bounds, in seconds, of the upstream latency histogram: from
// well under a millisecond (a cached read on a nearby API server) to tens of seconds.
var latencyBuckets = [...]float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// metrics holds the proxy's counters; every update is a lock-free atomic add.
type metrics struct {
	requests [len(methodLabels)][maxCode - minCode + 2]atomic.Uint64 // last index: other codes

	latencyCounts [len(latencyBuckets) + 1]atomic.Uint64 // per bucket, last one +Inf
	latencySumNs  atomic.Uint64

	reloadsChange       atomic.Uint64
	reloadsUnauthorized atomic.Uint64

	tokens atomic.Pointer[tokenSource] // for the token gauges, set once the source exists

	access *accounting // nil only in benchmarks that measure the proxy without it // the per-resource request counts, shared with the access record
}

// request counts a response by code and method.
func (m *metrics) request(method string, code int) {
	i := len(m.requests[0]) - 1
	if code >= minCode && code <= maxCode {
		i = code - minCode
	}
	m.requests[methodIndex(method)][i].Add(1)
}

// upstream observes the time the API server took to answer with headers (the time to the
// first byte: the length of a watch says nothing about the API server).
func (m *metrics) upstream(d time.Duration) {
	s := d.Seconds()
	i := 0
	for i < len(latencyBuckets) && s > latencyBuckets[i] {
		i++
	}
	m.latencyCounts[i].Add(1)
	m.latencySumNs.Add(uint64(max(d, 0)))
}

func (m *metrics) tokenReloaded(trigger string) {
	if trigger == triggerUnauthorized {
		m.reloadsUnauthorized.Add(1)
		return
	}
	m.reloadsChange.Add(1)
}

// ServeHTTP writes the exposition.
func (m *metrics) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	bw := bufio.NewWriter(w)
	m.write(bw, time.Now())
	_ = bw.Flush()
}

func (m *metrics) write(w *bufio.Writer, now time.Time) {
	family(w, "api_proxy_requests_total", "counter",
		"Requests answered by the proxy, by HTTP status code and method; the proxy's own rejections count as 403, unreachable API servers as 502.")
	for c := range m.requests[0] {
		code := "0"
		if c < len(m.requests[0])-1 {
			code = strconv.Itoa(c + minCode)
		}
		for mi := range methodLabels {
			if n := m.requests[mi][c].Load(); n > 0 {
				w.WriteString(`api_proxy_requests_total{code="` + code + `",method="` + methodLabels[mi] + `"} `)
				writeUint(w, n)
			}
		}
	}

	if m.access != nil {
		family(w, "api_proxy_api_requests_total", "counter",
			"API requests by RBAC verb, resource (group/resource[/subresource], core for the core group, or the path of a "+
				"non-resource request; other beyond "+strconv.Itoa(maxSeries)+" label sets) and outcome: allowed, forbidden and "+
				"unauthorized are the API server's answers, refused the proxy's own refusals, failed an unreachable API server.")
		keys, counts := m.access.seriesSnapshot()
		for i, k := range keys {
			w.WriteString(`api_proxy_api_requests_total{outcome="` + k.outcome.String() + `",resource="`)
			writeLabelValue(w, k.resource)
			w.WriteString(`",verb="` + k.verb + `"} `)
			writeUint(w, counts[i])
		}
	}

	family(w, "api_proxy_build_info", "gauge", "Always 1; its labels are the version of the api-proxy binary and the Go version that built it, as the webhook's apiaccess_build_info.")
	w.WriteString(`api_proxy_build_info{goversion="`)
	writeLabelValue(w, runtime.Version())
	w.WriteString(`",version="`)
	writeLabelValue(w, version.Get())
	w.WriteString(`"} 1` + "\n")

	const hist = "api_proxy_upstream_request_duration_seconds"
	family(w, hist, "histogram", "Time from sending a request to the API server to receiving its response headers.")
	var cum uint64
	for i := range m.latencyCounts {
		cum += m.latencyCounts[i].Load()
		le := "+Inf"
		if i < len(latencyBuckets) {
			le = strconv.FormatFloat(latencyBuckets[i], 'g', -1, 64)
		}
		w.WriteString(hist + `_bucket{le="` + le + `"} `)
		writeUint(w, cum)
	}
	w.WriteString(hist + "_sum ")
	writeFloat(w, float64(m.latencySumNs.Load())/1e9)
	w.WriteString(hist + "_count ")
	writeUint(w, cum)

	family(w, "api_proxy_token_reloads_total", "counter",
		"Service-account token reloads that changed the token, by trigger: a change of the file, or a 401 from the API server.")
	w.WriteString(`api_proxy_token_reloads_total{trigger="` + triggerChange + `"} `)
	writeUint(w, m.reloadsChange.Load())
	w.WriteString(`api_proxy_token_reloads_total{trigger="` + triggerUnauthorized + `"} `)
	writeUint(w, m.reloadsUnauthorized.Load())

	ts := m.tokens.Load()
	if ts == nil {
		return
	}
	t := ts.current()
	issued := t.issuedAt
	if issued.IsZero() {
		issued = t.file.ModTime()
	}
	family(w, "api_proxy_token_age_seconds", "gauge",
		"Age of the service-account token in use: time since its iat claim, or since its file was written when it has none.")
	w.WriteString("api_proxy_token_age_seconds ")
	writeFloat(w, now.Sub(issued).Seconds())
	if !t.expiresAt.IsZero() {
		family(w, "api_proxy_token_expiration_timestamp_seconds", "gauge",
			"Expiry of the service-account token in use (its exp claim), in seconds since the Unix epoch.")
		w.WriteString("api_proxy_token_expiration_timestamp_seconds ")
		writeFloat(w, float64(t.expiresAt.Unix()))
	}
}

// writeLabelValue writes a label value escaped as the exposition format wants: backslash,
// double quote and line feed.
func writeLabelValue(w *bufio.Writer, v string) {
	v = strings.ToValidUTF8(v, "\uFFFD") // a path may decode to bytes that are not UTF-8
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case '\\':
			_, _ = w.WriteString(`\\`)
		case '"':
			_, _ = w.WriteString(`\"`)
		case '\n':
			_, _ = w.WriteString(`\n`)
		default:
			_ = w.WriteByte(c)
		}
	}
}

func family(w io.StringWriter, name, typ, help string) {
	_, _ = w.WriteString("# HELP " + name + " " + help + "\n# TYPE " + name + " " + typ + "\n")
}

func writeUint(w *bufio.Writer, n uint64) {
	var b [24]byte
	_, _ = w.Write(strconv.AppendUint(b[:0], n, 10))
	_ = w.WriteByte('\n')
}

func writeFloat(w *bufio.Writer, f float64) {
	var b [32]byte
	switch {
	case math.IsInf(f, 1):
		_, _ = w.WriteString("+Inf")
	default:
		_, _ = w.Write(strconv.AppendFloat(b[:0], f, 'g', -1, 64))
	}
	_ = w.WriteByte('\n')
}
