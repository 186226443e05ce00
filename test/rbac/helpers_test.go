package rbac_test

import (
	"bytes"
	"context"
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

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/api-access-injector/api-access-injector/internal/rbac"
	"github.com/api-access-injector/api-access-injector/test/framework/testenv"
)

// admin starts the control plane once and returns an admin client and config.
func admin(t *testing.T) (*kubernetes.Clientset, *rest.Config) {
	t.Helper()
	cfg := sharedEnv.Config(t)
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs, cfg
}

// namespace creates a namespace named prefix-<random> (or exactly name, given as "=name") with
// a ServiceAccount "app" in it.
func namespace(t *testing.T, cs *kubernetes.Clientset, prefix string) string {
	t.Helper()
	meta := metav1.ObjectMeta{GenerateName: prefix + "-"}
	if name, exact := strings.CutPrefix(prefix, "="); exact {
		meta = metav1.ObjectMeta{Name: name}
	}
	ns, err := cs.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: meta}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ServiceAccounts(ns.Name).Create(t.Context(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "app"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// token asks the TokenRequest API for a token of the ServiceAccount ns/sa, bound to pod if
// given, as the kubelet asks for a projected token.
func token(t *testing.T, cs *kubernetes.Clientset, ns, sa string, pod ...*corev1.Pod) string {
	t.Helper()
	exp := int64(3600)
	spec := authenticationv1.TokenRequestSpec{ExpirationSeconds: &exp}
	if len(pod) > 0 {
		spec.BoundObjectRef = &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod[0].Name, UID: pod[0].UID}
	}
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(t.Context(), sa,
		&authenticationv1.TokenRequest{Spec: spec}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
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

// sidecar is a real api-proxy process serving the API on a loopback port with a
// ServiceAccount's token, as the injected sidecar does in a pod.
type sidecar struct {
	port, healthPort int
	logs             *bytes.Buffer
}

// startSidecar writes the service-account directory the projected volume would hold (a real
// token, the CA, the namespace) and starts api-proxy on it; it waits, bounded, for /readyz.
func startSidecar(t *testing.T, cfg *rest.Config, ns, tok string) *sidecar {
	t.Helper()
	dir := t.TempDir()
	for name, data := range map[string][]byte{"token": []byte(tok), "ca.crt": cfg.CAData, "namespace": []byte(ns)} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s := &sidecar{port: freePort(t), healthPort: freePort(t), logs: new(bytes.Buffer)}
	cmd := exec.Command(proxyBin, "--server="+cfg.Host, "--serviceaccount-dir="+dir,
		fmt.Sprintf("--port=%d", s.port), fmt.Sprintf("--health-port=%d", s.healthPort))
	cmd.Stdout, cmd.Stderr = s.logs, s.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		var exit error
		select {
		case exit = <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			exit = <-exited
		}
		if t.Failed() {
			t.Logf("api-proxy (exit: %v) log:\n%s", exit, s.logs)
		}
	})
	ready := fmt.Sprintf("http://127.0.0.1:%d/readyz", s.healthPort)
	err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		select {
		case err := <-exited:
			return false, fmt.Errorf("api-proxy exited: %w", err)
		default:
		}
		resp, err := http.Get(ready)
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		t.Fatalf("api-proxy not ready: %v\n%s", err, s.logs)
	}
	return s
}

// client is the app's client: client-go through the sidecar, with no credential, as an
// injected app's KUBECONFIG gives it.
func (s *sidecar) client(t *testing.T) *kubernetes.Clientset {
	t.Helper()
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: fmt.Sprintf("http://127.0.0.1:%d", s.port)})
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// kubeconfig writes a kubeconfig file for cfg (client certificate or token).
func kubeconfig(t *testing.T, cfg *rest.Config, namespace string) string {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["envtest"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["user"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
	kc.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "user", Namespace: namespace}
	kc.CurrentContext = "envtest"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// rbacCommand runs the rbac command as `api-access-injector rbac` runs it, with stdin, and
// returns its standard output; it fails the test on an error.
func rbacCommand(t *testing.T, stdin []byte, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	if err := rbac.Command(t.Context(), "api-access-injector rbac", args, bytes.NewReader(stdin), &out, &errOut); err != nil {
		t.Fatalf("rbac %v: %v\n%s", args, err, errOut.String())
	}
	if errOut.Len() > 0 {
		t.Logf("rbac %v stderr:\n%s", args, errOut.String())
	}
	return out.String()
}

// kubectl runs envtest's kubectl with the kubeconfig, stdin, and returns its output.
func kubectl(t *testing.T, kubeconfigPath string, stdin []byte, args ...string) string {
	t.Helper()
	dir, err := testenv.AssetsDir()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), filepath.Join(dir, "kubectl"), append([]string{"--kubeconfig=" + kubeconfigPath}, args...)...)
	cmd.Stdin = bytes.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// waitFor polls cond, bounded, until it holds; what it last said is in the failure.
func waitFor(t *testing.T, cond func() (bool, string)) {
	t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		ok, s := cond()
		last = s
		return ok, nil
	})
	if err != nil {
		t.Fatalf("%v; last: %s", err, last)
	}
}
