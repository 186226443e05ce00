package materialize

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"

	"github.com/api-access-injector/api-access-injector/injector"
	"github.com/api-access-injector/api-access-injector/proxy"
)

// appTimeout bounds each run of the app and of kubectl.
const appTimeout = 30 * time.Second

// maxGrace bounds how long Run waits for the sidecar after SIGTERM.
const maxGrace = 15 * time.Second

// Options tell Run what to materialise and what to run in place of the images.
type Options struct {
	// Config is an admin configuration of the API server that stored Pod.
	Config *rest.Config
	// Pod is the pod as the API server stored it, after injection.
	Pod *corev1.Pod
	// Root is an absolute directory for the volumes and home directories; it should be empty.
	Root string
	// ProxyBinary is a locally built api-proxy, run in place of the entrypoint of the
	// sidecar's image and of the kubeconfig init container's (injector.KubeconfigInitName).
	ProxyBinary string
	// KubectlSidecar says that the sidecar runs `kubectl proxy` (the injector's sidecar.mode
	// kubectl): Kubectl then stands in for its image, with the in-cluster configuration it
	// would read (see ProcessOptions.InClusterConfig), and is required.
	KubectlSidecar bool
	// App is the argv of the app run with the app container's environment: a program whose
	// main calls AppMain when IsApp reports true, typically the caller's own executable.
	App []string
	// AppContainer names the app container; default the first regular container.
	AppContainer string
	// Kubectl, when set, is a kubectl binary that is run as `kubectl get pods -o name` with the
	// app container's environment too.
	Kubectl string
	// SidecarLogs, when set, receives the sidecar's output as it is written.
	SidecarLogs io.Writer
}

// Result is what Run did and saw, for the caller to print.
type Result struct {
	// Volumes are the directories written, one per volume.
	Volumes []string
	// Sidecar is the sidecar's process that ran (api-proxy, or kubectl proxy).
	Sidecar *Process
	// KubeconfigInit is the kubeconfig init container's process, when the pod has one.
	KubeconfigInit *Process
	// App is the app's process: its environment is the app container's, with nothing added
	// but the marker that makes the caller's executable act as the app.
	App *Process
	// Report is what the app saw.
	Report AppReport
	// Kubectl lists the pods `kubectl get pods` printed, when Options.Kubectl was set.
	Kubectl []string
	// SidecarLog is everything the sidecar wrote.
	SidecarLog string
}

// Run materialises a pod: it writes the volumes of the sidecar, the kubeconfig init container
// (if any) and the app container, starts the sidecar and waits for its startupProbe, runs the
// kubeconfig init container to completion, runs the app (and kubectl) with the app
// container's environment, then stops the sidecar with SIGTERM. The user's own init
// containers are not run: their images cannot run here. It returns an error if any step
// fails, any way of listing pods fails, or the sidecar does not exit cleanly; the Result then
// holds what was done up to that point.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.ProxyBinary == "" || len(o.App) == 0 {
		return nil, errors.New("materialize: Options.ProxyBinary and Options.App are required")
	}
	if o.KubectlSidecar && o.Kubectl == "" {
		return nil, errors.New("materialize: Options.Kubectl is required with KubectlSidecar")
	}
	k, err := New(o.Config, o.Pod, o.Root)
	if err != nil {
		return nil, err
	}
	app := o.AppContainer
	if app == "" {
		if len(o.Pod.Spec.Containers) == 0 {
			return nil, errors.New("materialize: the pod has no containers")
		}
		app = o.Pod.Spec.Containers[0].Name
	}
	run := []string{injector.SidecarName, app}
	_, err = k.container(injector.KubeconfigInitName)
	hasInit := err == nil
	if hasInit {
		run = append(run, injector.KubeconfigInitName)
	}
	res := &Result{}
	if res.Volumes, err = k.WriteVolumes(ctx, run...); err != nil {
		return res, err
	}
	sidecarOpts := SidecarOptions(o.ProxyBinary)
	if o.KubectlSidecar {
		sidecarOpts = KubectlSidecarOptions(o.Kubectl)
	}
	if res.Sidecar, err = k.Process(ctx, injector.SidecarName, sidecarOpts); err != nil {
		return res, err
	}
	sidecar, err := k.Start(res.Sidecar, o.SidecarLogs)
	if err != nil {
		return res, err
	}
	errs := []error{k.WaitStarted(ctx, sidecar)}
	if errs[0] == nil && hasInit {
		// As the kubelet: the init container after the sidecar runs to completion before the
		// app containers start.
		if res.KubeconfigInit, err = k.Process(ctx, injector.KubeconfigInitName, ProcessOptions{Entrypoint: []string{o.ProxyBinary}}); err == nil {
			var out []byte
			if out, err = execute(ctx, res.KubeconfigInit); err != nil {
				err = fmt.Errorf("materialize: init container %s: %w:\n%s", injector.KubeconfigInitName, err, out)
			}
		}
		errs = append(errs, err)
	}
	if errors.Join(errs...) == nil {
		errs = append(errs, runApp(ctx, k, app, o, res))
	}
	stopErr := sidecar.Stop(k.grace())
	if o.KubectlSidecar && diedOf(stopErr, syscall.SIGTERM) {
		// kubectl proxy does not handle SIGTERM and dies of it; the kubelet counts that as
		// stopped (exit code 143), not as a failure of the pod.
		stopErr = nil
	}
	errs = append(errs, stopErr)
	res.SidecarLog = sidecar.Log()
	return res, errors.Join(errs...)
}

// SidecarOptions run the api-proxy binary at path in place of the sidecar image, told where
// its service-account volume is, since it reads that directory by default.
func SidecarOptions(path string) ProcessOptions {
	return ProcessOptions{
		Entrypoint:        []string{path},
		ImplicitPathFlags: map[string]string{"serviceaccount-dir": proxy.DefaultServiceAccountDir},
	}
}

// KubectlSidecarOptions run the kubectl binary at path in place of the kubectl image, for
// the sidecar and its exec probe, with the in-cluster configuration it would read.
func KubectlSidecarOptions(path string) ProcessOptions {
	return ProcessOptions{Entrypoint: []string{path}, Programs: map[string]string{"kubectl": path}, InClusterConfig: true}
}

func runApp(ctx context.Context, k *Kubelet, container string, o Options, res *Result) error {
	var err error
	if res.App, err = k.Process(ctx, container, ProcessOptions{Argv: o.App}); err != nil {
		return err
	}
	out, err := execute(ctx, res.App, AppEnvVar+"=1")
	if jerr := json.Unmarshal(out, &res.Report); jerr != nil {
		return fmt.Errorf("materialize: the app's report: %w (exit: %w); it wrote:\n%s", jerr, err, out)
	}
	var errs []error
	if res.Report.ClientGoError != "" {
		errs = append(errs, fmt.Errorf("materialize: the app listing pods with client-go through KUBECONFIG: %s", res.Report.ClientGoError))
	}
	if res.Report.HTTPError != "" {
		errs = append(errs, fmt.Errorf("materialize: the app listing pods through KUBE_API_URL: %s", res.Report.HTTPError))
	}
	if o.Kubectl != "" {
		p, err := k.Process(ctx, container, ProcessOptions{Argv: []string{o.Kubectl, "get", "pods", "-o", "name"}})
		if err != nil {
			return err
		}
		out, err := execute(ctx, p)
		if err != nil {
			errs = append(errs, fmt.Errorf("materialize: kubectl get pods with the app's environment: %w:\n%s", err, out))
		}
		for l := range strings.FieldsSeq(string(out)) {
			if name, ok := strings.CutPrefix(l, "pod/"); ok {
				res.Kubectl = append(res.Kubectl, name)
			}
		}
	}
	return errors.Join(errs...)
}

// Execute runs a process to completion, bounded by appTimeout, with extra environment, and
// returns its stdout, and its stderr too when it fails.
func Execute(ctx context.Context, p *Process, extraEnv ...string) ([]byte, error) {
	return execute(ctx, p, extraEnv...)
}

// execute runs a process to completion, with extra environment, and returns its stdout (and
// its stderr too when it fails).
func execute(ctx context.Context, p *Process, extraEnv ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, appTimeout)
	defer cancel()
	cmd, err := p.command(ctx)
	if err != nil {
		return nil, err
	}
	cmd.Env = slices.Concat(cmd.Env, extraEnv)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return append(stdout.Bytes(), stderr.Bytes()...), fmt.Errorf("%s: %w", p.Argv[0], err)
	}
	return stdout.Bytes(), nil
}

// diedOf reports whether err says that a process was killed by sig.
func diedOf(err error, sig syscall.Signal) bool {
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		return false
	}
	ws, ok := exit.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == sig
}

// grace is the pod's termination grace period, bounded for tests and demos.
func (k *Kubelet) grace() time.Duration {
	g := maxGrace
	if s := k.Pod.Spec.TerminationGracePeriodSeconds; s != nil && time.Duration(*s)*time.Second < g {
		g = time.Duration(*s) * time.Second
	}
	return g
}
