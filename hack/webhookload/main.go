// Command webhookload measures the admission webhook under load, the way the project's
// performance goals are stated: AdmissionReview v1 over TLS with HTTP/1.1 keep-alive, the
// benchmark pod (injector/testdata/realistic.in.yaml: the shared benchmark pod, opted in), a
// fresh UID per request, the webhook process pinned to one core and the load on the other.
//
// It runs, in one go, the api-access-injector webhook binary, optionally a second build of it
// (-baseline, e.g. the main branch's, for a before/after in the same run), and a "null"
// webhook (TLS, decode, encode, a trivial patch: the harness's floor), in interleaved rounds,
// and reports for each the medians of: closed-loop throughput with 4 senders, CPU
// microseconds per admission, open-loop p50/p99 latency at a fixed rate, peak resident
// memory, and the size of the patch it answers with; then the ratios of each injector to the
// null webhook of the same run, which are what the goals are stated in (absolute figures move
// with the machine and its load). Run it with `make load`.
package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/uuid"
	"sigs.k8s.io/yaml"

	"github.com/api-access-injector/api-access-injector/hack/internal/proc"
	"github.com/api-access-injector/api-access-injector/test/framework/testenv"
)

type options struct {
	bin       string
	baseline  string
	rounds    int
	podFile   string
	duration  time.Duration
	senders   int
	rate      int
	serveNull string
	certDir   string
	skipNull  bool
	creates   int
}

func main() {
	var o options
	flag.StringVar(&o.bin, "bin", "bin/api-access-injector", "The webhook binary to measure (make build).")
	flag.StringVar(&o.baseline, "baseline", "", "A second api-access-injector binary to measure in the same run, e.g. one built from main.")
	flag.IntVar(&o.rounds, "rounds", 3, "Interleaved rounds; each figure is the median of the rounds.")
	flag.StringVar(&o.podFile, "pod", "injector/testdata/realistic.in.yaml", "The pod to admit (YAML).")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "Length of each load phase.")
	flag.IntVar(&o.senders, "senders", 4, "Concurrent senders in the closed loop.")
	flag.IntVar(&o.rate, "rate", 500, "Requests per second in the open loop.")
	flag.IntVar(&o.creates, "creates", 300, "Server-side dry-run pod creates per target and round at the API server, one at a time (0: skip).")
	flag.BoolVar(&o.skipNull, "skip-null", false, "Do not measure the null webhook baseline.")
	flag.StringVar(&o.serveNull, "serve-null", "", "Internal: serve the null webhook on this port.")
	flag.StringVar(&o.certDir, "cert-dir", "", "Internal: certificate directory of the null webhook.")
	flag.Parse()
	var err error
	if o.serveNull != "" {
		err = serveNull(o.serveNull, o.certDir)
	} else {
		err = run(o)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "webhookload:", err)
		os.Exit(1)
	}
}

// result is what one target measured.
type result struct {
	name          string
	throughput    float64 // admissions per second, closed loop
	cpuPerAdmit   time.Duration
	p50, p99, max time.Duration // open loop
	failures      int64
	rssKB         int64
	patchBytes    int           // of the first answer
	apiP50        time.Duration // server-side dry-run pod create with this webhook registered
}

func run(o options) error {
	body, err := podJSON(o.podFile)
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "webhookload-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(work) }()
	if err := testenv.WriteServingCert(work, 1); err != nil {
		return err
	}
	// The webhook reads namespaces (their defaults) from an informer, as in a cluster: it gets
	// a real API server holding the review's namespace, or each admission would fall back to a
	// live read that fails. The API server is idle while the load runs.
	kubeconfig, cfg, stop, err := apiServer(work, benchNamespace)
	if err != nil {
		return err
	}
	defer stop()
	api, err := newAPIClient(cfg, work)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	type target struct {
		name string
		path string
		argv []string
	}
	injectorTarget := func(name, bin string) target {
		return target{name, "/inject/opt-in", []string{bin, "webhook", "--cert-dir", work, "--metrics-bind-address", "0",
			"--health-probe-bind-address", "0", "--log-level", "error"}}
	}
	targets := []target{injectorTarget("api-access-injector", o.bin)}
	if o.baseline != "" {
		targets = append(targets, injectorTarget("baseline", o.baseline))
	}
	if !o.skipNull {
		targets = append(targets, target{"null webhook (floor)", "/null", []string{self, "--cert-dir", work}})
	}
	fmt.Printf("machine: %s, %d cores, load average %s; webhook pinned to core 0 (GOMAXPROCS=1), load on the others\n",
		proc.CPUModel(), goruntime.NumCPU(), loadAverage())
	fmt.Printf("pod: %s (%d bytes of JSON), a fresh UID per request; %v per phase, %d interleaved rounds, medians\n\n",
		o.podFile, len(body), o.duration, o.rounds)

	rounds := make([][]result, len(targets))
	var none []time.Duration // per round: the API server's p50 with no webhook
	for round := range o.rounds {
		if o.creates > 0 {
			if err := api.register(""); err != nil {
				return err
			}
			p50, err := api.dryRunP50(body, o.creates, nil)
			if err != nil {
				return fmt.Errorf("no webhook: %w", err)
			}
			none = append(none, p50)
			fmt.Fprintf(os.Stderr, "round %d, no webhook: dry-run create p50 %.2f ms\n", round+1, ms(p50))
		}
		for i, t := range targets {
			port := strconv.Itoa(19443 + i)
			argv := t.argv
			if t.path == "/null" {
				argv = append(argv, "--serve-null", port)
			} else {
				argv = append(argv, "--webhook-port", port)
			}
			r, err := measure(o, t.name, "https://127.0.0.1:"+port+t.path, argv, kubeconfig, body, api)
			if err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
			rounds[i] = append(rounds[i], r)
			fmt.Fprintf(os.Stderr, "round %d, %s: %.0f/s, %.0f µs/admission, p99 %.2f ms, %d MB\n", round+1, t.name,
				r.throughput, float64(r.cpuPerAdmit.Nanoseconds())/1e3, ms(r.p99), r.rssKB/1024)
		}
	}
	var results []result
	for _, rs := range rounds {
		results = append(results, median(rs))
	}
	var noneP50 time.Duration
	if len(none) > 0 {
		slices.Sort(none)
		noneP50 = none[len(none)/2]
	}
	printTable(o, results, noneP50)
	fmt.Printf("\nload average at the end: %s\n", loadAverage())
	return nil
}

// median takes the median of each figure over the rounds.
func median(rs []result) result {
	m := rs[0]
	pick := func(f func(r result) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	m.throughput = pick(func(r result) float64 { return r.throughput })
	m.cpuPerAdmit = time.Duration(pick(func(r result) float64 { return float64(r.cpuPerAdmit) }))
	m.p50 = time.Duration(pick(func(r result) float64 { return float64(r.p50) }))
	m.p99 = time.Duration(pick(func(r result) float64 { return float64(r.p99) }))
	m.max = time.Duration(pick(func(r result) float64 { return float64(r.max) }))
	m.rssKB = int64(pick(func(r result) float64 { return float64(r.rssKB) }))
	m.apiP50 = time.Duration(pick(func(r result) float64 { return float64(r.apiP50) }))
	m.failures = 0
	for _, r := range rs {
		m.failures += r.failures
	}
	return m
}

func loadAverage() string {
	data, _ := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(data)); len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "unknown"
}

func measure(o options, name, url string, argv []string, kubeconfig string, pod []byte, api *apiClient) (result, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	if _, err := exec.LookPath("taskset"); err == nil {
		cmd = exec.Command("taskset", append([]string{"-c", "0", argv[0]}, argv[1:]...)...)
	}
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1", "KUBECONFIG="+kubeconfig)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	if err := cmd.Start(); err != nil {
		return result{}, err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // a self-signed certificate made by this run
		MaxIdleConnsPerHost: o.senders * 4, ForceAttemptHTTP2: false,
	}, Timeout: 10 * time.Second}
	var patchBytes atomic.Int64
	send := func() (time.Duration, error) {
		start := time.Now()
		resp, err := client.Post(url, "application/json", bytes.NewReader(review(pod)))
		if err != nil {
			return 0, err
		}
		defer func() { _ = resp.Body.Close() }()
		var out admissionv1.AdmissionReview
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			return 0, err
		}
		if out.Response == nil || !out.Response.Allowed || len(out.Response.Patch) == 0 {
			return 0, fmt.Errorf("unexpected answer: %+v", out.Response)
		}
		patchBytes.CompareAndSwap(0, int64(len(out.Response.Patch)))
		return time.Since(start), nil
	}
	ready := false
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if _, err := send(); err == nil {
			ready = true
			break
		}
	}
	if !ready {
		return result{}, fmt.Errorf("not answering after 20s: %s", stderr.String())
	}
	pid := cmd.Process.Pid
	r := result{name: name, patchBytes: int(patchBytes.Load())}

	// Warm up, then the closed loop.
	closedLoop(send, o.senders, 2*time.Second)
	cpu0 := proc.CPUTime(pid)
	n, failed, elapsed := closedLoop(send, o.senders, o.duration)
	cpu := proc.CPUTime(pid) - cpu0
	r.throughput = float64(n) / elapsed.Seconds()
	if n > 0 {
		r.cpuPerAdmit = cpu / time.Duration(n)
	}
	r.failures += failed

	// The open loop: requests leave on a fixed schedule; latency counts from the scheduled
	// time, so a stalled server cannot hide its queueing.
	lat, failed := openLoop(send, o.rate, o.duration)
	r.failures += failed
	if len(lat) > 0 {
		slices.Sort(lat)
		r.p50, r.p99, r.max = lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1]
	}
	r.rssKB = proc.PeakRSS(pid) >> 10

	if o.creates > 0 {
		marker := markerOurs
		if strings.HasSuffix(url, "/null") {
			marker = markerNull
		}
		if err := api.register(url); err != nil {
			return result{}, err
		}
		p50, err := api.dryRunP50(pod, o.creates, marker)
		if err != nil {
			return result{}, fmt.Errorf("%s at the API server: %w", name, err)
		}
		r.apiP50 = p50
		if err := api.register(""); err != nil {
			return result{}, err
		}
	}
	return r, nil
}

func closedLoop(send func() (time.Duration, error), senders int, d time.Duration) (n, failed int64, elapsed time.Duration) {
	var ok, bad atomic.Int64
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for range senders {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				if _, err := send(); err != nil {
					bad.Add(1)
				} else {
					ok.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return ok.Load(), bad.Load(), time.Since(start)
}

func openLoop(send func() (time.Duration, error), rate int, d time.Duration) ([]time.Duration, int64) {
	interval := time.Second / time.Duration(rate)
	total := int(d / interval)
	lat := make([]time.Duration, 0, total)
	var mu sync.Mutex
	var failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for i := range total {
		scheduled := start.Add(time.Duration(i) * interval)
		time.Sleep(time.Until(scheduled))
		wg.Go(func() {
			if _, err := send(); err != nil {
				failed.Add(1)
				return
			}
			l := time.Since(scheduled)
			mu.Lock()
			lat = append(lat, l)
			mu.Unlock()
		})
	}
	wg.Wait()
	return lat, failed.Load()
}

var podResource = metav1.GroupVersionResource{Version: "v1", Resource: "pods"}

func review(pod []byte) []byte {
	r := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: uuid.NewUUID(), Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, Resource: podResource,
			RequestKind: &metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, RequestResource: &podResource,
			Namespace: benchNamespace, Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: pod},
		},
	}
	b, _ := json.Marshal(r)
	return b
}

func podJSON(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return yaml.YAMLToJSON(data)
}

func printTable(o options, results []result, noneP50 time.Duration) {
	fmt.Printf("| measure | %s |\n|---|%s\n", strings.Join(names(results), " | "), strings.Repeat("---|", len(results)))
	row := func(label string, f func(r result) string) {
		var cells []string
		for _, r := range results {
			cells = append(cells, f(r))
		}
		fmt.Printf("| %s | %s |\n", label, strings.Join(cells, " | "))
	}
	row(fmt.Sprintf("closed loop, %d senders: admissions/s", o.senders), func(r result) string { return fmt.Sprintf("%.0f", r.throughput) })
	row("CPU µs per admission", func(r result) string { return fmt.Sprintf("%.0f", float64(r.cpuPerAdmit.Nanoseconds())/1e3) })
	row(fmt.Sprintf("open loop %d/s: p50 / p99 ms", o.rate), func(r result) string {
		return fmt.Sprintf("%.2f / %.2f", ms(r.p50), ms(r.p99))
	})
	row("peak resident memory", func(r result) string { return fmt.Sprintf("%.0f MB", float64(r.rssKB)/1024) })
	row("failed requests", func(r result) string { return strconv.FormatInt(r.failures, 10) })
	row("patch bytes (JSON, before base64)", func(r result) string { return strconv.Itoa(r.patchBytes) })
	if noneP50 > 0 {
		row(fmt.Sprintf("API server: dry-run create p50, added to no webhook's %.2f ms (%d creates, one at a time)", ms(noneP50), o.creates),
			func(r result) string { return fmt.Sprintf("+%.2f ms", ms(r.apiP50-noneP50)) })
	}
	null := results[len(results)-1]
	if o.skipNull || null.throughput == 0 || null.cpuPerAdmit == 0 || null.p99 == 0 || null.rssKB == 0 {
		return
	}
	fmt.Printf("\nratios to the null webhook of this run (goals: CPU <= 1.3, throughput >= 0.75, p99 <= 1.5, RSS <= 1.5):\n")
	for _, r := range results[:len(results)-1] {
		fmt.Printf("  %s: CPU per admission %.2f, throughput %.2f, p99 at %d/s %.2f, RSS %.2f\n", r.name,
			float64(r.cpuPerAdmit)/float64(null.cpuPerAdmit), r.throughput/null.throughput, o.rate,
			float64(r.p99)/float64(null.p99), float64(r.rssKB)/float64(null.rssKB))
	}
	if noneP50 > 0 {
		fmt.Printf("\nat the API server (goal: added p50 <= null's + 0.30 ms):\n")
		for _, r := range results[:len(results)-1] {
			fmt.Printf("  %s: added p50 %.2f ms, null's %.2f ms: %+.2f ms over null's\n", r.name,
				ms(r.apiP50-noneP50), ms(null.apiP50-noneP50), ms(r.apiP50-null.apiP50))
		}
	}
}

func names(results []result) []string {
	var out []string
	for _, r := range results {
		out = append(out, r.name)
	}
	return out
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
