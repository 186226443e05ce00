package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/api-access-injector/api-access-injector/hack/internal/proc"
)

const (
	benchNS = "bench"
	benchSA = "bench"
)

// target is one way of reaching the API server.
type target struct {
	name   string
	base   string
	client *http.Client
	auth   string       // Authorization header, direct only
	cmd    *exec.Cmd    // the proxy process, nil for direct
	binary string       // the proxy's binary
	sent   atomic.Int64 // requests sent, in every phase
}

func (t *target) get(ctx context.Context, path string) (*http.Response, error) {
	t.sent.Add(1)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.base+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	if t.auth != "" {
		req.Header.Set("Authorization", t.auth)
	}
	return t.client.Do(req)
}

// fixture is the namespace, ServiceAccount, RBAC and pods the bench reads, and the
// service-account directory both proxies read the token from.
type fixture struct {
	admin *kubernetes.Clientset
	cfg   *rest.Config
	dir   string // token, ca.crt, namespace
}

func newFixture(ctx context.Context, cfg *rest.Config, dir string, pods int) (*fixture, error) {
	admin, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	f := &fixture{admin: admin, cfg: cfg, dir: dir}
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: benchNS}}, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	for _, sa := range []string{"default", benchSA} {
		if _, err := admin.CoreV1().ServiceAccounts(benchNS).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			return nil, err
		}
	}
	if _, err := admin.RbacV1().Roles(benchNS).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "pod-reader"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}}},
	}, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	if _, err := admin.RbacV1().RoleBindings(benchNS).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "bench-pod-reader"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: benchSA, Namespace: benchNS}},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "pod-reader"},
	}, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	for i := range pods {
		if _, err := admin.CoreV1().Pods(benchNS).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pod-%d", i), Labels: map[string]string{"app": "bench"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{
				Name: "app", Image: "registry.example.com/app:1", Command: []string{"/app"},
				Env: []corev1.EnvVar{{Name: "INDEX", Value: strconv.Itoa(i)}},
			}}},
		}, metav1.CreateOptions{}); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), cfg.CAData, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "namespace"), []byte(benchNS), 0o644); err != nil {
		return nil, err
	}
	_, err = f.writeToken(ctx, "token-1")
	return f, err
}

// writeToken requests a token for the bench ServiceAccount bound to a new Secret named
// secret (deleting the Secret revokes the token) and writes it atomically, as the kubelet
// swaps a projected volume's files.
func (f *fixture) writeToken(ctx context.Context, secret string) (string, error) {
	s, err := f.admin.CoreV1().Secrets(benchNS).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: secret}}, metav1.CreateOptions{})
	if err != nil {
		return "", err
	}
	tr, err := f.admin.CoreV1().ServiceAccounts(benchNS).CreateToken(ctx, benchSA, &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		ExpirationSeconds: ptr.To[int64](3600),
		BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Secret", APIVersion: "v1", Name: s.Name, UID: s.UID},
	}}, metav1.CreateOptions{})
	if err != nil {
		return "", err
	}
	tmp := filepath.Join(f.dir, ".token.tmp")
	if err := os.WriteFile(tmp, []byte(tr.Status.Token), 0o600); err != nil {
		return "", err
	}
	return tr.Status.Token, os.Rename(tmp, filepath.Join(f.dir, "token"))
}

func (f *fixture) token() string {
	b, _ := os.ReadFile(filepath.Join(f.dir, "token"))
	return string(b)
}

// direct is a client of the API server with the token: HTTP/2 when the server offers it and
// kept-alive connections, as client-go does; with http1, HTTP/1.1 only, as the reference for
// a proxy that speaks HTTP/1.1 to the API server (whose HTTP/1.1 and HTTP/2 paths differ in
// cost, which must not be counted as the proxy's).
func (f *fixture) direct(http1 bool) (*target, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(f.cfg.CAData) {
		return nil, errors.New("no CA in the rest.Config")
	}
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:   true,
		MaxIdleConns:        64,
		MaxIdleConnsPerHost: 64,
		DisableCompression:  true,
	}
	name := "direct"
	if http1 {
		name = directHTTP1
		tr.ForceAttemptHTTP2 = false
		tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
	}
	return &target{name: name, base: strings.TrimRight(f.cfg.Host, "/"), client: &http.Client{Transport: tr},
		auth: "Bearer " + f.token()}, nil
}

// directHTTP1 names the direct client that speaks HTTP/1.1.
const directHTTP1 = "direct HTTP/1.1"

// loopbackClient is the client of a proxy: plain HTTP/1.1 with kept-alive connections.
func loopbackClient() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConns: 64, MaxIdleConnsPerHost: 64, DisableCompression: true}}
}

// buildAPIProxy builds ./cmd/api-proxy (or, profiled, ./hack/proxybench/profiled) into dir
// as the image is built and returns the binary.
func buildAPIProxy(ctx context.Context, dir string, profiled bool) (string, error) {
	bin, pkg := filepath.Join(dir, "api-proxy"), "github.com/api-access-injector/api-access-injector/cmd/api-proxy"
	if profiled {
		bin, pkg = filepath.Join(dir, "api-proxy-profiled"), "github.com/api-access-injector/api-access-injector/hack/proxybench/profiled"
	}
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, pkg)
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building api-proxy: %w\n%s", err, out)
	}
	return bin, nil
}

// startAPIProxy runs the api-proxy binary bin as v configures it, with the fixture's
// service-account directory. With tlsHop it runs in transparent mode too and also returns the
// TLS hop that in-cluster clients take (HTTP/2 over TLS to 127.0.0.1, verified against the CA
// the proxy wrote), served by the same process.
func (f *fixture) startAPIProxy(ctx context.Context, work, bin string, v variant, withTLS bool) (plain, tlsHop *target, err error) {
	port, health := proc.FreePort(), proc.FreePort()
	args := []string{"--port=" + strconv.Itoa(port), "--health-port=" + strconv.Itoa(health),
		"--server=" + f.cfg.Host, "--serviceaccount-dir=" + f.dir}
	var out string
	tlsPort := proc.FreePort()
	if withTLS {
		if out, err = os.MkdirTemp(work, "transparent-serviceaccount-"); err != nil {
			return nil, nil, err
		}
		args = append(args, "--tls-port="+strconv.Itoa(tlsPort), "--serviceaccount-out="+out)
	}
	cmd := exec.Command(bin, append(args, v.args...)...)
	cmd.Env = append(os.Environ(), v.env...)
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	plain = &target{name: v.name, base: "http://127.0.0.1:" + strconv.Itoa(port), client: loopbackClient(), cmd: cmd, binary: bin}
	if err := proc.WaitOK(ctx, "http://127.0.0.1:"+strconv.Itoa(health)+"/readyz"); err != nil {
		return plain, nil, err
	}
	if !withTLS {
		return plain, nil, nil
	}
	ca, err := os.ReadFile(filepath.Join(out, "ca.crt"))
	if err != nil {
		return plain, nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return plain, nil, errors.New("api-proxy wrote no CA certificate")
	}
	// As client-go does with rest.InClusterConfig(): HTTP/2 when offered, kept-alive connections.
	tr := &http.Transport{
		TLSClientConfig:    &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:  true,
		MaxIdleConns:       64,
		DisableCompression: true,
	}
	tlsHop = &target{name: v.name + " TLS", base: "https://127.0.0.1:" + strconv.Itoa(tlsPort), client: &http.Client{Transport: tr}, cmd: cmd, binary: bin}
	return plain, tlsHop, nil
}

// startKubectlProxy runs `kubectl proxy` with a kubeconfig that reads the same token file;
// with a profile file, kubectl writes its CPU profile there when it is interrupted.
func (f *fixture) startKubectlProxy(ctx context.Context, kubectl, work, profile string) (*target, error) {
	kubeconfig := filepath.Join(work, "kubeconfig")
	if err := os.WriteFile(kubeconfig, fmt.Appendf(nil, `apiVersion: v1
kind: Config
clusters:
- name: envtest
  cluster: {server: %q, certificate-authority: %q}
users:
- name: bench
  user: {tokenFile: %q}
contexts:
- name: bench
  context: {cluster: envtest, user: bench, namespace: %s}
current-context: bench
`, f.cfg.Host, filepath.Join(f.dir, "ca.crt"), filepath.Join(f.dir, "token"), benchNS), 0o600); err != nil {
		return nil, err
	}
	port := proc.FreePort()
	args := []string{"proxy", "--kubeconfig", kubeconfig, "--port", strconv.Itoa(port)}
	if profile != "" {
		args = append(args, "--profile=cpu", "--profile-output="+profile)
	}
	cmd := exec.Command(kubectl, args...)
	cmd.Env = append(os.Environ(), "HOME="+work)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	t := &target{name: "kubectl proxy", base: base, client: loopbackClient(), cmd: cmd, binary: kubectl}
	return t, proc.WaitOK(ctx, base+"/version")
}
