package proxy

// Tests against a real kube-apiserver and etcd (envtest), with real tokens from the
// TokenRequest API, real RBAC and real watches. The control plane starts on the first test
// that needs it; `make envtest` provisions its binaries, and a missing binary fails the test
// with that hint (see test/framework/testenv).

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/api-access-injector/api-access-injector/test/framework/syncbuffer"
	"github.com/api-access-injector/api-access-injector/test/framework/testenv"
)

// sharedEnv is envtest's API server, started by the first test that needs it.
var sharedEnv testenv.Shared

func TestMain(m *testing.M) {
	code := m.Run()
	sharedEnv.Stop()
	os.Exit(code)
}

// adminClient starts the control plane once and returns an admin client and config.
func adminClient(t *testing.T) (*kubernetes.Clientset, *rest.Config) {
	t.Helper()
	cfg := sharedEnv.Config(t)
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs, cfg
}

// saEnv is a namespace with a ServiceAccount "app" that may get, list and watch pods there.
type saEnv struct {
	admin *kubernetes.Clientset
	cfg   *rest.Config
	ns    string
}

func newSAEnv(t *testing.T) *saEnv {
	t.Helper()
	admin, cfg := adminClient(t)
	ctx := t.Context()
	ns, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "proxy-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e := &saEnv{admin: admin, cfg: cfg, ns: ns.Name}
	if _, err := admin.CoreV1().ServiceAccounts(e.ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "app"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.RbacV1().Roles(e.ns).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "pod-reader"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.RbacV1().RoleBindings(e.ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "app-pod-reader"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "app", Namespace: e.ns}},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "pod-reader"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return e
}

// token asks the TokenRequest API for a token of "app", bound to the Secret boundTo if set
// (deleting that Secret revokes the token).
func (e *saEnv) token(t *testing.T, boundTo string) string {
	t.Helper()
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr(int64(3600))}}
	if boundTo != "" {
		s, err := e.admin.CoreV1().Secrets(e.ns).Create(t.Context(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: boundTo}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		req.Spec.BoundObjectRef = &authenticationv1.BoundObjectReference{Kind: "Secret", APIVersion: "v1", Name: s.Name, UID: s.UID}
	}
	tr, err := e.admin.CoreV1().ServiceAccounts(e.ns).CreateToken(t.Context(), "app", req, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
}

func ptr[T any](v T) *T { return &v }

// envProxy is a proxy serving on a free loopback port with app's credentials.
type envProxy struct {
	*fixture // dir, logs, writeToken
	base     string
	stop     context.CancelFunc
	served   chan error
}

func (e *saEnv) startProxy(t *testing.T, tok string, mutate func(*Config)) *envProxy {
	t.Helper()
	f := &fixture{t: t, tb: t, dir: t.TempDir(), logs: new(syncbuffer.Buffer)}
	if err := os.WriteFile(filepath.Join(f.dir, CAFile), e.cfg.CAData, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.dir, NamespaceFile), []byte(e.ns), 0o644); err != nil {
		t.Fatal(err)
	}
	f.writeToken(tok)
	cfg := DefaultConfig()
	cfg.Server = e.cfg.Host
	cfg.ServiceAccountDir = f.dir
	cfg.Port, cfg.HealthPort = 0, 0
	cfg.Logger = slog.New(slog.NewTextHandler(f.logs, nil))
	if mutate != nil {
		mutate(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	f.srv = srv
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	p := &envProxy{fixture: f, stop: cancel, served: make(chan error, 1)}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	p.base = "http://" + srv.Addr().String()
	go func() { p.served <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-p.served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		logs := f.logs.String()
		for _, tok := range f.tokens {
			if strings.Contains(logs, tok) {
				t.Errorf("a log line holds a token:\n%s", logs)
			}
		}
	})
	return p
}

// client returns a client-go clientset that speaks to the API through the proxy, as an app
// with the injected kubeconfig does.
func (p *envProxy) client(t *testing.T) *kubernetes.Clientset {
	t.Helper()
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: p.base})
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func (p *envProxy) do(t *testing.T, method, path string, header http.Header) (int, string) {
	t.Helper()
	req := newRequest(t, method, p.base+path, nil)
	maps.Copy(req.Header, header)
	if h := header.Get("Host"); h != "" {
		req.Host = h
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// statusOf decodes a Status body.
func statusOf(t *testing.T, body string) metav1.Status {
	t.Helper()
	var s metav1.Status
	if err := json.Unmarshal([]byte(body), &s); err != nil || s.Kind != "Status" {
		t.Fatalf("not a Status body (%v): %s", err, body)
	}
	return s
}

func TestEnvtestAPIThroughProxy(t *testing.T) {
	e := newSAEnv(t)
	p := e.startProxy(t, e.token(t, ""), nil)
	// No --reject-paths, so that --read-only alone has to refuse exec and attach.
	ro := e.startProxy(t, e.token(t, ""), func(c *Config) { c.ReadOnly, c.RejectPaths = true, nil })
	user := "system:serviceaccount:" + e.ns + ":app"

	t.Run("allowed request gets the API server's answer", func(t *testing.T) {
		pods, err := p.client(t).CoreV1().Pods(e.ns).List(t.Context(), metav1.ListOptions{})
		if err != nil {
			t.Fatalf("listing pods through the proxy with client-go: %v", err)
		}
		if len(pods.Items) != 0 || pods.ResourceVersion == "" {
			t.Errorf("got %d pods, resourceVersion %q; want an empty list from the API server", len(pods.Items), pods.ResourceVersion)
		}
	})
	t.Run("RBAC refusal is the API server's own 403", func(t *testing.T) {
		for _, path := range []string{"/api/v1/namespaces/" + e.ns + "/secrets", "/api/v1/namespaces/default/pods"} {
			code, body := p.do(t, "GET", path, nil)
			s := statusOf(t, body)
			if code != 403 || s.Reason != metav1.StatusReasonForbidden || !strings.Contains(s.Message, `User "`+user+`" cannot list resource`) {
				t.Errorf("GET %s: %d %s; want the API server's 403 for %s", path, code, body, user)
			}
		}
		_, err := p.client(t).CoreV1().Secrets(e.ns).List(t.Context(), metav1.ListOptions{})
		if !apierrors.IsForbidden(err) {
			t.Errorf("client-go listing secrets: %v, want Forbidden", err)
		}
	})

	upgrade := http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}, "Sec-Websocket-Version": {"13"}, "Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}}
	for _, tt := range []struct {
		name    string
		p       *envProxy
		method  string
		path    string
		header  http.Header
		message string
	}{
		{name: "exec", p: p, method: "POST", path: "/api/v1/namespaces/" + e.ns + "/pods/app/exec?command=id",
			message: "path matches --reject-paths ^/api/.*/pods/.*/exec"},
		{name: "attach", p: p, method: "POST", path: "/api/v1/namespaces/" + e.ns + "/pods/app/attach",
			message: "path matches --reject-paths ^/api/.*/pods/.*/attach"},
		{name: "DNS rebinding", p: p, method: "GET", path: "/api/v1/namespaces/" + e.ns + "/pods",
			header: http.Header{"Host": {"evil.example.com"}}, message: `host "evil.example.com" matches no --accept-hosts pattern`},
		{name: "read-only POST", p: ro, method: "POST", path: "/api/v1/namespaces/" + e.ns + "/pods",
			message: "--read-only lets only GET, HEAD and OPTIONS through, not POST"},
		{name: "read-only exec by GET", p: ro, method: "GET", path: "/api/v1/namespaces/" + e.ns + "/pods/app/exec?command=id",
			message: "--read-only refuses the exec subresource"},
		{name: "read-only exec by GET with a WebSocket upgrade", p: ro, method: "GET", path: "/api/v1/namespaces/" + e.ns + "/pods/app/exec?command=id",
			header: upgrade, message: "--read-only refuses protocol upgrades (exec, attach and portforward)"},
		{name: "read-only attach by GET", p: ro, method: "GET", path: "/api/v1/namespaces/" + e.ns + "/pods/app/attach?stdout=true",
			message: "--read-only refuses the attach subresource"},
		{name: "read-only portforward by GET", p: ro, method: "GET", path: "/api/v1/namespaces/" + e.ns + "/pods/app/portforward",
			header: upgrade, message: "--read-only refuses protocol upgrades (exec, attach and portforward)"},
		{name: "read-only pod proxy", p: ro, method: "GET", path: "/api/v1/namespaces/" + e.ns + "/pods/app/proxy/",
			message: "--read-only refuses the proxy subresource"},
	} {
		t.Run("filter "+tt.name, func(t *testing.T) {
			code, body := tt.p.do(t, tt.method, tt.path, tt.header)
			want := metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusFailure,
				Message: tt.message, Reason: metav1.StatusReasonForbidden, Code: 403}
			if diff := cmp.Diff(want, statusOf(t, body)); code != 403 || diff != "" {
				t.Errorf("status %d, body (-want +got):\n%s", code, diff)
			}
		})
	}
	t.Run("read-only lets reads through", func(t *testing.T) {
		if _, err := ro.client(t).CoreV1().Pods(e.ns).List(t.Context(), metav1.ListOptions{}); err != nil {
			t.Errorf("listing pods through the read-only proxy: %v", err)
		}
	})
	t.Run("health", func(t *testing.T) {
		resp, err := http.Get("http://" + p.srv.HealthAddr().String() + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("/readyz %d %s, want 200 against a reachable API server", resp.StatusCode, b)
		}
	})
}

func TestEnvtestWatch(t *testing.T) {
	e := newSAEnv(t)
	p := e.startProxy(t, e.token(t, ""), nil)
	w, err := p.client(t).CoreV1().Pods(e.ns).Watch(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatalf("watching pods through the proxy: %v", err)
	}
	defer w.Stop()
	start := time.Now()
	if _, err := e.admin.CoreV1().Pods(e.ns).Create(t.Context(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec:       corev1.PodSpec{ServiceAccountName: "app", Containers: []corev1.Container{{Name: "web", Image: "nginx"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-w.ResultChan():
		if ev.Type != watch.Added {
			t.Errorf("event %s %v, want ADDED", ev.Type, ev.Object)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("the event arrived %v after the change, want within 1s", d)
		}
	case <-time.After(time.Second):
		t.Fatal("no watch event within 1s of the change")
	}

	// The drain (SIGTERM) ends the watch cleanly, and Serve returns nil.
	p.stop()
	select {
	case ev, ok := <-w.ResultChan():
		if ok {
			t.Errorf("after the drain the watch delivered %s %v, want its end", ev.Type, ev.Object)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the drain did not end the watch")
	}
	select {
	case err := <-p.served:
		p.served <- err // for the cleanup
		if err != nil {
			t.Errorf("Serve after the drain: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after the drain")
	}
}

// TestEnvtestTokenRotation rotates the token and revokes the old one while an app keeps
// making requests, for longer than the API server caches token reviews (10 s).
func TestEnvtestTokenRotation(t *testing.T) {
	for _, tt := range []struct {
		name string
		// statFile: the proxy notices the new file by itself (within a second); otherwise only
		// the 401 that the revoked token eventually gets makes it read the file.
		statFile    bool
		wantReloads map[string]uint64
	}{
		{name: "file change noticed", statFile: true, wantReloads: map[string]uint64{triggerChange: 1, triggerUnauthorized: 0}},
		{name: "re-read on 401", statFile: false, wantReloads: map[string]uint64{triggerChange: 0, triggerUnauthorized: 1}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newSAEnv(t)
			oldToken := e.token(t, "bound-old")
			newToken := e.token(t, "bound-new")
			p := e.startProxy(t, oldToken, nil)
			if !tt.statFile {
				p.srv.tokens.interval = time.Hour
				p.srv.tokens.nextCheck.Store(time.Now().Add(time.Hour).UnixNano())
			}
			path := "/api/v1/namespaces/" + e.ns + "/pods"

			var ok, failed atomic.Int64
			var firstFailure atomic.Value
			ctx, cancel := context.WithCancel(t.Context())
			var wg sync.WaitGroup
			for range 2 {
				wg.Go(func() {
					for ctx.Err() == nil {
						resp, err := http.Get(p.base + path)
						if err != nil {
							failed.Add(1)
							firstFailure.CompareAndSwap(nil, err.Error())
							continue
						}
						b, _ := io.ReadAll(resp.Body)
						resp.Body.Close()
						if resp.StatusCode != 200 {
							failed.Add(1)
							firstFailure.CompareAndSwap(nil, fmt.Sprintf("%d %s", resp.StatusCode, b))
						} else {
							ok.Add(1)
						}
						time.Sleep(10 * time.Millisecond)
					}
				})
			}

			time.Sleep(500 * time.Millisecond)
			p.writeToken(newToken)
			if err := e.admin.CoreV1().Secrets(e.ns).Delete(t.Context(), "bound-old", metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			revoked := time.Now()
			// Until the old token is rejected (proof that it was revoked), and past the cache.
			deadline := revoked.Add(40 * time.Second)
			for !rejected(t, e.cfg, oldToken) {
				if time.Now().After(deadline) {
					t.Fatal("the old token is still accepted 40s after its Secret was deleted")
				}
				time.Sleep(500 * time.Millisecond)
			}
			for time.Since(revoked) < 13*time.Second {
				time.Sleep(100 * time.Millisecond)
			}
			time.Sleep(time.Second)
			cancel()
			wg.Wait()

			if failed.Load() != 0 {
				t.Errorf("%d of %d requests failed after rotation and revocation; first: %v", failed.Load(), failed.Load()+ok.Load(), firstFailure.Load())
			}
			if ok.Load() < 100 {
				t.Errorf("only %d requests succeeded: the test did not exercise the proxy", ok.Load())
			}
			got := map[string]uint64{
				triggerChange:       p.srv.metrics.reloadsChange.Load(),
				triggerUnauthorized: p.srv.metrics.reloadsUnauthorized.Load(),
			}
			if diff := cmp.Diff(tt.wantReloads, got); diff != "" {
				t.Errorf("token reloads by trigger (-want +got):\n%s", diff)
			}
		})
	}
}

// rejected reports whether the API server answers 401 to tok.
func rejected(t *testing.T, cfg *rest.Config, tok string) bool {
	t.Helper()
	c := rest.CopyConfig(cfg)
	c.CertData, c.KeyData, c.BearerToken = nil, nil, tok
	cs, err := kubernetes.NewForConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	_, err = cs.Discovery().ServerVersion()
	return apierrors.IsUnauthorized(err)
}
