package materialize

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/api-access-injector/api-access-injector/injector"
)

// AppEnvVar set to "1" in its environment tells the caller's executable to act as the app
// (see IsApp and AppMain). It is the only variable Run adds to the app container's.
const AppEnvVar = "APIACCESS_MATERIALIZE_APP"

// AppReport is what the app saw, written by AppMain as JSON on stdout.
type AppReport struct {
	// Namespace is the namespace of the kubeconfig's current context.
	Namespace string `json:"namespace"`
	// ClientGo lists the pods client-go listed through KUBECONFIG.
	ClientGo []string `json:"clientGo"`
	// ClientGoError says why that failed.
	ClientGoError string `json:"clientGoError,omitempty"`
	// HTTP lists the pods a plain HTTP GET on $KUBE_API_URL listed.
	HTTP []string `json:"http"`
	// HTTPError says why that failed.
	HTTPError string `json:"httpError,omitempty"`
}

// InClusterApp as the value of AppEnvVar makes AppMain an in-cluster Go program instead:
// one that knows nothing of the sidecar and configures client-go with rest.InClusterConfig(),
// as the Kubernetes docs recommend, lists the pods of the namespace its service-account files
// name, tries to create a ConfigMap there, and writes a ClientReport.
const InClusterApp = "incluster"

// InClusterLoopApp as the value of AppEnvVar makes AppMain the program of InClusterApp with
// one client for its whole life, as long-running controllers keep theirs: configured once by
// rest.InClusterConfig() (which loads ca.crt then), it lists the pods each time it reads a line
// on stdin, writing a ClientReport line for each (no write attempted), until stdin ends.
const InClusterLoopApp = "incluster-loop"

// ClientReport is what an in-cluster client saw: the pods it listed and why a list or a write
// failed.
type ClientReport struct {
	Pods       []string `json:"pods"`
	ListError  string   `json:"listError,omitempty"`
	WriteError string   `json:"writeError,omitempty"`
}

// IsApp reports whether this process was started by Run as the app.
func IsApp() bool { return os.Getenv(AppEnvVar) != "" }

// AppMain is the app: with nothing but its container's environment, it lists the pods of its
// namespace with client-go through KUBECONFIG and with plain HTTP through KUBE_API_URL, writes
// an AppReport on stdout and returns the exit code. Call it from main (or TestMain) when IsApp.
func AppMain() int {
	ctx, cancel := context.WithTimeout(context.Background(), appTimeout)
	defer cancel()
	switch os.Getenv(AppEnvVar) {
	case InClusterApp:
		return inClusterMain(ctx)
	case InClusterLoopApp:
		return inClusterLoopMain()
	}
	var r AppReport
	loader := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(clientcmd.NewDefaultClientConfigLoadingRules(), nil)
	ns, _, err := loader.Namespace()
	if err != nil {
		r.ClientGoError = fmt.Sprintf("reading the kubeconfig: %v", err)
	}
	r.Namespace = ns
	if err == nil {
		r.ClientGo, err = listClientGo(ctx, loader, ns)
		if err != nil {
			r.ClientGoError = err.Error()
		}
	}
	if r.HTTP, err = listHTTP(ctx, os.Getenv(injector.KubeAPIURLEnvVar), ns); err != nil {
		r.HTTPError = err.Error()
	}
	if err := json.NewEncoder(os.Stdout).Encode(r); err != nil {
		return 2
	}
	if r.ClientGoError != "" || r.HTTPError != "" {
		return 1
	}
	return 0
}

func listClientGo(ctx context.Context, loader clientcmd.ClientConfig, ns string) ([]string, error) {
	cfg, err := loader.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("loading the kubeconfig: %w", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(pods.Items))
	for _, p := range pods.Items {
		names = append(names, p.Name)
	}
	return names, nil
}

func listHTTP(ctx context.Context, base, ns string) ([]string, error) {
	if base == "" {
		return nil, fmt.Errorf("%s is not set", injector.KubeAPIURLEnvVar)
	}
	u := base + "/api/v1/namespaces/" + url.PathEscape(ns) + "/pods"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", u, resp.Status, body)
	}
	var list metav1.PartialObjectMetadataList
	if err := json.Unmarshal(body, &list); err != nil {
		return nil, fmt.Errorf("GET %s: decoding: %w", u, err)
	}
	names := make([]string, 0, len(list.Items))
	for _, p := range list.Items {
		names = append(names, p.Name)
	}
	return names, nil
}

// inClusterLoopMain is the program of InClusterLoopApp. Each list is bounded by appTimeout;
// the program lives as long as its stdin.
func inClusterLoopMain() int {
	cfg, err := rest.InClusterConfig()
	var cs *kubernetes.Clientset
	if err == nil {
		cs, err = kubernetes.NewForConfig(cfg)
	}
	ns, nerr := os.ReadFile(inClusterDir + "/namespace")
	err = errors.Join(err, nerr)
	enc := json.NewEncoder(os.Stdout)
	for in := bufio.NewScanner(os.Stdin); in.Scan(); {
		var r ClientReport
		if err != nil {
			r.ListError = err.Error()
		} else {
			ctx, cancel := context.WithTimeout(context.Background(), appTimeout)
			if pods, err := cs.CoreV1().Pods(string(ns)).List(ctx, metav1.ListOptions{}); err != nil {
				r.ListError = err.Error()
			} else {
				for _, p := range pods.Items {
					r.Pods = append(r.Pods, p.Name)
				}
			}
			cancel()
		}
		if err := enc.Encode(r); err != nil {
			return 2
		}
	}
	return 0
}

// inClusterMain is the in-cluster Go program of InClusterApp.
func inClusterMain(ctx context.Context) int {
	var r ClientReport
	cfg, err := rest.InClusterConfig()
	var cs *kubernetes.Clientset
	if err == nil {
		cs, err = kubernetes.NewForConfig(cfg)
	}
	ns, nerr := os.ReadFile(inClusterDir + "/namespace")
	if err = errors.Join(err, nerr); err != nil {
		r.ListError = err.Error()
	} else {
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
	}
	if err := json.NewEncoder(os.Stdout).Encode(r); err != nil {
		return 2
	}
	return 0
}
