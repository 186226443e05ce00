// Command proxybench measures what the api-proxy sidecar costs next to a direct client and
// next to kubectl proxy, in one run against one envtest API server: pod-list latency and
// throughput, watch event delay, peak memory, binary size, and requests failed across a
// token rotation. It prints a markdown table. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/api-access-injector/api-access-injector/hack/internal/proc"
	"github.com/api-access-injector/api-access-injector/test/framework/testenv"
)

// options are the knobs of a run; the defaults keep a run under two minutes on 2 cores.
type options struct {
	pods          int
	rounds        int
	requests      int
	warmup        int
	clients       int
	loopRounds    int
	loopDuration  time.Duration
	watchChanges  int
	watchGap      time.Duration
	rotation      bool
	rotationFor   time.Duration
	rotationConns int
	proxyBinary   string
	variants      variants
	cpuProfiles   string
}

// variant is one way of running api-proxy: a name for the report, flags and environment.
type variant struct {
	name string
	args []string // flags added to the ones the bench sets
	env  []string // NAME=VALUE added to the environment
}

// variants is the repeatable -variant flag.
type variants []variant

func (vs *variants) String() string {
	var names []string
	for _, v := range *vs {
		names = append(names, v.name)
	}
	return strings.Join(names, ",")
}

// Set parses NAME=WORDS: WORDS are space-separated; those starting with "-" are flags of
// api-proxy, the others NAME=VALUE settings of its environment.
func (vs *variants) Set(s string) error {
	name, words, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return fmt.Errorf("-variant %q: want NAME=FLAGS, for example %q", s, "h1=--upstream-protocol=http1")
	}
	v := variant{name: "api-proxy " + name}
	for w := range strings.FieldsSeq(words) {
		switch {
		case strings.HasPrefix(w, "-"):
			v.args = append(v.args, w)
		case strings.Contains(w, "="):
			v.env = append(v.env, w)
		default:
			return fmt.Errorf("-variant %q: %q is neither a flag (-...) nor an environment setting (NAME=VALUE)", s, w)
		}
	}
	*vs = append(*vs, v)
	return nil
}

func main() {
	var o options
	flag.IntVar(&o.pods, "pods", 10, "Pods in the listed namespace.")
	flag.IntVar(&o.rounds, "rounds", 6, "Latency rounds; each round measures every target in turn, in a rotated order.")
	flag.IntVar(&o.requests, "requests", 250, "Sequential GETs per target per latency round.")
	flag.IntVar(&o.warmup, "warmup", 30, "Unmeasured GETs before each target's turn.")
	flag.IntVar(&o.clients, "clients", 4, "Concurrent senders in the closed-loop throughput test.")
	flag.IntVar(&o.loopRounds, "loop-rounds", 3, "Closed-loop rounds, every target in turn.")
	flag.DurationVar(&o.loopDuration, "loop-duration", 3*time.Second, "Duration of each target's closed-loop turn.")
	flag.IntVar(&o.watchChanges, "watch-changes", 150, "Changes to the watched pod.")
	flag.DurationVar(&o.watchGap, "watch-gap", 20*time.Millisecond, "Pause between two changes to the watched pod.")
	flag.BoolVar(&o.rotation, "rotation", true, "Also count failed requests across a token rotation and revocation (adds about 16s).")
	flag.DurationVar(&o.rotationFor, "rotation-window", 15*time.Second, "How long after the rotation failures are counted.")
	flag.IntVar(&o.rotationConns, "rotation-clients", 2, "Concurrent senders per proxy during the rotation.")
	flag.StringVar(&o.proxyBinary, "api-proxy", "", "A prebuilt api-proxy binary to measure instead of building ./cmd/api-proxy "+
		"(for example one built with a profiling endpoint).")
	flag.Var(&o.variants, "variant", "NAME=FLAGS: measure api-proxy run with these flags (space-separated; NAME=VALUE words set "+
		"its environment) as another column; repeatable. Without it, api-proxy with its default flags and with "+
		"--upstream-http1-conns=0 (every request over HTTP/2). The first one also serves the TLS hop.")
	flag.StringVar(&o.cpuProfiles, "cpuprofile", "", "A directory to write CPU profiles of the proxies' whole run into: "+
		"kubectl's own --profile=cpu, and api-proxy built from ./hack/proxybench/profiled (api-proxy with a profile). "+
		"Read them with go tool pprof.")
	flag.Parse()
	if len(o.variants) == 0 {
		// The default, and every request over HTTP/2 as before the pool of HTTP/1.1
		// connections.
		o.variants = variants{{name: "api-proxy"}, {name: "api-proxy HTTP/2 only", args: []string{"--upstream-http1-conns=0"}}}
	}
	if err := run(o); err != nil {
		fmt.Fprintf(os.Stderr, "proxybench: %v\n", err)
		os.Exit(1)
	}
}

func run(o options) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	begin := time.Now()
	loadBefore = proc.LoadAverage()
	work, err := os.MkdirTemp("", "proxybench-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(work) }()
	assets, err := testenv.AssetsDir()
	if err != nil {
		return err
	}
	progress("starting envtest")
	env, cfg, err := testenv.Start()
	if err != nil {
		return err
	}
	defer func() { _ = env.Stop() }()
	saDir := filepath.Join(work, "serviceaccount")
	if err := os.Mkdir(saDir, 0o755); err != nil {
		return err
	}
	f, err := newFixture(ctx, cfg, saDir, o.pods)
	if err != nil {
		return fmt.Errorf("creating the fixture: %w", err)
	}
	direct, err := f.direct(false)
	if err != nil {
		return err
	}
	direct1, err := f.direct(true)
	if err != nil {
		return err
	}
	progress("building and starting api-proxy, starting kubectl proxy")
	bin := o.proxyBinary
	var kubectlProfile string
	if o.cpuProfiles != "" {
		if bin != "" {
			return errors.New("-cpuprofile builds api-proxy with a profile: it cannot measure -api-proxy")
		}
		if err := os.MkdirAll(o.cpuProfiles, 0o755); err != nil {
			return err
		}
		kubectlProfile = filepath.Join(o.cpuProfiles, "kubectl-proxy.pprof")
		for i, v := range o.variants {
			o.variants[i].env = append(slices.Clone(v.env), "PROXYBENCH_CPUPROFILE="+filepath.Join(o.cpuProfiles, profileName(v.name)))
		}
		defer progress("CPU profiles in %s: go tool pprof -top FILE", o.cpuProfiles)
	}
	if bin == "" {
		if bin, err = buildAPIProxy(ctx, work, o.cpuProfiles != ""); err != nil {
			return err
		}
	}
	kp, err := f.startKubectlProxy(ctx, filepath.Join(assets, "kubectl"), work, kubectlProfile)
	if kp != nil && kp.cmd != nil {
		defer stopProcess(kp)
	}
	if err != nil {
		return err
	}
	targets := []*target{direct, kp}
	// The TLS hop of transparent mode takes turns with the others in the latency and
	// throughput rounds, so that it is measured against the plain hop under the same noise.
	var oursTLS *target
	for i, v := range o.variants {
		// A profile shows one hop's costs: the TLS hop is left out then.
		ours, tlsHop, err := f.startAPIProxy(ctx, work, bin, v, i == 0 && o.cpuProfiles == "")
		if ours != nil && ours.cmd != nil {
			defer stopProcess(ours)
		}
		if err != nil {
			return err
		}
		targets = append(targets, ours)
		if tlsHop != nil {
			oursTLS = tlsHop
		}
	}
	timed := append(slices.Clone(targets), direct1)
	if oursTLS != nil {
		timed = append(timed, oursTLS)
	}

	progress("latency: %d rounds x %d sequential GETs per target", o.rounds, o.requests)
	lat := map[string][]time.Duration{}
	for r := range o.rounds {
		for _, t := range rotated(timed, r) {
			if _, err := latencies(ctx, t, o.warmup); err != nil {
				return err
			}
			ds, err := latencies(ctx, t, o.requests)
			if err != nil {
				return err
			}
			lat[t.name] = append(lat[t.name], ds...)
		}
	}

	progress("throughput: %d rounds x %v per target, %d clients", o.loopRounds, o.loopDuration, o.clients)
	served, failed, cpu := map[string]int64{}, map[string]int64{}, map[string]time.Duration{}
	for r := range o.loopRounds {
		for _, t := range rotated(timed, r) {
			closedLoop(ctx, t, o.clients, o.loopDuration/10) // warm the connections
			var before time.Duration
			if t.cmd != nil {
				before = proc.CPUTime(t.cmd.Process.Pid)
			}
			ok, bad := closedLoop(ctx, t, o.clients, o.loopDuration)
			if t.cmd != nil {
				cpu[t.name] += proc.CPUTime(t.cmd.Process.Pid) - before
			}
			served[t.name] += ok
			failed[t.name] += bad
		}
	}

	progress("watch: %d changes", o.watchChanges)
	delays, missed, err := watchDelays(ctx, f, targets, o.watchChanges, o.watchGap)
	if err != nil {
		return err
	}
	rss := map[string]int64{}
	for _, t := range targets[1:] {
		rss[t.name] = proc.PeakRSS(t.cmd.Process.Pid)
	}

	var rot map[string][2]int64
	if o.rotation {
		progress("token rotation and revocation, counting failures for %v", o.rotationFor)
		if rot, err = rotation(ctx, f, targets, o.rotationConns, o.rotationFor); err != nil {
			return err
		}
	}
	for _, t := range targets[1:] {
		rss[t.name] = max(rss[t.name], proc.PeakRSS(t.cmd.Process.Pid))
	}
	var cpuWhere map[string]map[string]time.Duration
	if o.cpuProfiles != "" {
		cpuWhere = map[string]map[string]time.Duration{}
		for _, t := range targets[1:] {
			stopProcess(t) // it writes its profile
			file := kubectlProfile
			if t != kp {
				file = filepath.Join(o.cpuProfiles, profileName(t.name))
			}
			if cpuWhere[t.name], err = profileBreakdown(ctx, file); err != nil {
				return err
			}
		}
	}
	report(os.Stdout, o, targets, oursTLS, lat, served, failed, cpu, delays, missed, rss, rot, cpuWhere, time.Since(begin))
	return nil
}

// rotated returns targets starting at round r modulo their number, so that every target goes
// first, middle and last equally often.
func rotated(ts []*target, r int) []*target {
	i := r % len(ts)
	return append(append([]*target{}, ts[i:]...), ts[:i]...)
}

// profileName is the file of a variant's CPU profile.
func profileName(variant string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' {
			return r
		}
		return '-'
	}, variant) + ".pprof"
}

// stopProcess interrupts a proxy as Ctrl-C would, on which both write their CPU profile.
func stopProcess(t *target) {
	_ = t.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = t.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = t.cmd.Process.Kill()
		<-done
	}
}

// loadBefore is the load average when the run started, for the machine line.
var loadBefore string

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "proxybench: "+format+"\n", args...)
}

func report(w io.Writer, o options, targets []*target, tlsHop *target, lat map[string][]time.Duration, served, failed map[string]int64, cpu map[string]time.Duration,
	delays map[string][]time.Duration, missed map[string]int, rss map[string]int64, rot map[string][2]int64,
	cpuWhere map[string]map[string]time.Duration, took time.Duration) {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.3f", float64(d.Microseconds())/1000) }
	mb := func(b int64) string { return fmt.Sprintf("%.1f MB", float64(b)/(1<<20)) }
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 }
	d50, d99 := percentile(lat["direct"], 50), percentile(lat["direct"], 99)
	k50 := percentile(lat["kubectl proxy"], 50)
	rate := func(name string) float64 {
		return float64(served[name]) / (float64(o.loopRounds) * o.loopDuration.Seconds())
	}
	w50 := percentile(delays["direct"], 50)
	ours := targets[2:]

	fmt.Fprintf(w, "Machine: %s, %d cores; %s; Kubernetes %s (envtest); %d pods in the listed namespace; load average %s before the run, %s after.\n\n",
		proc.CPUModel(), runtime.NumCPU(), runtime.Version(), testenv.KubernetesVersion(), o.pods, loadBefore, proc.LoadAverage())
	fmt.Fprintf(w, "| measure | direct (TLS + token) | kubectl proxy |")
	for _, t := range ours {
		fmt.Fprintf(w, " %s |", t.name)
	}
	fmt.Fprintf(w, " goal for api-proxy |\n|---|---|---|%s---|\n", strings.Repeat("---|", len(ours)))
	row := func(measure string, cells []string, goal string) {
		fmt.Fprintf(w, "| %s | %s | %s |\n", measure, strings.Join(cells, " | "), goal)
	}
	c := make([]string, len(targets))
	for i, t := range targets {
		p := percentile(lat[t.name], 50)
		c[i] = ms(p) + " ms"
		if i > 0 {
			c[i] += fmt.Sprintf(" (%+.0f µs)", us(p-d50))
		}
	}
	row(fmt.Sprintf("pod list p50, 1 client (%d req each)", len(lat["direct"])), c, "≤ +100 µs")
	c[0], c[1] = "–", "1.00×"
	for i, t := range ours {
		c[i+2] = fmt.Sprintf("%.2f×", us(percentile(lat[t.name], 50)-d50)/us(k50-d50))
	}
	row("added p50 as a ratio to kubectl proxy's", c, "≤ 0.6×")
	h50 := percentile(lat[directHTTP1], 50)
	c[0] = fmt.Sprintf("%s ms over HTTP/1.1 (%+.0f µs)", ms(h50), us(h50-d50))
	for i, t := range targets[1:] {
		c[i+1] = fmt.Sprintf("%+.0f µs", us(percentile(lat[t.name], 50)-h50))
	}
	row("pod list p50 against a direct HTTP/1.1 client", c, "(the API server's own HTTP/1.1 and HTTP/2 costs differ)")
	for i, t := range targets {
		p := percentile(lat[t.name], 99)
		c[i] = fmt.Sprintf("%s ms (%.2f×)", ms(p), float64(p)/float64(d99))
	}
	row("pod list p99, 1 client", c, "≤ 1.3× direct")
	for i, t := range targets {
		c[i] = fmt.Sprintf("%.0f req/s (%.2f×)", rate(t.name), rate(t.name)/rate("direct"))
		if failed[t.name] > 0 {
			c[i] += fmt.Sprintf(", %d failed", failed[t.name])
		}
	}
	row(fmt.Sprintf("pod list throughput, %d clients closed loop", o.clients), c, "≥ kubectl proxy")
	perReq := func(name string) string {
		return fmt.Sprintf("%.0f µs", float64(cpu[name].Microseconds())/float64(max(served[name], 1)))
	}
	c[0] = "–"
	for i, t := range targets[1:] {
		c[i+1] = perReq(t.name)
	}
	row("proxy CPU per request in that loop (user+sys)", c, "≤ kubectl proxy")
	for i, t := range targets {
		p50, p99 := percentile(delays[t.name], 50), percentile(delays[t.name], 99)
		c[i] = fmt.Sprintf("%s / %s ms", ms(p50), ms(p99))
		if i > 0 {
			c[i] += fmt.Sprintf(" (%+.0f µs p50)", us(p50-w50))
		}
		if missed[t.name] > 0 {
			c[i] += fmt.Sprintf(", %d missed", missed[t.name])
		}
	}
	row(fmt.Sprintf("watch: change to event, p50 / p99 (%d changes)", o.watchChanges), c, "events stream at once")
	c[0] = "–"
	for i, t := range targets[1:] {
		c[i+1] = mb(rss[t.name])
		if i > 0 {
			c[i+1] += fmt.Sprintf(" (%.2f× kubectl proxy)", float64(rss[t.name])/float64(rss["kubectl proxy"]))
		}
	}
	row("peak RSS (VmHWM)", c, "≤ 20 MB")
	for i, t := range targets[1:] {
		c[i+1] = mb(fileSize(t.binary))
	}
	row("binary size", c, "≤ 15 MB")
	if rot != nil {
		for i, t := range targets {
			c[i] = fmt.Sprintf("%d of %d", rot[t.name][1], rot[t.name][0])
		}
		c[0] += " (old token: the control)"
		row(fmt.Sprintf("failed requests in the %v after token rotation + revocation", o.rotationFor), c, "0")
		if rot["direct"][1] == 0 {
			fmt.Fprintf(w, "\nThe old token still worked at the end of the rotation window (the API server caches token reviews "+
				"for 10s), so the rotation row proves nothing: run again with a longer -rotation-window.\n")
		}
	}
	if cpuWhere != nil {
		fmt.Fprintf(w, "\nWhere each proxy's CPU time went over the whole run (its CPU profile), in µs per request it served:\n\n| |")
		for _, t := range targets[1:] {
			fmt.Fprintf(w, " %s |", t.name)
		}
		fmt.Fprintf(w, "\n|---|%s\n", strings.Repeat("---|", len(targets)-1))
		perReq := func(d time.Duration, t *target) string {
			return fmt.Sprintf("%.1f", float64(d.Nanoseconds())/1000/float64(max(t.sent.Load(), 1)))
		}
		total := map[string]time.Duration{}
		for _, cat := range cpuCategories {
			fmt.Fprintf(w, "| %s |", cat)
			for _, t := range targets[1:] {
				fmt.Fprintf(w, " %s |", perReq(cpuWhere[t.name][cat], t))
				total[t.name] += cpuWhere[t.name][cat]
			}
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "| **total** |")
		for _, t := range targets[1:] {
			fmt.Fprintf(w, " **%s** (%d requests) |", perReq(total[t.name], t), t.sent.Load())
		}
		fmt.Fprintln(w)
	}
	if tlsHop != nil {
		reportTLSHop(w, o, ours[0].name, tlsHop.name, lat, rate, cpu, served)
	}
	fmt.Fprintf(w, "\nWhole run: %v. kubectl is the envtest assets' build; api-proxy is built with -trimpath -ldflags '-s -w'.\n", took.Round(time.Second))
	for _, v := range o.variants {
		if len(v.args)+len(v.env) > 0 {
			fmt.Fprintf(w, "%s: %s\n", v.name, strings.Join(append(slices.Clone(v.env), v.args...), " "))
		}
	}
}

// reportTLSHop compares transparent mode's TLS hop with the plain hop of the same process.
func reportTLSHop(w io.Writer, o options, plainHop, tlsName string, lat map[string][]time.Duration, rate func(string) float64,
	cpu map[string]time.Duration, served map[string]int64) {
	fmt.Fprintf(w, "\nTransparent mode: the TLS hop of the same process as %s (HTTP/2 over TLS to 127.0.0.1, its in-memory CA, "+
		"as client-go's in-cluster configuration speaks to it) against its plain HTTP/1.1 hop, in the same rounds:\n\n", plainHop)
	fmt.Fprintf(w, "| measure | plain HTTP hop | TLS hop | TLS / plain |\n|---|---|---|---|\n")
	hop := func(measure string, plain, tls float64, unit string, format string) {
		fmt.Fprintf(w, "| %s | "+format+" %s | "+format+" %s | %.2f× |\n", measure, plain, unit, tls, unit, tls/plain)
	}
	hop("pod list p50, 1 client", float64(percentile(lat[plainHop], 50).Microseconds())/1000, float64(percentile(lat[tlsName], 50).Microseconds())/1000, "ms", "%.3f")
	hop("pod list p99, 1 client", float64(percentile(lat[plainHop], 99).Microseconds())/1000, float64(percentile(lat[tlsName], 99).Microseconds())/1000, "ms", "%.3f")
	hop(fmt.Sprintf("pod list throughput, %d clients", o.clients), rate(plainHop), rate(tlsName), "req/s", "%.0f")
	hop("proxy CPU per request (user+sys)", float64(cpu[plainHop].Microseconds())/float64(max(served[plainHop], 1)),
		float64(cpu[tlsName].Microseconds())/float64(max(served[tlsName], 1)), "µs", "%.0f")
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}
