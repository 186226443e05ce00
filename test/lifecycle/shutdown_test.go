package lifecycle

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/api-access-injector/api-access-injector/injector"
)

// shutdownDelay is the test's --shutdown-delay: many times the balancer's probe period, as
// the chart's 10 s is many times the time an endpoint removal takes to reach every node.
const shutdownDelay = 2 * time.Second

// TestGracefulShutdown stops one of two webhook replicas with SIGTERM while pods are being
// created without pause in an enabled and an enforced namespace, and checks that no
// creation failed and every pod got its sidecar; that the stopped replica reported not
// ready first and kept accepting connections for its shutdown delay; and that it exited 0.
//
// The API server reaches the replicas through a balancer that plays the Service's part:
// each new connection goes to a replica that its readiness probe, polled every 100 ms, last
// found ready; connections already open stay where they are, as with kube-proxy.
func TestGracefulShutdown(t *testing.T) {
	ctx := t.Context()
	certDir := env.WebhookInstallOptions.LocalServingCertDir
	flags := []string{"--injector-namespace=api-access-system", "--shutdown-delay=" + shutdownDelay.String()}
	first := startWebhook(t, "replica-0", certDir, flags...)
	second := startWebhook(t, "replica-1", certDir, flags...)
	first.waitReady(t, 30*time.Second)
	second.waitReady(t, 30*time.Second)
	lb := serveBalancer(t, first, second)
	eventually(t, 10*time.Second, "the balancer to see both replicas ready", func() (bool, error) {
		return lb.ready[0].Load() && lb.ready[1].Load(), nil
	})

	var namespaces []string
	for _, mode := range []string{"enabled", "enforced"} {
		ns, err := clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
			GenerateName: "shutdown-" + mode + "-", Labels: map[string]string{"apiaccess.io/injection": mode},
		}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// No controller manager runs here to create it; the ServiceAccount admission plugin needs it.
		if _, err := clientset.CoreV1().ServiceAccounts(ns.Name).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		namespaces = append(namespaces, ns.Name)
	}

	// Create pods without pause, one stream per namespace, until told to stop.
	var attempts, failed, uninjected atomic.Int64
	var failures sync.Map // first errors, for the report
	cctx, stopCreating := context.WithCancel(ctx)
	var creators sync.WaitGroup
	for _, ns := range namespaces {
		creators.Go(func() {
			for i := 0; cctx.Err() == nil; i++ {
				pod := &corev1.Pod{
					ObjectMeta: metav1.ObjectMeta{Name: "p-" + strconv.Itoa(i)},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}},
				}
				attempts.Add(1)
				got, err := clientset.CoreV1().Pods(ns).Create(context.WithoutCancel(cctx), pod, metav1.CreateOptions{})
				switch {
				case err != nil:
					failed.Add(1)
					failures.LoadOrStore(ns, err)
				case len(got.Spec.InitContainers) == 0 || got.Spec.InitContainers[0].Name != injector.SidecarName:
					uninjected.Add(1)
					failures.LoadOrStore(ns+" uninjected", got.Name)
				}
			}
		})
	}
	defer func() { stopCreating(); creators.Wait() }()

	// Admissions flow through the first replica (the balancer prefers it while it is ready).
	eventually(t, 30*time.Second, "20 admissions through the first replica", func() (bool, error) {
		return attempts.Load() >= 20, nil
	})
	if lb.conns[0].Load() == 0 || lb.conns[1].Load() != 0 {
		t.Fatalf("connections before the stop: %d to the first replica, %d to the second; want all to the first", lb.conns[0].Load(), lb.conns[1].Load())
	}

	// Watch the first replica from outside: when its readiness fails, when the API server's
	// last connection to it closes, when it stops accepting.
	var notReadyAt, drainedAt, refusedAt time.Time
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for range tick.C {
			now := time.Now()
			if notReadyAt.IsZero() && !first.ready() {
				notReadyAt = now
			}
			if !notReadyAt.IsZero() && drainedAt.IsZero() && lb.open[0].Load() == 0 {
				drainedAt = now
			}
			conn, err := tls.Dial("tcp", "127.0.0.1:"+strconv.Itoa(first.port), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // only reachability counts
			if err != nil {
				refusedAt = now
				return
			}
			conn.Close()
		}
	}()

	stoppedAt := time.Now()
	before := attempts.Load()
	if code := first.stop(t, 30*time.Second); code != 0 {
		t.Errorf("exit code of the stopped replica = %d, want 0", code)
	}
	<-watched
	during := attempts.Load() - before
	// Then on through the second replica alone.
	after := attempts.Load()
	eventually(t, 30*time.Second, "20 admissions after the stop", func() (bool, error) {
		return attempts.Load() >= after+20, nil
	})
	stopCreating()
	creators.Wait()

	since := func(at time.Time) string {
		if at.IsZero() {
			return "never"
		}
		return at.Sub(stoppedAt).Round(time.Millisecond).String()
	}
	t.Logf("%d creations (%d while the replica stopped), %d failed, %d without sidecar; after SIGTERM: not ready %v, no connection from the API server %v, refusing connections %v",
		attempts.Load(), during, failed.Load(), uninjected.Load(), since(notReadyAt), since(drainedAt), since(refusedAt))
	if failed.Load() != 0 || uninjected.Load() != 0 {
		failures.Range(func(k, v any) bool { t.Errorf("%v: %v", k, v); return true })
		t.Errorf("%d creations failed and %d pods have no sidecar, want 0 and 0", failed.Load(), uninjected.Load())
	}
	if notReadyAt.IsZero() || refusedAt.IsZero() || !notReadyAt.Before(refusedAt) {
		t.Errorf("not ready at %v, refusing connections at %v: want readiness to fail first", notReadyAt, refusedAt)
	} else if served := refusedAt.Sub(notReadyAt); served < shutdownDelay/2 {
		t.Errorf("kept accepting connections %v after reporting not ready, want about the shutdown delay %v", served, shutdownDelay)
	}
	// The API server's connections to the stopping replica were closed by its answers, not
	// cut when it stopped (a connection cut while idle can race a new call on it).
	if drainedAt.IsZero() || !drainedAt.Before(refusedAt) {
		t.Errorf("the API server's connections to the stopping replica closed at %v, want before it stopped accepting at %v", drainedAt, refusedAt)
	}
	if lb.conns[1].Load() == 0 {
		t.Error("no connection reached the second replica: the stop was not covered by it")
	}
	for _, p := range []*process{first, second} {
		if p == second {
			if code := p.stop(t, 30*time.Second); code != 0 {
				t.Errorf("exit code of %s = %d, want 0", p.name, code)
			}
		}
		p.quietLog(t)
	}
}

// balancer forwards TCP connections from the front listener to the first backend whose
// readiness it last found good, as a Service does: a connection it cannot place, or whose
// backend refuses it, is closed, which the API server sees as a failed call.
type balancer struct {
	backends []*process
	ready    []atomic.Bool  // readiness as last probed
	conns    []atomic.Int64 // connections forwarded to each backend
	open     []atomic.Int64 // of which still open
}

// serveBalancer has the front forward to a new balancer for the rest of the test.
func serveBalancer(t *testing.T, backends ...*process) *balancer {
	t.Helper()
	lb := &balancer{backends: backends, ready: make([]atomic.Bool, len(backends)), conns: make([]atomic.Int64, len(backends)), open: make([]atomic.Int64, len(backends))}
	ctx, cancel := context.WithCancel(t.Context())
	var probes sync.WaitGroup
	t.Cleanup(func() { cancel(); probes.Wait() })
	for i, p := range backends {
		probes.Go(func() {
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for {
				lb.ready[i].Store(p.ready())
				select {
				case <-tick.C:
				case <-ctx.Done():
					return
				}
			}
		})
	}
	front.set(lb)
	t.Cleanup(func() { front.set(nil) })
	return lb
}

func (lb *balancer) forward(client net.Conn) {
	defer client.Close()
	i := lb.firstReady()
	if i < 0 {
		return
	}
	lb.conns[i].Add(1)
	lb.open[i].Add(1)
	defer lb.open[i].Add(-1)
	backend, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(lb.backends[i].port))
	if err != nil {
		return
	}
	defer backend.Close()
	// Each direction is copied until its sender closes, and the close passed on (half-close),
	// so that either side ending the connection ends it for the other.
	var wg sync.WaitGroup
	for _, d := range [][2]net.Conn{{backend, client}, {client, backend}} {
		wg.Go(func() {
			_, _ = io.Copy(d[0], d[1])
			_ = d[0].(*net.TCPConn).CloseWrite()
		})
	}
	wg.Wait()
}

// firstReady returns the first backend found ready, or -1.
func (lb *balancer) firstReady() int {
	for i := range lb.ready {
		if lb.ready[i].Load() {
			return i
		}
	}
	return -1
}

// frontDoor is the address the installed webhook configuration calls. It hands each
// connection to the balancer of the test that runs, and closes it when none does.
type frontDoor struct {
	net.Listener
	lb atomic.Pointer[balancer]
}

func (f *frontDoor) set(lb *balancer) { f.lb.Store(lb) }

// serve accepts connections until the listener is closed.
func (f *frontDoor) serve() {
	for {
		conn, err := f.Accept()
		if err != nil {
			return
		}
		if lb := f.lb.Load(); lb != nil {
			go lb.forward(conn)
		} else {
			conn.Close()
		}
	}
}
