// Command webhookload measures the admission webhook under load, the way the project's
// performance goals are stated: AdmissionReview v1 over TLS with HTTP/1.1 keep-alive, the
// benchmark pod (injector/testdata/realistic.in.yaml: the shared benchmark pod, opted in), a
// fresh UID per request, the webhook process pinned to one core and the load on the other.
//
// It runs, in one go, the api-access-injector webhook binary, optionally a second build of it
// (-baseline, e.g. the main branch's, for a before/after in the same run), a "null" webhook
// (TLS, decode, encode, a trivial patch: the harness's floor), and the null webhook answering
// with ours' exact patches (the API server's cost of our mutation, apart from our webhook's
// time), in interleaved rounds, and reports for each the medians of: closed-loop throughput
// with 4 senders, CPU microseconds per admission, open-loop p50/p99 latency at a fixed rate,
// peak resident memory, and the size of the patch it answers with; then the ratios of each to
// the null webhook of the same run, which are what the goals are stated in (absolute figures
// move with the machine and its load).
//
// With -creates (the default), it also registers each webhook in turn with envtest's API
// server and creates pods by server-side dry run, one at a time: the benchmark pod, the same
// pod with one container, and the benchmark pod with apiaccess.io/containers naming one
// container; it reports the p50 and the API server's CPU time per create, added to those with
// no webhook. -null-patch FILE adds the null webhook answering with a variant of the mutation,
// to measure what a part of it costs the API server; -apiserver-cpuprofile DIR says where the
// API server's time goes. Run it with `make load`.
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
	"path/filepath"
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
	"github.com/api-access-injector/api-access-injector/test/framework/syncbuffer"
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
	patchFile string
	profile   string
	patches   stringList
}

// stringList is a repeatable flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

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
	flag.StringVar(&o.profile, "apiserver-cpuprofile", "", "With -creates: also profile the API server's CPU over 20s of creates in each namespace (0: no webhook; then each target in order), into this directory as N.pprof.")
	flag.Var(&o.patches, "null-patch", "Also measure the null webhook answering with the JSON patch in this file (repeatable): what a variant of the mutation costs the API server. The file holds one patch for every pod, or a JSON object from each created pod's generateName to its patch; the created pods must contain the string apiaccess-.")
	flag.StringVar(&o.patchFile, "patch-file", "", "Internal: the null webhook answers with the patch in this file.")
	flag.Parse()
	var err error
	if o.serveNull != "" {
		err = serveNull(o.serveNull, o.certDir, o.patchFile)
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
	name            string
	throughput      float64 // admissions per second, closed loop
	cpuPerAdmit     time.Duration
	openCPUPerAdmit time.Duration // in the open loop, where the webhook idles between requests
	p50, p99, max   time.Duration // open loop
	failures        int64
	rssKB           int64
	patches         [][]byte        // the answer for each of the created pods
	apiP50          []time.Duration // server-side dry-run create of each created pod with this webhook registered
}

// target is a webhook under measure.
type target struct {
	name       string
	path       string
	argv       []string
	marker     []byte // of its mutation in the created pod
	sameAsOurs bool   // answers with ours' patches
}

// argvOn is the target's command line, serving on port.
func (t target) argvOn(port string) []string {
	argv := slices.Clone(t.argv)
	if t.path == "/null" {
		return append(argv, "--serve-null", port)
	}
	return append(argv, "--webhook-port", port)
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
	creates, err := createPods(body)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	injectorTarget := func(name, bin string) target {
		return target{name, "/inject/opt-in", []string{bin, "webhook", "--cert-dir", work, "--metrics-bind-address", "0",
			"--health-probe-bind-address", "0", "--log-level", "error"}, markerOurs, false}
	}
	targets := []target{injectorTarget("api-access-injector", o.bin)}
	if o.baseline != "" {
		targets = append(targets, injectorTarget("baseline", o.baseline))
	}
	// The null webhook answering with ours' patches, recorded from ours' answers in the first
	// round: set against the null webhook, it is the API server's cost of applying and
	// validating our mutation; set against ours, our webhook's own time per call.
	oursPatch := filepath.Join(work, "ours.patch")
	for _, p := range o.patches {
		targets = append(targets, target{"null webhook answering with " + filepath.Base(p), "/null", []string{self, "--cert-dir", work, "--patch-file", p}, markerVariant, false})
	}
	if !o.skipNull {
		targets = append(targets,
			target{"null webhook answering with ours' patch", "/null", []string{self, "--cert-dir", work, "--patch-file", oursPatch}, markerOurs, true},
			target{"null webhook (floor)", "/null", []string{self, "--cert-dir", work}, markerNull, false})
	}
	fmt.Printf("machine: %s, %d cores, load average %s; webhook pinned to core 0 (GOMAXPROCS=1), load on the others\n",
		proc.CPUModel(), goruntime.NumCPU(), proc.LoadAverage())
	fmt.Printf("pod: %s (%d bytes of JSON), a fresh UID per request; %v per phase, %d interleaved rounds, medians\n\n",
		o.podFile, len(body), o.duration, o.rounds)

	rounds := make([][]result, len(targets))
	for round := range o.rounds {
		for i, t := range targets {
			port := strconv.Itoa(19443 + i)
			r, err := measure(o, t.name, "https://127.0.0.1:"+port+t.path, t.argvOn(port), kubeconfig, body, creates)
			if err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
			if i == 0 && round == 0 {
				if err := writePatches(oursPatch, creates, r.patches); err != nil {
					return err
				}
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
	var none []time.Duration
	if o.creates > 0 {
		if none, err = atAPIServer(o, targets, kubeconfig, body, creates, api, results); err != nil {
			return err
		}
	}
	printTable(o, results, creates, none)
	fmt.Printf("\nload average at the end: %s\n", proc.LoadAverage())
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
	m.openCPUPerAdmit = time.Duration(pick(func(r result) float64 { return float64(r.openCPUPerAdmit) }))
	m.p50 = time.Duration(pick(func(r result) float64 { return float64(r.p50) }))
	m.p99 = time.Duration(pick(func(r result) float64 { return float64(r.p99) }))
	m.max = time.Duration(pick(func(r result) float64 { return float64(r.max) }))
	m.rssKB = int64(pick(func(r result) float64 { return float64(r.rssKB) }))
	m.failures = 0
	for _, r := range rs {
		m.failures += r.failures
	}
	return m
}

// atAPIServer starts every target again, registers them all with the API server, each for its
// own namespace, and measures dry-run creates of each pod, interleaved: it sets each result's
// apiP50 and returns the p50s with no webhook. With -apiserver-cpuprofile, it then profiles the
// API server's creates in each namespace in turn.
func atAPIServer(o options, targets []target, kubeconfig string, body []byte, creates []createPod, api *apiClient, results []result) ([]time.Duration, error) {
	var apiTargets []apiTarget
	var stops []func()
	defer func() {
		for _, stop := range stops {
			stop()
		}
	}()
	for i, t := range targets {
		port := strconv.Itoa(19643 + i)
		url := "https://127.0.0.1:" + port + t.path
		_, stop, err := start(t.argvOn(port), kubeconfig, url, body)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", t.name, err)
		}
		stops = append(stops, stop)
		sameAs := 0
		if t.sameAsOurs {
			sameAs = 1
		}
		apiTargets = append(apiTargets, apiTarget{t.name, url, t.marker, sameAs})
	}
	if err := api.register(apiTargets); err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "at the API server: %d creates of each pod in each of %d namespaces, in turn\n", o.creates, len(targets)+1)
	p50s, err := api.interleaved(apiTargets, creates, o.creates)
	if err != nil {
		return nil, err
	}
	for i := range results {
		results[i].apiP50 = p50s[i+1]
	}
	for i := range len(targets) + 1 {
		if o.profile == "" {
			break
		}
		file := filepath.Join(o.profile, fmt.Sprintf("%d.pprof", i))
		fmt.Fprintf(os.Stderr, "the API server's CPU profile for namespace %s: %s\n", targetNamespace(i), file)
		if err := api.profile(targetNamespace(i), body, file); err != nil {
			return nil, err
		}
	}
	return p50s[0], nil
}

// start starts a target, the webhook pinned to core 0 with GOMAXPROCS=1, and waits until it
// admits pod at url; stop kills it.
func start(argv []string, kubeconfig, url string, pod []byte) (pid int, stop func(), err error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	if _, err := exec.LookPath("taskset"); err == nil {
		cmd = exec.Command("taskset", append([]string{"-c", "0", argv[0]}, argv[1:]...)...)
	}
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1", "KUBECONFIG="+kubeconfig)
	var stderr syncbuffer.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	if err := cmd.Start(); err != nil {
		return 0, nil, err
	}
	stop = func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
	client := newClient(1)
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if _, err := admit(client, url, pod); err == nil {
			return cmd.Process.Pid, stop, nil
		}
	}
	stop()
	return 0, nil, fmt.Errorf("not answering after 20s: %s", stderr.String())
}

// newClient is an HTTP/1.1 keep-alive client of the targets.
func newClient(conns int) *http.Client {
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // a self-signed certificate made by this run
		MaxIdleConnsPerHost: conns, ForceAttemptHTTP2: false,
	}, Timeout: 10 * time.Second}
}

func measure(o options, name, url string, argv []string, kubeconfig string, pod []byte, creates []createPod) (result, error) {
	pid, stop, err := start(argv, kubeconfig, url, pod)
	if err != nil {
		return result{}, err
	}
	defer stop()
	client := newClient(o.senders * 4)
	send := func() (time.Duration, error) {
		start := time.Now()
		if _, err := admit(client, url, pod); err != nil {
			return 0, err
		}
		return time.Since(start), nil
	}
	r := result{name: name}
	for _, c := range creates {
		p, err := admit(client, url, c.body)
		if err != nil {
			return result{}, fmt.Errorf("%s: %w", c.name, err)
		}
		r.patches = append(r.patches, p)
	}

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
	cpu0 = proc.CPUTime(pid)
	lat, failed := openLoop(send, o.rate, o.duration)
	cpu = proc.CPUTime(pid) - cpu0
	r.failures += failed
	if len(lat) > 0 {
		r.openCPUPerAdmit = cpu / time.Duration(len(lat))
		slices.Sort(lat)
		r.p50, r.p99, r.max = lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1]
	}
	r.rssKB = proc.PeakRSS(pid) >> 10

	return r, nil
}

// admit sends one AdmissionReview of pod and returns the patch of the answer.
func admit(client *http.Client, url string, pod []byte) ([]byte, error) {
	resp, err := client.Post(url, "application/json", bytes.NewReader(review(pod)))
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	var out admissionv1.AdmissionReview
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, err
	}
	if out.Response == nil || !out.Response.Allowed || len(out.Response.Patch) == 0 {
		return nil, fmt.Errorf("unexpected answer: %+v", out.Response)
	}
	return out.Response.Patch, nil
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

func printTable(o options, results []result, creates []createPod, none []time.Duration) {
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
	row(fmt.Sprintf("open loop %d/s: CPU µs per admission", o.rate), func(r result) string {
		return fmt.Sprintf("%.0f", float64(r.openCPUPerAdmit.Nanoseconds())/1e3)
	})
	row("peak resident memory", func(r result) string { return fmt.Sprintf("%.0f MB", float64(r.rssKB)/1024) })
	row("failed requests", func(r result) string { return strconv.FormatInt(r.failures, 10) })
	row("patch bytes (JSON, before base64) / operations", func(r result) string {
		var ops []json.RawMessage
		_ = json.Unmarshal(r.patches[0], &ops)
		return fmt.Sprintf("%d / %d", len(r.patches[0]), len(ops))
	})
	if o.creates > 0 {
		for i, c := range creates {
			row(fmt.Sprintf("API server, %s: dry-run create p50, added to no webhook's %.2f ms (%d creates, in turn with the others)",
				c.name, ms(none[i]), o.creates),
				func(r result) string { return fmt.Sprintf("+%.2f ms", ms(r.apiP50[i]-none[i])) })
		}
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
	if o.creates > 0 {
		for i, c := range creates {
			fmt.Printf("\nat the API server, %s (goal: added p50 <= null's + 0.30 ms):\n", c.name)
			for _, r := range results[:len(results)-1] {
				fmt.Printf("  %s: added p50 %.2f ms, null's %.2f ms: %+.2f ms over null's\n", r.name,
					ms(r.apiP50[i]-none[i]), ms(null.apiP50[i]-none[i]), ms(r.apiP50[i]-null.apiP50[i]))
			}
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
