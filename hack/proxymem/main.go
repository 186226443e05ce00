// Command proxymem measures the api-proxy sidecar's peak memory under bursts of large writes:
// it starts the real api-proxy binary against envtest's API server, sends rounds of concurrent
// POSTs of a ConfigMap of about 1 MiB (server-side dry run, so etcd stores nothing), and
// reports the process's peak resident set size (VmHWM from /proc) against its idle peak in the
// same run and against the sidecar's default memory limit. With -baseline-ref it builds
// cmd/api-proxy from another commit too and measures both binaries against the same API
// server, one after the other. See README.md.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/api-access-injector/api-access-injector/hack/internal/proc"
	"github.com/api-access-injector/api-access-injector/test/framework/testenv"
)

const (
	namespace = "proxymem"
	saName    = "writer"
	// defaultLimit is the sidecar's default memory limit (injector.Config, the chart's
	// sidecar.resources.limits.memory).
	defaultLimit = 64 << 20
)

// options are the knobs of a run.
type options struct {
	concurrency int
	size        int
	rounds      int
	baselineRef string
	baselineBin string
	proxyBin    string
	proxyArgs   []string
	baseArgs    []string
}

func main() {
	var o options
	flag.IntVar(&o.concurrency, "concurrency", 64, "Concurrent writes in each burst.")
	flag.IntVar(&o.size, "size", 1<<20, "Size in bytes of each write's request body (a ConfigMap, at most 1 MiB).")
	flag.IntVar(&o.rounds, "rounds", 5, "Bursts per binary.")
	flag.StringVar(&o.baselineRef, "baseline-ref", "", "A git commit (such as main) whose cmd/api-proxy is built and measured first, as the baseline.")
	flag.StringVar(&o.baselineBin, "baseline", "", "A prebuilt api-proxy binary measured first, as the baseline (instead of -baseline-ref).")
	flag.StringVar(&o.proxyBin, "api-proxy", "", "A prebuilt api-proxy binary to measure instead of building ./cmd/api-proxy.")
	flag.Func("proxy-args", "Extra space-separated flags for the measured api-proxy (not the baseline), "+
		"optionally preceded by NAME=value environment variables (such as GOMEMLIMIT=48MiB). Repeat it to measure the binary once per set of flags, in the same run.", func(v string) error {
		o.proxyArgs = append(o.proxyArgs, v)
		return nil
	})
	flag.Func("baseline-args", "Like -proxy-args, for the baseline; repeat it to measure the baseline once per set.", func(v string) error {
		o.baseArgs = append(o.baseArgs, v)
		return nil
	})
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintf(os.Stderr, "proxymem: %v\n", err)
		os.Exit(1)
	}
}

// result is what one binary did under the bursts.
type result struct {
	name                 string
	idle, peak           int64 // VmHWM in bytes, after the warm-up and after the bursts
	ok, failed           int64
	firstFailure         string
	slowest, totalDuring time.Duration
}

func run(o options) error {
	if o.size > 1<<20 || o.size < 1<<10 {
		return fmt.Errorf("-size %d: want 1024 to 1048576 bytes (a ConfigMap holds at most 1 MiB)", o.size)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	work, err := os.MkdirTemp("", "proxymem-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(work) }()

	type binary struct {
		name, path string
		args       []string
	}
	var bins []binary
	var base binary
	switch {
	case o.baselineBin != "":
		base = binary{name: "baseline (" + filepath.Base(o.baselineBin) + ")", path: o.baselineBin}
	case o.baselineRef != "":
		progress("building the baseline api-proxy from %s", o.baselineRef)
		p, err := buildAt(ctx, o.baselineRef, work)
		if err != nil {
			return err
		}
		base = binary{name: "baseline (" + o.baselineRef + ")", path: p}
	}
	if base.path != "" && len(o.baseArgs) == 0 {
		bins = append(bins, base)
	}
	for _, a := range o.baseArgs {
		bins = append(bins, binary{name: base.name + " " + a, path: base.path, args: strings.Fields(a)})
	}
	cur := o.proxyBin
	if cur == "" {
		progress("building ./cmd/api-proxy")
		cur = filepath.Join(work, "api-proxy")
		if err := build(ctx, ".", cur); err != nil {
			return err
		}
	}
	if len(o.proxyArgs) == 0 {
		bins = append(bins, binary{name: "this tree", path: cur})
	}
	for _, a := range o.proxyArgs {
		bins = append(bins, binary{name: "this tree " + a, path: cur, args: strings.Fields(a)})
	}

	progress("starting envtest")
	env, cfg, err := testenv.Start()
	if err != nil {
		return err
	}
	defer func() { _ = env.Stop() }()
	saDir := filepath.Join(work, "serviceaccount")
	if err := setup(ctx, cfg, saDir); err != nil {
		return fmt.Errorf("creating the namespace, ServiceAccount and token: %w", err)
	}
	body, err := configMap(o.size)
	if err != nil {
		return err
	}

	var results []result
	for _, b := range bins {
		progress("%s: %d bursts of %d concurrent %d-byte writes", b.name, o.rounds, o.concurrency, len(body))
		r, err := measure(ctx, b.path, b.args, cfg.Host, saDir, body, o)
		if err != nil {
			return fmt.Errorf("%s: %w", b.name, err)
		}
		r.name = b.name
		results = append(results, r)
	}
	report(os.Stdout, o, len(body), results)
	return nil
}

// measure starts the binary, warms it up, reads its idle peak, fires the bursts and reads its
// peak again.
func measure(ctx context.Context, bin string, extra []string, server, saDir string, body []byte, o options) (result, error) {
	port, health := proc.FreePort(), proc.FreePort()
	args := append(extra, "--port="+strconv.Itoa(port), "--health-port="+strconv.Itoa(health),
		"--server="+server, "--serviceaccount-dir="+saDir)
	var env []string
	for len(args) > 0 && !strings.HasPrefix(args[0], "-") && strings.Contains(args[0], "=") {
		env, args = append(env, args[0]), args[1:] // NAME=value before the flags
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return result{}, err
	}
	defer stopProcess(cmd)
	if err := proc.WaitOK(ctx, "http://127.0.0.1:"+strconv.Itoa(health)+"/readyz"); err != nil {
		return result{}, fmt.Errorf("%w\n%s", err, stderr.String())
	}
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	client := &http.Client{Transport: &http.Transport{
		MaxIdleConns: o.concurrency, MaxIdleConnsPerHost: o.concurrency, DisableCompression: true,
	}}
	defer client.CloseIdleConnections()
	url := base + "/api/v1/namespaces/" + namespace + "/configmaps?dryRun=All"

	// Warm-up: one small write, so that the idle figure includes the upstream connection.
	small, _ := json.Marshal(&corev1.ConfigMap{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{GenerateName: "warmup-"}, Data: map[string]string{"k": "v"}})
	if err := post(ctx, client, url, small); err != nil {
		return result{}, fmt.Errorf("warm-up write: %w", err)
	}
	r := result{idle: proc.PeakRSS(cmd.Process.Pid)}

	var ok, failed atomic.Int64
	var first atomic.Value
	var slowest atomic.Int64
	start := time.Now()
	for range o.rounds {
		var wg sync.WaitGroup
		for range o.concurrency {
			wg.Go(func() {
				t0 := time.Now()
				if err := post(ctx, client, url, body); err != nil {
					failed.Add(1)
					first.CompareAndSwap(nil, err.Error())
					return
				}
				ok.Add(1)
				d := int64(time.Since(t0))
				for {
					s := slowest.Load()
					if d <= s || slowest.CompareAndSwap(s, d) {
						break
					}
				}
			})
		}
		wg.Wait()
		if ctx.Err() != nil {
			return result{}, ctx.Err()
		}
	}
	r.totalDuring = time.Since(start)
	r.peak = proc.PeakRSS(cmd.Process.Pid)
	r.ok, r.failed = ok.Load(), failed.Load()
	r.slowest = time.Duration(slowest.Load())
	if f, _ := first.Load().(string); f != "" {
		r.firstFailure = f
	}
	if err := proc.WaitOK(ctx, "http://127.0.0.1:"+strconv.Itoa(health)+"/healthz"); err != nil || r.peak == 0 {
		return r, fmt.Errorf("api-proxy did not survive the bursts (%w):\n%s", err, stderr.String())
	}
	return r, nil
}

// post sends one write and reads the whole answer; anything but 201 Created is an error.
func post(ctx context.Context, c *http.Client, url string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	b, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("%s: %.300s", resp.Status, b)
	}
	return nil
}

// configMap returns the JSON of a ConfigMap whose encoding is size bytes long.
func configMap(size int) ([]byte, error) {
	cm := &corev1.ConfigMap{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{GenerateName: "big-"}, Data: map[string]string{"data": ""}}
	empty, err := json.Marshal(cm)
	if err != nil {
		return nil, err
	}
	if size <= len(empty) {
		return nil, fmt.Errorf("-size %d: want more than %d bytes", size, len(empty))
	}
	cm.Data["data"] = strings.Repeat("x", size-len(empty))
	return json.Marshal(cm)
}

// setup creates the namespace, a ServiceAccount allowed to create ConfigMaps there, and the
// service-account directory api-proxy reads: a real token from the TokenRequest API, ca.crt
// and namespace.
func setup(ctx context.Context, cfg *rest.Config, dir string) error {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	for _, sa := range []string{"default", saName} {
		if _, err := cs.CoreV1().ServiceAccounts(namespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	if _, err := cs.RbacV1().Roles(namespace).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "configmap-writer"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"create", "get", "list"}}},
	}, metav1.CreateOptions{}); err != nil {
		return err
	}
	if _, err := cs.RbacV1().RoleBindings(namespace).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "writer"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: saName, Namespace: namespace}},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "configmap-writer"},
	}, metav1.CreateOptions{}); err != nil {
		return err
	}
	expiry := int64(3600)
	tr, err := cs.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, saName, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry}}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	return errors.Join(
		os.WriteFile(filepath.Join(dir, "token"), []byte(tr.Status.Token), 0o600),
		os.WriteFile(filepath.Join(dir, "ca.crt"), cfg.CAData, 0o644),
		os.WriteFile(filepath.Join(dir, "namespace"), []byte(namespace), 0o644),
	)
}

// build builds the api-proxy of the module in dir as the image does.
func build(ctx context.Context, dir, out string) error {
	abs, err := filepath.Abs(out)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", abs, "./cmd/api-proxy")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building api-proxy in %s: %w\n%s", dir, err, out)
	}
	return nil
}

// buildAt exports the tree of ref (git archive) and builds its api-proxy.
func buildAt(ctx context.Context, ref, work string) (string, error) {
	src := filepath.Join(work, "baseline-src")
	if err := os.Mkdir(src, 0o755); err != nil {
		return "", err
	}
	archive := exec.CommandContext(ctx, "git", "archive", "--format=tar", ref)
	untar := exec.CommandContext(ctx, "tar", "-x", "-C", src)
	pipe, err := archive.StdoutPipe()
	if err != nil {
		return "", err
	}
	untar.Stdin = pipe
	var stderr bytes.Buffer
	archive.Stderr, untar.Stderr = &stderr, &stderr
	if err := untar.Start(); err != nil {
		return "", err
	}
	if err := archive.Run(); err != nil {
		return "", fmt.Errorf("git archive %s: %w\n%s", ref, err, stderr.String())
	}
	if err := untar.Wait(); err != nil {
		return "", fmt.Errorf("unpacking %s: %w\n%s", ref, err, stderr.String())
	}
	out := filepath.Join(work, "api-proxy-baseline")
	return out, build(ctx, src, out)
}

func report(w io.Writer, o options, size int, rs []result) {
	mib := func(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
	fmt.Fprintf(w, "Machine: %s, %d cores; %s; Kubernetes %s (envtest).\n", proc.CPUModel(), runtime.NumCPU(), runtime.Version(), testenv.KubernetesVersion())
	fmt.Fprintf(w, "Load: %d bursts of %d concurrent POSTs of a %d-byte ConfigMap (dryRun=All) through api-proxy, HTTP/1.1 on loopback.\n\n",
		o.rounds, o.concurrency, size)
	fmt.Fprintf(w, "| api-proxy | idle VmHWM | peak VmHWM under the bursts | peak / idle | peak / 64 MiB limit | writes ok / failed | slowest write | bursts took |\n")
	fmt.Fprintf(w, "|---|---|---|---|---|---|---|---|\n")
	for _, r := range rs {
		fmt.Fprintf(w, "| %s | %s | %s | %.1f× | %.0f%% | %d / %d | %v | %v |\n", r.name, mib(r.idle), mib(r.peak),
			float64(r.peak)/float64(max(r.idle, 1)), 100*float64(r.peak)/defaultLimit, r.ok, r.failed,
			r.slowest.Round(time.Millisecond), r.totalDuring.Round(time.Millisecond))
	}
	for _, r := range rs {
		if r.firstFailure != "" {
			fmt.Fprintf(w, "\n%s: first failure: %s\n", r.name, r.firstFailure)
		}
	}
}

func stopProcess(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "proxymem: "+format+"\n", args...)
}
