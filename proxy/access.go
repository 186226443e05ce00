package proxy

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/api-access-injector/api-access-injector/internal/accessrecord"
)

// The access record: what the app did through the sidecar, as counters of request tuples
// (verb, API group, resource, subresource, namespace or non-resource URL, outcome). It holds
// no object name, no body, no header and no token. The same accounting feeds the metrics
// (api_proxy_api_requests_total) and the explanation logged for each forbidden tuple.

// outcomes indexes the outcomes, in the order the key encoding uses.
var outcomes = [...]accessrecord.Outcome{accessrecord.Allowed, accessrecord.Forbidden, accessrecord.Unauthorized, accessrecord.Refused, accessrecord.Failed}

type outcome uint8

const (
	outcomeAllowed outcome = iota
	outcomeForbidden
	outcomeUnauthorized
	outcomeRefused
	outcomeFailed
)

func (o outcome) String() string { return string(outcomes[o]) }

// upstreamOutcome is the outcome of an answer from the API server.
func upstreamOutcome(code int) outcome {
	switch code {
	case 401:
		return outcomeUnauthorized
	case 403:
		return outcomeForbidden
	}
	return outcomeAllowed
}

// AccessRecordPath is where the API listener serves the access record, to clients on a
// loopback address only. No Kubernetes API server serves a path that starts with /.apiaccess/,
// and the proxy forwards none: every path under AccessRecordPrefix is answered by the proxy.
const (
	AccessRecordPrefix = "/.apiaccess/"
	AccessRecordPath   = AccessRecordPrefix + "record"
)

// MaxAccessTuples bounds the distinct tuples the access record keeps; requests of further
// tuples are counted in accessrecord.Record.OtherCount, and Truncated says so.
const MaxAccessTuples = 10000

// maxTupleKey bounds the encoded length of one tuple. Real names are short (a namespace, a
// resource or a path segment is at most 253 bytes and rarely over 63); a request whose tuple
// is longer is counted as other, so that a few huge paths cannot use up the memory bound.
const maxTupleKey = 512

// maxSeries bounds the label sets of api_proxy_api_requests_total; beyond it the resource
// label is "other".
const maxSeries = 500

// explainInterval is how often the explanation of one forbidden tuple is logged again.
const explainInterval = time.Minute

// tupleCount is the counter of one tuple.
type tupleCount struct {
	n         atomic.Uint64
	lastSeen  atomic.Int64 // unix nanoseconds
	explained atomic.Int64 // unix nanoseconds of the last explanation logged
	series    *atomic.Uint64
}

// seriesKey is a label set of api_proxy_api_requests_total.
type seriesKey struct {
	verb, resource string
	outcome        outcome
}

// accounting counts requests by tuple. A request of a known tuple costs a read lock, a map
// lookup with a key built on the stack, and three atomic operations.
type accounting struct {
	since time.Time
	max   int

	mu     sync.RWMutex
	tuples map[string]*tupleCount
	series map[seriesKey]*atomic.Uint64 // under mu

	other          atomic.Uint64
	otherLastSeen  atomic.Int64
	otherExplained atomic.Int64
}

func newAccounting(now time.Time) *accounting {
	return &accounting{
		since:  now,
		max:    MaxAccessTuples,
		tuples: make(map[string]*tupleCount),
		series: make(map[seriesKey]*atomic.Uint64),
	}
}

// record counts one request and returns its tuple's counter, nil if it was counted as other.
func (a *accounting) record(info *requestInfo, o outcome, now time.Time) *tupleCount {
	var buf [maxTupleKey]byte
	key, ok := appendTupleKey(buf[:0], info, o)
	ns := now.UnixNano()
	if ok {
		a.mu.RLock()
		t := a.tuples[string(key)]
		a.mu.RUnlock()
		if t == nil {
			t = a.add(key, info, o)
		}
		if t != nil {
			t.n.Add(1)
			t.lastSeen.Store(ns)
			t.series.Add(1)
			return t
		}
	}
	a.other.Add(1)
	a.otherLastSeen.Store(ns)
	a.mu.Lock()
	a.seriesLocked(info, o).Add(1)
	a.mu.Unlock()
	return nil
}

// add creates the counter of a new tuple, or returns nil when the record is full.
func (a *accounting) add(key []byte, info *requestInfo, o outcome) *tupleCount {
	a.mu.Lock()
	defer a.mu.Unlock()
	if t := a.tuples[string(key)]; t != nil {
		return t
	}
	if len(a.tuples) >= a.max {
		return nil
	}
	t := &tupleCount{series: a.seriesLocked(info, o)}
	a.tuples[string(key)] = t
	return t
}

// seriesLocked returns the metric series of a request; a.mu must be held for writing.
func (a *accounting) seriesLocked(info *requestInfo, o outcome) *atomic.Uint64 {
	k := seriesKey{verb: verbLabel(info), resource: resourceLabel(info), outcome: o}
	if c := a.series[k]; c != nil {
		return c
	}
	if len(a.series) >= maxSeries || len(k.resource) > maxTupleKey {
		k.resource = "other"
		if c := a.series[k]; c != nil {
			return c
		}
	}
	k.resource = strings.Clone(k.resource)
	c := new(atomic.Uint64)
	a.series[k] = c
	return c
}

// verbLabel is the verb label of the metrics: the RBAC verbs and the usual lower-case
// methods of non-resource requests, "other" for anything else.
func verbLabel(info *requestInfo) string {
	switch info.verb {
	case verbGet, verbList, verbWatch, verbCreate, verbUpdate, verbPatch, verbDelete, verbDeleteCollection, verbProxy,
		"head", "post", "put", "options":
		return info.verb
	}
	return "other"
}

// resourceLabel is the resource label of the metrics: group/resource[/subresource], with
// "core" for the core group, or the path of a non-resource request.
func resourceLabel(info *requestInfo) string {
	if !info.resource {
		return info.path
	}
	g := info.apiGroup
	if g == "" {
		g = "core"
	}
	if info.subresource != "" {
		return g + "/" + info.resourceName + "/" + info.subresource
	}
	return g + "/" + info.resourceName
}

// appendTupleKey encodes the tuple: the outcome, then each field with its length, so that no
// byte in a name can make two tuples collide. ok is false if it does not fit in maxTupleKey.
func appendTupleKey(b []byte, info *requestInfo, o outcome) ([]byte, bool) {
	n := 2 + len(info.verb) + len(info.apiGroup) + len(info.resourceName) + len(info.subresource) +
		len(info.namespace) + len(info.path) + 6*binary.MaxVarintLen16
	if n > maxTupleKey {
		return b, false
	}
	res := byte(0)
	if info.resource {
		res = 1
	}
	b = append(b, byte(o), res)
	for _, f := range [...]string{info.verb, info.apiGroup, info.resourceName, info.subresource, info.namespace, info.path} {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	return b, true
}

// decodeTupleKey is the inverse of appendTupleKey.
func decodeTupleKey(k string) (accessrecord.Request, bool) {
	if len(k) < 2 || int(k[0]) >= len(outcomes) {
		return accessrecord.Request{}, false
	}
	r := accessrecord.Request{Outcome: outcomes[k[0]]}
	rest := k[2:]
	var fields [6]string
	for i := range fields {
		n, w := binary.Uvarint([]byte(rest[:min(len(rest), binary.MaxVarintLen64)]))
		if w <= 0 || uint64(len(rest)-w) < n { //nolint:gosec // 0 < w <= len(rest): no overflow
			return accessrecord.Request{}, false
		}
		fields[i], rest = rest[w:w+int(n)], rest[w+int(n):] //nolint:gosec // n <= len(rest)-w, checked above
	}
	r.Verb, r.APIGroup, r.Resource, r.Subresource, r.Namespace, r.NonResourceURL =
		fields[0], fields[1], fields[2], fields[3], fields[4], fields[5]
	return r, true
}

// snapshot returns the recorded tuples in a stable order, and the count of the others.
func (a *accounting) snapshot() ([]accessrecord.Request, uint64) {
	a.mu.RLock()
	reqs := make([]accessrecord.Request, 0, len(a.tuples))
	for k, t := range a.tuples {
		r, ok := decodeTupleKey(k)
		if !ok {
			continue // cannot happen: every key was encoded by appendTupleKey
		}
		r.Count = int64(t.n.Load()) //nolint:gosec // a request count, far below 2^63
		r.LastSeen = time.Unix(0, t.lastSeen.Load()).UTC().Truncate(time.Second)
		reqs = append(reqs, r)
	}
	a.mu.RUnlock()
	slices.SortFunc(reqs, func(x, y accessrecord.Request) int {
		for _, c := range [...][2]string{
			{x.Namespace, y.Namespace}, {x.APIGroup, y.APIGroup}, {x.Resource, y.Resource},
			{x.Subresource, y.Subresource}, {x.NonResourceURL, y.NonResourceURL}, {x.Verb, y.Verb}, {string(x.Outcome), string(y.Outcome)},
		} {
			if n := strings.Compare(c[0], c[1]); n != 0 {
				return n
			}
		}
		return 0
	})
	return reqs, a.other.Load()
}

// seriesSnapshot returns the metric series and their counts, ordered by labels.
func (a *accounting) seriesSnapshot() ([]seriesKey, []uint64) {
	a.mu.RLock()
	keys := make([]seriesKey, 0, len(a.series))
	for k := range a.series {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(x, y seriesKey) int {
		if n := strings.Compare(x.resource, y.resource); n != 0 {
			return n
		}
		if n := strings.Compare(x.verb, y.verb); n != 0 {
			return n
		}
		return int(x.outcome) - int(y.outcome)
	})
	counts := make([]uint64, len(keys))
	for i, k := range keys {
		counts[i] = a.series[k].Load()
	}
	a.mu.RUnlock()
	return keys, counts
}

// shouldExplain reports whether the explanation of a forbidden tuple is due: once per
// explainInterval per tuple, and once per interval for all tuples counted as other together.
func (a *accounting) shouldExplain(t *tupleCount, now time.Time) bool {
	last := &a.otherExplained
	if t != nil {
		last = &t.explained
	}
	prev := last.Load()
	ns := now.UnixNano()
	return (prev == 0 || ns-prev >= int64(explainInterval)) && last.CompareAndSwap(prev, ns)
}

// explainForbidden logs the RBAC rule that would have allowed a request the API server
// answered with 403, so that `kubectl logs -c api-proxy` tells the developer what to grant.
func explainForbidden(log *slog.Logger, info *requestInfo, serviceAccount string) {
	attrs := []any{"serviceAccount", serviceAccount, "verb", info.verb}
	if !info.resource {
		attrs = append(attrs, "roleKind", "ClusterRole",
			slog.Group("rule", "nonResourceURLs", []string{info.path}, "verbs", []string{info.verb}))
		log.Info("the API server forbade a request; a ClusterRole with this rule, bound to the service account, would allow it", attrs...)
		return
	}
	res := info.resourceName
	if info.subresource != "" {
		res += "/" + info.subresource
	}
	rule := slog.Group("rule", "apiGroups", []string{info.apiGroup}, "resources", []string{res}, "verbs", []string{info.verb})
	if info.namespace == "" {
		attrs = append(attrs, "roleKind", "ClusterRole", "clusterScoped", true, rule)
		log.Info("the API server forbade a request; a ClusterRole with this rule, bound with a ClusterRoleBinding, would allow it", attrs...)
		return
	}
	attrs = append(attrs, "roleKind", "Role", "namespace", info.namespace, rule)
	log.Info("the API server forbade a request; a Role in the namespace with this rule, bound to the service account, would allow it", attrs...)
}

// tokenIdentity returns the namespace, service account and pod named by the claims of a
// service-account token (unverified: the API server verifies it; they only label the
// record). Empty strings when the token is not a service-account JWT.
func tokenIdentity(tok string) (namespace, serviceAccount, pod string) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return
	}
	var claims struct {
		Sub  string `json:"sub"`
		Kube struct {
			Namespace      string `json:"namespace"`
			ServiceAccount struct {
				Name string `json:"name"`
			} `json:"serviceaccount"`
			Pod struct {
				Name string `json:"name"`
			} `json:"pod"`
		} `json:"kubernetes.io"`
	}
	if json.Unmarshal(payload, &claims) != nil {
		return
	}
	namespace, serviceAccount, pod = claims.Kube.Namespace, claims.Kube.ServiceAccount.Name, claims.Kube.Pod.Name
	// Older tokens carry only the subject system:serviceaccount:<namespace>:<name>.
	if rest, ok := strings.CutPrefix(claims.Sub, "system:serviceaccount:"); ok && serviceAccount == "" {
		if ns, name, ok := strings.Cut(rest, ":"); ok {
			namespace, serviceAccount = ns, name
		}
	}
	return
}
