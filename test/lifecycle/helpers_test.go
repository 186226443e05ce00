package lifecycle

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"

	"github.com/api-access-injector/api-access-injector/test/framework/syncbuffer"
	"github.com/api-access-injector/api-access-injector/test/framework/testenv"
)

// process is one running `api-access-injector webhook`.
type process struct {
	name    string
	cmd     *exec.Cmd
	port    int    // webhook HTTPS port
	probe   string // address of /healthz and /readyz
	certDir string
	out     *syncbuffer.Buffer // stdout and stderr, as the container runtime collects them
	exited  chan struct{}
	err     error // of cmd.Wait, once exited is closed
}

// startWebhook starts the webhook command with the flags the chart passes (cert dir, ports,
// JSON logs at info) and the given ones. The process is killed when the test ends, if still
// running; its output is printed if the test failed.
func startWebhook(t *testing.T, name, certDir string, flags ...string) *process {
	t.Helper()
	p := &process{name: name, certDir: certDir, out: &syncbuffer.Buffer{}, exited: make(chan struct{})}
	p.port = freePort(t)
	p.probe = "127.0.0.1:" + strconv.Itoa(freePort(t))
	args := append([]string{"webhook",
		"--cert-dir=" + certDir,
		"--webhook-port=" + strconv.Itoa(p.port),
		"--health-probe-bind-address=" + p.probe,
		"--metrics-bind-address=0",
		"--log-level=info",
		"--sidecar-image=registry.example.com/api-proxy:lifecycle",
	}, flags...)
	p.cmd = exec.Command(binary, args...)
	p.cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("output of %s:\n%s", name, p.out.String())
		}
	})
	return p
}

// ready reports whether the process answers /readyz with 200.
func (p *process) ready() bool {
	resp, err := http.Get("http://" + p.probe + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// waitReady waits until the process is ready, failing the test if it exits or times out.
func (p *process) waitReady(t *testing.T, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, p.name+" to become ready", func() (bool, error) {
		select {
		case <-p.exited:
			return false, fmt.Errorf("%s exited before it was ready: %w", p.name, p.err)
		default:
		}
		return p.ready(), nil
	})
}

// stop sends SIGTERM and waits for the process to exit, returning its exit code.
func (p *process) stop(t *testing.T, timeout time.Duration) int {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("signalling %s: %v", p.name, err)
	}
	return p.wait(t, timeout)
}

// wait waits for the process to exit and returns its exit code.
func (p *process) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(timeout):
		t.Fatalf("%s did not exit within %v", p.name, timeout)
	}
	if exit, ok := errors.AsType[*exec.ExitError](p.err); ok {
		return exit.ExitCode()
	}
	if p.err != nil {
		t.Fatalf("%s: %v", p.name, p.err)
	}
	return 0
}

// servedCert returns the SHA-256 fingerprint of the certificate the process serves.
func (p *process) servedCert(t *testing.T) string {
	t.Helper()
	conn, err := tls.Dial("tcp", "127.0.0.1:"+strconv.Itoa(p.port), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // only the certificate is looked at
	if err != nil {
		t.Fatalf("%s: %v", p.name, err)
	}
	defer conn.Close()
	return fingerprint(conn.ConnectionState().PeerCertificates[0].Raw)
}

func fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// logLine is one JSON log line, as zap writes it.
type logLine map[string]any

func (l logLine) msg() string { s, _ := l["msg"].(string); return s }

// quietLog parses the process's whole output as JSON log lines and reports, as test errors,
// every line an operator would have to look into: one that is not JSON (klog's text format,
// a panic, a bare print), one at error level or above, one with a stack trace.
func (p *process) quietLog(t *testing.T) []logLine {
	t.Helper()
	var lines []logLine
	for i, raw := range strings.Split(strings.TrimRight(p.out.String(), "\n"), "\n") {
		if raw == "" {
			continue
		}
		var l logLine
		if err := json.Unmarshal([]byte(raw), &l); err != nil {
			t.Errorf("%s: line %d is not a JSON log line: %s", p.name, i+1, raw)
			continue
		}
		if lvl, _ := l["level"].(string); lvl != "debug" && lvl != "info" && lvl != "warn" {
			t.Errorf("%s: line %d at level %q: %s", p.name, i+1, lvl, raw)
		}
		if _, ok := l["stacktrace"]; ok {
			t.Errorf("%s: line %d carries a stack trace: %s", p.name, i+1, raw)
		}
		lines = append(lines, l)
	}
	if len(lines) == 0 {
		t.Errorf("%s logged nothing", p.name)
	}
	return lines
}

// count returns how many lines have the message.
func count(lines []logLine, msg string) int {
	n := 0
	for _, l := range lines {
		if l.msg() == msg {
			n++
		}
	}
	return n
}

// eventually calls cond until it returns true, fails the test if it returns an error or
// stays false beyond timeout.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(timeout)
	for {
		ok, err := cond()
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			return
		}
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	addr, err := testenv.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(port)
	return n
}

// selfManagedSetup creates what the chart creates for self-managed certificates, in a
// namespace of the test's own: the namespace, the empty Secret and a webhook configuration
// (two entries that match no namespace, so that no admission ever calls them). It returns
// the flags that point the webhook command at them.
func selfManagedSetup(t *testing.T, ns string) []string {
	t.Helper()
	ctx := t.Context()
	if _, err := clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := clientset.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "api-access-injector-tls"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	entry := func(name string) admissionregistrationv1.MutatingWebhook {
		return admissionregistrationv1.MutatingWebhook{
			Name:                    name,
			AdmissionReviewVersions: []string{"v1"},
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: ptr.To("https://127.0.0.1:1/" + name)},
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"lifecycle.apiaccess.io/never": "true"}},
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
		}
	}
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: ns},
		Webhooks:   []admissionregistrationv1.MutatingWebhook{entry("a.lifecycle.apiaccess.io"), entry("b.lifecycle.apiaccess.io")},
	}
	if _, err := clientset.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, mwc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = clientset.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(context.WithoutCancel(ctx), ns, metav1.DeleteOptions{})
	})
	return []string{
		"--self-managed-certs",
		"--injector-namespace=" + ns,
		"--cert-secret=api-access-injector-tls",
		"--webhook-config-name=" + ns,
		"--service-name=api-access-injector-webhook",
	}
}

// mountSecret plays the kubelet's part for the Secret volume of each directory: it watches
// the Secret and, whenever its certificate changes, replaces the files atomically, as a
// Secret volume update does. It runs until the test ends.
func mountSecret(t *testing.T, ns, name string, dirs ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	w, err := clientset.CoreV1().Secrets(ns).Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String()})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(done)
		defer w.Stop()
		var last []byte
		for ev := range w.ResultChan() {
			s, ok := ev.Object.(*corev1.Secret)
			if !ok || (ev.Type != watch.Added && ev.Type != watch.Modified) {
				if st, ok := ev.Object.(*metav1.Status); ok && ctx.Err() == nil {
					t.Errorf("watching the Secret: %v", apierrors.FromObject(st))
				}
				continue
			}
			if len(s.Data["tls.crt"]) == 0 || bytes.Equal(s.Data["tls.crt"], last) {
				continue
			}
			for _, dir := range dirs {
				for _, key := range []string{"ca.crt", "tls.key", "tls.crt"} {
					tmp := filepath.Join(dir, "."+key)
					err := os.WriteFile(tmp, s.Data[key], 0o600)
					if err == nil {
						err = os.Rename(tmp, filepath.Join(dir, key))
					}
					if err != nil {
						t.Errorf("writing %s: %v", key, err)
					}
				}
			}
			last = s.Data["tls.crt"]
		}
	}()
}
