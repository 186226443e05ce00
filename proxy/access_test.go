package proxy

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/api-access-injector/api-access-injector/internal/accessrecord"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/api-access-injector/api-access-injector/test/framework/syncbuffer"
)

// TestAccessRecordNeverForwarded checks that nothing under AccessRecordPrefix reaches the
// upstream, whatever its spelling, method or --api-prefix, and that the record is served.
func TestAccessRecordNeverForwarded(t *testing.T) {
	var mu sync.Mutex
	var forwarded []string
	counting := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		forwarded = append(forwarded, r.Method+" "+r.URL.Path)
		mu.Unlock()
		io.WriteString(w, `{"kind":"PodList","apiVersion":"v1","items":[]}`)
	})
	root := newFixture(t, counting, nil)
	prefixed := newFixture(t, counting, func(c *Config) { c.APIPrefix = "/k8s/" })
	for _, tt := range []struct {
		f            *fixture
		method, path string
		want         int
	}{
		{root, "GET", AccessRecordPath, 200},
		{root, "HEAD", AccessRecordPath, 200},
		{root, "POST", AccessRecordPath, 405},
		{root, "GET", "/.apiaccess/", 404},
		{root, "GET", "/.apiaccess/record/x", 404},
		{root, "GET", "/%2Eapiaccess/record", 200},
		{root, "GET", "//.apiaccess/record", 200},           // redirected to the clean path, then served
		{root, "GET", "/api/../.apiaccess/record", 200},     // the same
		{prefixed, "GET", AccessRecordPath, 200},            // outside the prefix, still the proxy's
		{prefixed, "GET", "/k8s/.apiaccess/record", 200},    // stripped to the reserved path
		{prefixed, "DELETE", "/k8s/.apiaccess/record", 405}, // and never forwarded
	} {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			req := newRequest(t, tt.method, tt.f.front.URL+tt.path, nil)
			resp, body := tt.f.do(req)
			if resp.StatusCode != tt.want {
				t.Errorf("status %d %s, want %d", resp.StatusCode, body, tt.want)
			}
			if tt.want == 200 && tt.method == "GET" {
				var rec accessrecord.Record
				if err := json.Unmarshal([]byte(body), &rec); err != nil || rec.Kind != accessrecord.Kind || rec.APIVersion != accessrecord.APIVersion {
					t.Errorf("not an access record (%v): %s", err, body)
				}
			}
		})
	}
	// A request that does go upstream, to show the upstream counts what reaches it.
	root.get("/api/v1/pods")
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff([]string{"GET /api/v1/pods"}, forwarded); diff != "" {
		t.Errorf("requests that reached the upstream (-want +got):\n%s", diff)
	}
	// Nor are the record's own requests in the record.
	rec := root.srv.AccessRecord()
	if len(rec.Requests) != 1 || rec.Requests[0].Resource != "pods" {
		t.Errorf("record %+v, want the one pods list", rec.Requests)
	}
}

// TestAccessRecordLoopbackOnly serves the API on all addresses, as --address=0.0.0.0 does,
// and reads the record through a loopback and a non-loopback address of this machine.
func TestAccessRecordLoopbackOnly(t *testing.T) {
	ip := nonLoopbackIPv4(t)
	f := newFixture(t, http.NotFoundHandler(), nil)
	ln, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	wide := httptest.NewUnstartedServer(f.srv)
	wide.Listener.Close()
	wide.Listener = ln
	wide.Start()
	t.Cleanup(wide.Close)
	port := fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
	for _, tt := range []struct {
		host string
		want int
	}{
		{"127.0.0.1", 200},
		{ip.String(), 404},
	} {
		req := newRequest(t, "GET", "http://"+net.JoinHostPort(tt.host, port)+AccessRecordPath, nil)
		req.Host = "localhost" // accepted by --accept-hosts: only the address decides
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("through %s: %d %s, want %d", tt.host, resp.StatusCode, body, tt.want)
		}
	}
}

func nonLoopbackIPv4(t *testing.T) net.IP {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			return n.IP
		}
	}
	t.Skip("this machine has no non-loopback IPv4 address to compare with")
	return nil
}

func TestAccountingBounds(t *testing.T) {
	a := newAccounting(time.Unix(0, 0))
	a.max = 3
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	pods := requestInfo{resource: true, verb: "list", resourceName: "pods", namespace: "a"}
	weird := requestInfo{resource: true, verb: "get", apiGroup: "x\x00\x01", resourceName: "r/\xff", namespace: "a\x00"}
	long := requestInfo{verb: "get", path: "/" + strings.Repeat("x", maxTupleKey)}
	for i := range 4 {
		a.record(&pods, outcomeAllowed, now.Add(time.Duration(i)*time.Second))
	}
	a.record(&pods, outcomeForbidden, now)
	a.record(&weird, outcomeRefused, now)
	a.record(&long, outcomeAllowed, now) // too long: other
	for i := range 3 {                   // the record is full: other
		a.record(&requestInfo{verb: "get", path: fmt.Sprintf("/p%d", i)}, outcomeAllowed, now)
	}
	reqs, other := a.snapshot()
	want := []accessrecord.Request{
		{Verb: "list", Resource: "pods", Namespace: "a", Outcome: "allowed", Count: 4, LastSeen: now.Add(3 * time.Second)},
		{Verb: "list", Resource: "pods", Namespace: "a", Outcome: "forbidden", Count: 1, LastSeen: now},
		{Verb: "get", APIGroup: "x\x00\x01", Resource: "r/\xff", Namespace: "a\x00", Outcome: "refused", Count: 1, LastSeen: now},
	}
	if diff := cmp.Diff(want, reqs, cmpopts.EquateComparable(time.Time{})); diff != "" {
		t.Errorf("tuples (-want +got):\n%s", diff)
	}
	if other != 4 {
		t.Errorf("other = %d, want 4 (one too long, three beyond the bound)", other)
	}
	// The metrics still count every request, the others under their own labels while the
	// series are below their bound.
	keys, counts := a.seriesSnapshot()
	var total uint64
	for i := range keys {
		total += counts[i]
	}
	if total != 10 {
		t.Errorf("the series count %d requests, want 10", total)
	}
}

// TestAccessOutcomes checks the outcomes the envtest suite cannot provoke: a 401 that stands
// after the token was re-read, an unreachable upstream, a path outside --api-prefix, and a
// redirect, which is not an API request and is not recorded.
func TestAccessOutcomes(t *testing.T) {
	f := newFixture(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/v1/nodes" {
			w.WriteHeader(http.StatusUnauthorized)
		}
	}), func(c *Config) { c.APIPrefix = "/api/" })
	f.get("/api/v1/nodes")
	f.get("/apis/apps/v1/deployments")
	f.get("/api/v1/namespaces/a/../b/pods") // redirected to /api/v1/namespaces/b/pods
	f.upstream.Close()
	f.get("/api/v1/namespaces/a/configmaps")
	reqs, other := f.srv.access.snapshot()
	want := []accessrecord.Request{
		{Verb: "list", Resource: "nodes", Outcome: accessrecord.Unauthorized, Count: 1},
		{Verb: "list", APIGroup: "apps", Resource: "deployments", Outcome: accessrecord.Refused, Count: 1},
		{Verb: "list", Resource: "configmaps", Namespace: "a", Outcome: accessrecord.Failed, Count: 1},
		{Verb: "list", Resource: "pods", Namespace: "b", Outcome: accessrecord.Allowed, Count: 1},
	}
	if diff := cmp.Diff(want, reqs, cmpopts.IgnoreFields(accessrecord.Request{}, "LastSeen")); diff != "" || other != 0 {
		t.Errorf("tuples, other %d (-want +got):\n%s", other, diff)
	}
}

// FuzzTupleKey checks that a tuple's key decodes to the tuple, whatever bytes its fields hold.
func FuzzTupleKey(f *testing.F) {
	f.Add(true, "list", "", "pods", "", "default", "", uint8(0))
	f.Add(false, "get", "", "", "", "", "/version", uint8(4))
	f.Add(true, "get", "a\x00b", "r\x01", "s\xff", "n\x80\x01", "", uint8(2))
	f.Fuzz(func(t *testing.T, res bool, verb, group, resource, sub, ns, p string, o uint8) {
		o %= uint8(len(outcomes))
		info := requestInfo{resource: res, verb: verb, apiGroup: group, resourceName: resource, subresource: sub, namespace: ns, path: p}
		key, ok := appendTupleKey(nil, &info, outcome(o))
		if !ok {
			if n := len(verb) + len(group) + len(resource) + len(sub) + len(ns) + len(p); n <= maxTupleKey-20 {
				t.Fatalf("a tuple of %d bytes does not fit", n)
			}
			return
		}
		got, ok := decodeTupleKey(string(key))
		want := accessrecord.Request{Verb: verb, APIGroup: group, Resource: resource, Subresource: sub, Namespace: ns, NonResourceURL: p, Outcome: outcomes[o]}
		if diff := cmp.Diff(want, got); !ok || diff != "" {
			t.Errorf("decoded (ok %v) (-want +got):\n%s", ok, diff)
		}
	})
}

// TestAccessLog checks the opt-in access log: one JSON line per request with the tuple, the
// code, the outcome, the latency and the user agent, and no credential.
func TestAccessLog(t *testing.T) {
	f := newFixture(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "secrets") {
			w.WriteHeader(403)
		}
	}), func(c *Config) { c.AccessLog, c.ReadOnly = true, true })
	logs := new(syncbuffer.Buffer)
	f.srv.log = slog.New(slog.NewJSONHandler(logs, nil))
	for _, r := range []struct{ method, path string }{
		{"GET", "/api/v1/namespaces/a/pods?watch=0&labelSelector=secret%3Dvalue"},
		{"GET", "/api/v1/namespaces/a/secrets/s"},
		{"POST", "/apis/apps/v1/namespaces/a/deployments"},
		{"GET", "/version"},
	} {
		req := newRequest(t, r.method, f.front.URL+r.path, nil)
		req.Header.Set("Authorization", "Bearer client-credential")
		req.Header.Set("User-Agent", "app/1.0")
		f.do(req)
	}
	type line struct {
		Msg, Verb, APIGroup, Resource, Subresource, Namespace, NonResourceURL, Outcome, UserAgent string
		Code                                                                                      int
		LatencySeconds                                                                            *float64
	}
	var got []line
	for l := range strings.SplitSeq(strings.TrimSpace(logs.String()), "\n") {
		var v line
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatalf("not a JSON line (%v): %s", err, l)
		}
		if v.Msg != "request" {
			continue
		}
		if v.LatencySeconds == nil || *v.LatencySeconds < 0 {
			t.Errorf("no latency in %s", l)
		}
		v.LatencySeconds = nil
		got = append(got, v)
	}
	want := []line{
		{Msg: "request", Verb: "list", Resource: "pods", Namespace: "a", Outcome: "allowed", UserAgent: "app/1.0", Code: 200},
		{Msg: "request", Verb: "get", Resource: "secrets", Namespace: "a", Outcome: "forbidden", UserAgent: "app/1.0", Code: 403},
		{Msg: "request", Verb: "create", APIGroup: "apps", Resource: "deployments", Namespace: "a", Outcome: "refused", UserAgent: "app/1.0", Code: 403},
		{Msg: "request", Verb: "get", NonResourceURL: "/version", Outcome: "allowed", UserAgent: "app/1.0", Code: 200},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("access log (-want +got):\n%s", diff)
	}
	for _, secret := range []string{"client-credential", "token-a", "secret=value", "secret%3Dvalue"} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the log holds %q:\n%s", secret, logs)
		}
	}
}

// BenchmarkAccounting measures what recording adds to a request through the proxy, as
// BenchmarkServeHTTP does it, with the recording off and on in the same run.
func BenchmarkAccounting(b *testing.B) {
	body := []byte(`{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[]}`)
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	}))
	up.EnableHTTP2 = true
	up.StartTLS()
	defer up.Close()
	for _, on := range []bool{false, true} {
		b.Run(fmt.Sprintf("recording=%v", on), func(b *testing.B) {
			f := newFixtureFor(b, up)
			if !on {
				f.access, f.metrics.access = nil, nil
			}
			req := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:8001/api/v1/namespaces/default/pods", nil)
			b.ReportAllocs()
			cpu := startCPU(b)
			for b.Loop() {
				w := httptest.NewRecorder()
				f.ServeHTTP(w, req)
				if w.Code != 200 {
					b.Fatalf("status %d", w.Code)
				}
			}
			cpu.report()
		})
	}
}

// BenchmarkAccountingAdded measures the work recording adds to one request, alone, so that
// it is not lost in the noise of a whole request: reading the request info, carrying it in the
// request's context and counting the outcome, for a known tuple.
func BenchmarkAccountingAdded(b *testing.B) {
	up := httptest.NewTLSServer(http.NotFoundHandler())
	defer up.Close()
	s := newFixtureFor(b, up)
	req := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:8001/api/v1/namespaces/default/pods?watch=true", nil)
	b.ReportAllocs()
	cpu := startCPU(b)
	for b.Loop() {
		r, _ := withExchange(req, req.URL.Path, time.Now())
		s.account(r.Context(), http.StatusOK, outcomeAllowed)
	}
	cpu.report()
}

// cpuMeter reports the CPU time the process used (user and system, GC included) per
// iteration, as cpu-ns/op: on a busy machine wall time also counts the time spent waiting
// for a core.
type cpuMeter struct {
	b     *testing.B
	start time.Duration
}

func startCPU(b *testing.B) cpuMeter { return cpuMeter{b, processCPU(b)} }

func (m cpuMeter) report() {
	m.b.ReportMetric(float64(processCPU(m.b)-m.start)/float64(m.b.N), "cpu-ns/op")
}

func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkAccountingRecord measures the recording alone: a known tuple, with parallel
// requests.
func BenchmarkAccountingRecord(b *testing.B) {
	a := newAccounting(time.Now())
	info, _ := parseRequestInfo("GET", "/apis/apps/v1/namespaces/team-a/deployments", "watch=true")
	now := time.Now()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			a.record(&info, outcomeAllowed, now)
		}
	})
}

// BenchmarkAccountingMemory measures the heap that MaxAccessTuples distinct tuples hold,
// tuples shaped as an app's (namespaced resources of a few groups, with subresources and
// outcomes), reported as MiB/record.
func BenchmarkAccountingMemory(b *testing.B) {
	groups := []string{"", "apps", "batch", "networking.k8s.io", "coordination.k8s.io", "example.com"}
	resources := []string{"pods", "deployments", "configmaps", "leases", "widgets", "jobs", "services", "endpointslices"}
	subs := []string{"", "status", "log", "scale"}
	verbs := []string{"get", "list", "watch", "create", "update", "patch", "delete"}
	infos := make([]requestInfo, 0, MaxAccessTuples)
	for i := 0; len(infos) < MaxAccessTuples; i++ {
		infos = append(infos, requestInfo{resource: true, verb: verbs[i%len(verbs)], apiGroup: groups[i/7%len(groups)],
			resourceName: resources[i/42%len(resources)], subresource: subs[i/336%len(subs)],
			namespace: fmt.Sprintf("team-%04d", i/1344)})
	}
	var heap float64
	now := time.Now()
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		a := newAccounting(now)
		for i := range infos {
			a.record(&infos[i], outcome(i%2), now)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if _, other := a.snapshot(); other != 0 {
			b.Fatalf("%d tuples counted as other", other)
		}
		heap = float64(after.HeapAlloc-before.HeapAlloc) / (1 << 20)
		runtime.KeepAlive(a)
	}
	b.ReportMetric(heap, "MiB/record")
}
