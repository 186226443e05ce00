package materialize

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/api-access-injector/api-access-injector/test/framework/syncbuffer"
)

// Running is a started container process.
type Running struct {
	// Process is what was started.
	Process *Process

	cmd  *exec.Cmd
	log  *syncbuffer.Buffer
	done chan struct{}
	err  error // set before done is closed
}

// Start starts a container's process. Its stdout and stderr are kept (see Log) and copied to
// logs when it is not nil.
func (k *Kubelet) Start(p *Process, logs io.Writer) (*Running, error) {
	r := &Running{Process: p, log: &syncbuffer.Buffer{}, done: make(chan struct{})}
	var out io.Writer = r.log
	if logs != nil {
		out = io.MultiWriter(r.log, logs)
	}
	cmd, err := p.command(context.Background())
	if err != nil {
		return nil, fmt.Errorf("materialize: starting container %q: %w", p.Container, err)
	}
	r.cmd = cmd
	r.cmd.Stdout, r.cmd.Stderr = out, out
	if err := r.cmd.Start(); err != nil {
		return nil, fmt.Errorf("materialize: starting container %q: %w", p.Container, err)
	}
	go func() {
		r.err = r.cmd.Wait()
		close(r.done)
	}()
	return r, nil
}

// Log returns what the process wrote so far.
func (r *Running) Log() string { return r.log.String() }

// Pid is the process id, for reading /proc.
func (r *Running) Pid() int { return r.cmd.Process.Pid }

// Stop sends SIGTERM, as the kubelet does, and waits up to grace before killing the process.
// It returns nil if the process exited with status 0.
func (r *Running) Stop(grace time.Duration) error {
	select {
	case <-r.done:
		return r.exitErr()
	default:
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
		return r.exitErr()
	case <-time.After(grace):
		_ = r.cmd.Process.Kill()
		<-r.done
		return fmt.Errorf("materialize: container %q did not exit within %v of SIGTERM and was killed", r.Process.Container, grace)
	}
}

func (r *Running) exitErr() error {
	if r.err != nil {
		return fmt.Errorf("materialize: container %q: %w", r.Process.Container, r.err)
	}
	return nil
}

// WaitStarted runs the container's startupProbe as the kubelet does (initial delay, period,
// timeout, failure threshold), against 127.0.0.1, and returns once it passes: the kubelet
// starts the next container only then. A container without a startupProbe counts as
// started at once. httpGet, tcpSocket and exec probes are supported; an exec probe runs its
// command with the container's environment (ProcessOptions.Programs stand in for the image's
// programs).
func (k *Kubelet) WaitStarted(ctx context.Context, r *Running) error {
	c, err := k.container(r.Process.Container)
	if err != nil {
		return err
	}
	p := c.StartupProbe
	if p == nil {
		return nil
	}
	period := time.Duration(max(p.PeriodSeconds, 1)) * time.Second
	timeout := time.Duration(max(p.TimeoutSeconds, 1)) * time.Second
	threshold := max(p.FailureThreshold, 1)
	check, err := probeCheck(c, p, timeout, r.Process)
	if err != nil {
		return fmt.Errorf("materialize: container %q: %w", c.Name, err)
	}
	wait := time.Duration(p.InitialDelaySeconds) * time.Second
	var last error
	for range threshold {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-r.done:
			return fmt.Errorf("materialize: container %q exited before its startupProbe passed (%w); its log:\n%s", c.Name, r.err, r.Log())
		case <-time.After(wait):
		}
		wait = period
		if last = check(ctx); last == nil {
			return nil
		}
	}
	return fmt.Errorf("materialize: container %q: startupProbe failed %d times, last: %w; its log:\n%s", c.Name, threshold, last, r.Log())
}

// probeCheck returns one try of a probe.
func probeCheck(c *corev1.Container, p *corev1.Probe, timeout time.Duration, proc *Process) (func(context.Context) error, error) {
	switch {
	case p.Exec != nil:
		argv := slices.Clone(p.Exec.Command)
		if len(argv) == 0 {
			return nil, errors.New("exec probe with no command")
		}
		if prog, ok := proc.programs[argv[0]]; ok {
			argv[0] = prog
		}
		return func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
			cmd.Env, cmd.Dir = proc.Env, proc.Dir
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("exec %q: %w: %s", p.Exec.Command, err, bytes.TrimSpace(out))
			}
			return nil
		}, nil
	case p.HTTPGet != nil:
		g := p.HTTPGet
		port, err := probePort(c, g.Port)
		if err != nil {
			return nil, err
		}
		host := g.Host
		if host == "" {
			host = "127.0.0.1"
		}
		scheme := strings.ToLower(string(g.Scheme))
		if scheme == "" {
			scheme = "http"
		}
		url := scheme + "://" + net.JoinHostPort(host, strconv.Itoa(port)) + g.Path
		// The kubelet does not verify a probe's certificate.
		client := &http.Client{Timeout: timeout, Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // as the kubelet's prober
			DisableKeepAlives: true,
		}}
		return func(ctx context.Context) error {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			if err != nil {
				return err
			}
			for _, h := range g.HTTPHeaders {
				req.Header.Add(h.Name, h.Value)
			}
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
			_ = resp.Body.Close()
			// The kubelet's rule: 200 <= status < 400 passes.
			if resp.StatusCode < 200 || resp.StatusCode >= 400 {
				return fmt.Errorf("GET %s: %s: %s", url, resp.Status, bytes.TrimSpace(body))
			}
			return nil
		}, nil
	case p.TCPSocket != nil:
		port, err := probePort(c, p.TCPSocket.Port)
		if err != nil {
			return nil, err
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		return func(ctx context.Context) error {
			d := net.Dialer{Timeout: timeout}
			conn, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				return err
			}
			return conn.Close()
		}, nil
	}
	return nil, errors.New("only httpGet, tcpSocket and exec startup probes are supported")
}

// probePort resolves a probe's port, a number or the name of one of the container's ports.
func probePort(c *corev1.Container, port intstr.IntOrString) (int, error) {
	if port.Type == intstr.Int {
		return port.IntValue(), nil
	}
	for _, p := range c.Ports {
		if p.Name == port.StrVal {
			return int(p.ContainerPort), nil
		}
	}
	return 0, fmt.Errorf("probe port %q is not a port of the container", port.StrVal)
}
