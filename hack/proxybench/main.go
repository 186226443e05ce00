// Command proxybench measures what the api-proxy sidecar costs next to a direct client and
// next to kubectl proxy, in one run against one envtest API server: pod-list latency and
// throughput, watch event delay, peak memory, binary size, and requests failed across a
// token rotation. It prints a markdown table. See README.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
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
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintf(os.Stderr, "proxybench: %v\n", err)
		os.Exit(1)
	}
}

func run(o options) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	begin := time.Now()
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
	direct, err := f.direct()
	if err != nil {
		return err
	}
	progress("building and starting api-proxy, starting kubectl proxy")
	ours, oursTLS, err := f.startAPIProxy(ctx, work, o.proxyBinary)
	if ours != nil && ours.cmd != nil {
		defer stopProcess(ours)
	}
	if err != nil {
		return err
	}
	kp, err := f.startKubectlProxy(ctx, filepath.Join(assets, "kubectl"), work)
	if kp != nil && kp.cmd != nil {
		defer stopProcess(kp)
	}
	if err != nil {
		return err
	}
	targets := []*target{direct, kp, ours}
	// The TLS hop of transparent mode takes turns with the others in the latency and
	// throughput rounds, so that it is measured against the plain hop under the same noise.
	timed := []*target{direct, kp, ours, oursTLS}

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
	rss := map[string]int64{kp.name: proc.PeakRSS(kp.cmd.Process.Pid), ours.name: proc.PeakRSS(ours.cmd.Process.Pid)}

	var rot map[string][2]int64
	if o.rotation {
		progress("token rotation and revocation, counting failures for %v", o.rotationFor)
		if rot, err = rotation(ctx, f, targets, o.rotationConns, o.rotationFor); err != nil {
			return err
		}
	}
	for _, t := range []*target{kp, ours} {
		rss[t.name] = max(rss[t.name], proc.PeakRSS(t.cmd.Process.Pid))
	}
	report(os.Stdout, o, targets, lat, served, failed, cpu, delays, missed, rss, rot, time.Since(begin))
	return nil
}

// rotated returns targets starting at round r modulo their number, so that every target goes
// first, middle and last equally often.
func rotated(ts []*target, r int) []*target {
	i := r % len(ts)
	return append(append([]*target{}, ts[i:]...), ts[:i]...)
}

func stopProcess(t *target) {
	_ = t.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = t.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = t.cmd.Process.Kill()
		<-done
	}
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "proxybench: "+format+"\n", args...)
}

func report(w io.Writer, o options, targets []*target, lat map[string][]time.Duration, served, failed map[string]int64, cpu map[string]time.Duration,
	delays map[string][]time.Duration, missed map[string]int, rss map[string]int64, rot map[string][2]int64, took time.Duration) {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.3f", float64(d.Microseconds())/1000) }
	mb := func(b int64) string { return fmt.Sprintf("%.1f MB", float64(b)/(1<<20)) }
	d50, d99 := percentile(lat["direct"], 50), percentile(lat["direct"], 99)
	rate := func(name string) float64 {
		return float64(served[name]) / (float64(o.loopRounds) * o.loopDuration.Seconds())
	}
	w50 := percentile(delays["direct"], 50)

	fmt.Fprintf(w, "Machine: %s, %d cores; %s; Kubernetes %s (envtest); %d pods in the listed namespace.\n\n",
		proc.CPUModel(), runtime.NumCPU(), runtime.Version(), testenv.KubernetesVersion(), o.pods)
	fmt.Fprintf(w, "| measure | direct (TLS + token) | kubectl proxy | api-proxy | goal for api-proxy |\n|---|---|---|---|---|\n")
	row := func(measure string, cells [3]string, goal string) {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", measure, cells[0], cells[1], cells[2], goal)
	}
	var c [3]string
	for i, t := range targets {
		p := percentile(lat[t.name], 50)
		c[i] = ms(p) + " ms"
		if i > 0 {
			c[i] += fmt.Sprintf(" (%+.0f µs)", float64((p-d50).Nanoseconds())/1000)
		}
	}
	row(fmt.Sprintf("pod list p50, 1 client (%d req each)", len(lat["direct"])), c, "≤ +100 µs (issue: ≤ +300 µs)")
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
	row("proxy CPU per request in that loop (user+sys)", [3]string{"–", perReq("kubectl proxy"), perReq("api-proxy")}, "≤ kubectl proxy")
	for i, t := range targets {
		p50, p99 := percentile(delays[t.name], 50), percentile(delays[t.name], 99)
		c[i] = fmt.Sprintf("%s / %s ms", ms(p50), ms(p99))
		if i > 0 {
			c[i] += fmt.Sprintf(" (%+.0f µs p50)", float64((p50-w50).Nanoseconds())/1000)
		}
		if missed[t.name] > 0 {
			c[i] += fmt.Sprintf(", %d missed", missed[t.name])
		}
	}
	row(fmt.Sprintf("watch: change to event, p50 / p99 (%d changes)", o.watchChanges), c, "events stream at once")
	row("peak RSS (VmHWM)", [3]string{"–", mb(rss["kubectl proxy"]), mb(rss["api-proxy"])}, "≤ 20 MB (issue: ≤ ½ kubectl proxy)")
	row("binary size", [3]string{"–", mb(fileSize(targets[1].binary)), mb(fileSize(targets[2].binary))}, "≤ 15 MB")
	if rot != nil {
		cell := func(name string) string { return fmt.Sprintf("%d of %d", rot[name][1], rot[name][0]) }
		row(fmt.Sprintf("failed requests in the %v after token rotation + revocation", o.rotationFor),
			[3]string{cell("direct") + " (old token: the control)", cell("kubectl proxy"), cell("api-proxy")}, "0")
		if rot["direct"][1] == 0 {
			fmt.Fprintf(w, "\nThe old token still worked at the end of the rotation window (the API server caches token reviews "+
				"for 10s), so the rotation row proves nothing: run again with a longer -rotation-window.\n")
		}
	}
	fmt.Fprintf(w, "\nTransparent mode: the same api-proxy process's TLS hop (HTTP/2 over TLS to 127.0.0.1, its in-memory CA, "+
		"as client-go's in-cluster configuration speaks to it) against its plain HTTP/1.1 hop, in the same rounds:\n\n")
	fmt.Fprintf(w, "| measure | plain HTTP hop | TLS hop | TLS / plain |\n|---|---|---|---|\n")
	hop := func(measure string, plain, tls float64, unit string, format string) {
		fmt.Fprintf(w, "| %s | "+format+" %s | "+format+" %s | %.2f× |\n", measure, plain, unit, tls, unit, tls/plain)
	}
	const plainHop, tlsHop = "api-proxy", "api-proxy TLS"
	hop("pod list p50, 1 client", float64(percentile(lat[plainHop], 50).Microseconds())/1000, float64(percentile(lat[tlsHop], 50).Microseconds())/1000, "ms", "%.3f")
	hop("pod list p99, 1 client", float64(percentile(lat[plainHop], 99).Microseconds())/1000, float64(percentile(lat[tlsHop], 99).Microseconds())/1000, "ms", "%.3f")
	hop(fmt.Sprintf("pod list throughput, %d clients", o.clients), rate(plainHop), rate(tlsHop), "req/s", "%.0f")
	hop("proxy CPU per request (user+sys)", float64(cpu[plainHop].Microseconds())/float64(max(served[plainHop], 1)),
		float64(cpu[tlsHop].Microseconds())/float64(max(served[tlsHop], 1)), "µs", "%.0f")
	fmt.Fprintf(w, "\nWhole run: %v. kubectl is the envtest assets' build; api-proxy is built with -trimpath -ldflags '-s -w'.\n", took.Round(time.Second))
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}
