// Command e2e-app is the workload of the test/realcluster suite: a small program that uses the
// Kubernetes API the way users' apps do inside an injected pod, through what the injector
// gave it (KUBECONFIG, KUBE_API_URL), and prints one line "RESULT <json>" that the suite reads
// from the container's log. It exits 0 once it has a result to report, whatever the API said,
// and 1 when it could not run at all.
//
//	e2e-app list [-serve]          list pods with client-go (KUBECONFIG) and plain HTTP (KUBE_API_URL),
//	                               report whether a service-account token is mounted; -serve keeps running
//	e2e-app write                  create a ConfigMap through KUBE_API_URL, report the answer
//	e2e-app incluster              as an app that knows nothing of the sidecar: rest.InClusterConfig(),
//	                               list the pods of the namespace its service-account files name,
//	                               create a ConfigMap there, report both answers
//	e2e-app serve                  answer HTTP on :8080 (a target for port-forward)
//	e2e-app portforward POD PORT   port-forward to POD:PORT through KUBECONFIG, GET / through it
//	e2e-app exec POD CONTAINER     run "/e2e-app hello" in POD through KUBECONFIG
//	e2e-app hello                  print "hello"
//	e2e-app soak DURATION          list pods through KUBE_API_URL every second for DURATION
//
// POD_NAMESPACE (downward API) names the namespace for plain HTTP calls.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"
)

// tokenPath is where a service-account token would be mounted in an app container.
const tokenPath = "/var/run/secrets/kubernetes.io/serviceaccount/token" //nolint:gosec // a path, no credential

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: e2e-app list [-serve] | write | incluster | serve | portforward POD PORT | exec POD CONTAINER | hello | soak DURATION")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	var result any
	var err error
	args := os.Args[2:]
	switch os.Args[1] {
	case "list":
		result, err = list(ctx)
		if err == nil && len(args) > 0 && args[0] == "-serve" {
			report(result)
			err = serve(ctx)
			result = nil
		}
	case "write":
		result, err = write(ctx)
	case "incluster":
		result, err = inCluster(ctx)
	case "serve":
		err = serve(ctx)
	case "portforward":
		result, err = portForward(ctx, arg(args, 0), arg(args, 1))
	case "exec":
		result, err = execIn(ctx, arg(args, 0), arg(args, 1))
	case "hello":
		fmt.Println("hello")
	case "soak":
		var d time.Duration
		if d, err = time.ParseDuration(arg(args, 0)); err == nil {
			result, err = soak(ctx, d)
		}
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if result != nil {
		report(result)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e-app:", err)
		os.Exit(1)
	}
}

func arg(args []string, i int) string {
	if i < len(args) {
		return args[i]
	}
	return ""
}

func report(v any) {
	data, _ := json.Marshal(v)
	fmt.Printf("RESULT %s\n", data)
}

// ListResult is what `list` reports.
type ListResult struct {
	Namespace     string `json:"namespace"`
	ClientGoPods  int    `json:"clientGoPods"`
	ClientGoError string `json:"clientGoError,omitempty"`
	HTTPStatus    int    `json:"httpStatus"`
	HTTPPods      int    `json:"httpPods"`
	HTTPError     string `json:"httpError,omitempty"`
	TokenMounted  bool   `json:"tokenMounted"`
}

func kubeconfig() (*rest.Config, string, error) {
	loader := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(clientcmd.NewDefaultClientConfigLoadingRules(), nil)
	cfg, err := loader.ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("loading KUBECONFIG %q: %w", os.Getenv("KUBECONFIG"), err)
	}
	ns, _, err := loader.Namespace()
	if err != nil {
		return nil, "", fmt.Errorf("namespace of KUBECONFIG: %w", err)
	}
	return cfg, ns, nil
}

func list(ctx context.Context) (ListResult, error) {
	r := ListResult{}
	_, err := os.Stat(tokenPath)
	r.TokenMounted = err == nil
	cfg, ns, err := kubeconfig()
	r.Namespace = ns
	if err != nil {
		r.ClientGoError = err.Error()
	} else if cs, err := kubernetes.NewForConfig(cfg); err != nil {
		r.ClientGoError = err.Error()
	} else if pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{}); err != nil {
		r.ClientGoError = err.Error()
	} else {
		r.ClientGoPods = len(pods.Items)
	}
	status, body, err := call(ctx, http.MethodGet, "/api/v1/namespaces/"+os.Getenv("POD_NAMESPACE")+"/pods", nil)
	r.HTTPStatus = status
	var pods corev1.PodList
	switch {
	case err != nil:
		r.HTTPError = err.Error()
	case status != http.StatusOK:
		r.HTTPError = string(body)
	case json.Unmarshal(body, &pods) != nil:
		r.HTTPError = "not a PodList: " + string(body)
	default:
		r.HTTPPods = len(pods.Items)
	}
	return r, nil
}

// call sends one request to KUBE_API_URL with no credentials of its own.
func call(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
	base := os.Getenv("KUBE_API_URL")
	if base == "" {
		return 0, nil, errors.New("KUBE_API_URL is not set")
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, data, err
}

// WriteResult is what `write` reports: the proxy's or the API server's answer.
type WriteResult struct {
	Status int             `json:"status"`
	Body   json.RawMessage `json:"body,omitempty"`
	Error  string          `json:"error,omitempty"`
}

func write(ctx context.Context) (WriteResult, error) {
	cm := `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"generateName":"e2e-app-"},"data":{"from":"e2e-app"}}`
	status, body, err := call(ctx, http.MethodPost, "/api/v1/namespaces/"+os.Getenv("POD_NAMESPACE")+"/configmaps", []byte(cm))
	r := WriteResult{Status: status}
	if err != nil {
		r.Error = err.Error()
	} else if json.Valid(body) {
		r.Body = body
	} else {
		r.Error = "not JSON: " + string(body)
	}
	return r, nil
}

// InClusterResult is what `incluster` reports, in the shape of the other in-cluster clients'
// reports (test/framework/materialize.ClientReport).
type InClusterResult struct {
	Pods       []string `json:"pods"`
	ListError  string   `json:"listError,omitempty"`
	WriteError string   `json:"writeError,omitempty"`
}

// inCluster is the Go program of the Kubernetes docs' "Use the official client libraries"
// (https://kubernetes.io/docs/tasks/run-application/access-api-from-pod/): nothing in it knows of
// the sidecar.
func inCluster(ctx context.Context) (InClusterResult, error) {
	var r InClusterResult
	cfg, err := rest.InClusterConfig()
	if err != nil {
		return r, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return r, err
	}
	ns, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
	if err != nil {
		return r, err
	}
	if pods, err := cs.CoreV1().Pods(string(ns)).List(ctx, metav1.ListOptions{}); err != nil {
		r.ListError = err.Error()
	} else {
		for _, p := range pods.Items {
			r.Pods = append(r.Pods, p.Name)
		}
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "written-by-go"}}
	if _, err := cs.CoreV1().ConfigMaps(string(ns)).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		r.WriteError = err.Error()
	}
	return r, nil
}

func serve(ctx context.Context) error {
	host, _ := os.Hostname()
	srv := &http.Server{Addr: ":8080", ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "hello from %s", host)
	})}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// TunnelResult is what `portforward` and `exec` report.
type TunnelResult struct {
	OK     bool   `json:"ok"`
	Output string `json:"output,omitempty"`
	Error  string `json:"error,omitempty"`
}

func portForward(ctx context.Context, pod, port string) (TunnelResult, error) {
	cfg, ns, err := kubeconfig()
	if err != nil {
		return TunnelResult{}, err
	}
	transport, upgrader, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		return TunnelResult{}, err
	}
	u, err := url.Parse(strings.TrimSuffix(cfg.Host, "/") + "/api/v1/namespaces/" + ns + "/pods/" + pod + "/portforward")
	if err != nil {
		return TunnelResult{}, err
	}
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, u)
	stopCh, readyCh := make(chan struct{}), make(chan struct{})
	var errOut bytes.Buffer
	fw, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{"0:" + port}, stopCh, readyCh, io.Discard, &errOut)
	if err != nil {
		return TunnelResult{}, err
	}
	done := make(chan error, 1)
	go func() { done <- fw.ForwardPorts() }()
	defer close(stopCh)
	select {
	case err := <-done:
		return TunnelResult{Error: fmt.Sprintf("port-forward: %v %s", err, errOut.String())}, nil
	case <-readyCh:
	case <-time.After(20 * time.Second):
		return TunnelResult{Error: "port-forward: not ready after 20s"}, nil
	}
	ports, err := fw.GetPorts()
	if err != nil || len(ports) == 0 {
		return TunnelResult{Error: fmt.Sprintf("port-forward: no local port: %v", err)}, nil
	}
	target := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(int(ports[0].Local))) + "/"
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return TunnelResult{Error: fmt.Sprintf("GET through the tunnel: %v %s", err, errOut.String())}, nil
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	return TunnelResult{OK: resp.StatusCode == http.StatusOK, Output: string(body)}, nil
}

func execIn(ctx context.Context, pod, container string) (TunnelResult, error) {
	cfg, ns, err := kubeconfig()
	if err != nil {
		return TunnelResult{}, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return TunnelResult{}, err
	}
	req := cs.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: container, Command: []string{"/e2e-app", "hello"}, Stdout: true, Stderr: true},
			clientgoscheme.ParameterCodec)
	exec, err := remotecommand.NewSPDYExecutor(cfg, http.MethodPost, req.URL())
	if err != nil {
		return TunnelResult{}, err
	}
	var stdout, stderr bytes.Buffer
	if err := exec.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &stdout, Stderr: &stderr}); err != nil {
		return TunnelResult{Error: err.Error(), Output: stdout.String() + stderr.String()}, nil
	}
	return TunnelResult{OK: true, Output: stdout.String()}, nil
}

// SoakResult is what `soak` reports.
type SoakResult struct {
	Requests  int      `json:"requests"`
	Failures  int      `json:"failures"`
	FirstFail string   `json:"firstFailure,omitempty"`
	Statuses  []string `json:"failureStatuses,omitempty"`
}

func soak(ctx context.Context, d time.Duration) (SoakResult, error) {
	var r SoakResult
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		status, body, err := call(ctx, http.MethodGet, "/api/v1/namespaces/"+os.Getenv("POD_NAMESPACE")+"/pods", nil)
		if ctx.Err() != nil {
			return r, nil
		}
		r.Requests++
		if err != nil || status != http.StatusOK {
			r.Failures++
			msg := fmt.Sprintf("%s: %d %v %.200s", time.Now().UTC().Format(time.RFC3339), status, err, body)
			fmt.Println("FAILURE", msg)
			if r.FirstFail == "" {
				r.FirstFail = msg
			}
			if len(r.Statuses) < 20 {
				r.Statuses = append(r.Statuses, msg)
			}
		}
		if r.Requests%60 == 0 {
			fmt.Printf("PROGRESS requests=%d failures=%d\n", r.Requests, r.Failures)
		}
		select {
		case <-ctx.Done():
			return r, nil
		case <-tick.C:
		}
	}
}
