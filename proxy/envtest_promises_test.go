package proxy

// kubectl proxy's promises, kept against a real API server: --api-prefix confines,
// --accept-hosts matches the whole Host, every spelling of a watch streams, and a burst of
// large writes stays within the replay budget while each write reaches the API server.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/api-access-injector/api-access-injector/test/framework/testenv"
)

func TestEnvtestAPIPrefixConfines(t *testing.T) {
	e := newSAEnv(t)
	tok := e.token(t, "")
	pods := "/api/v1/namespaces/" + e.ns + "/pods"
	for _, tt := range []struct {
		prefix  string
		served  string   // a path that reaches the API server (a pod list the ServiceAccount may read)
		outside []string // paths that must stay a 404 of the proxy's own
	}{
		{prefix: "/api/", served: pods,
			outside: []string{"/apis/apps/v1/namespaces/" + e.ns + "/deployments", "/version", "/openapi/v2", "/"}},
		{prefix: "/apis/apps/", served: "/apis/apps/v1/namespaces/" + e.ns + "/deployments",
			outside: []string{pods, "/api/v1/namespaces/" + e.ns + "/secrets", "/apis/batch/v1/jobs", "/version"}},
		{prefix: "/k8s", served: "/k8s" + pods,
			outside: []string{pods, "/k8sx" + pods, "/version"}},
	} {
		t.Run(tt.prefix, func(t *testing.T) {
			p := e.startProxy(t, tok, func(c *Config) { c.APIPrefix = tt.prefix })
			code, body := p.do(t, "GET", tt.served, nil)
			// The ServiceAccount may list pods but not deployments: either way the answer
			// is the API server's own (200, or its RBAC 403), not the proxy's 404.
			if s := (metav1.Status{}); code == 404 || (code != 200 && json.Unmarshal([]byte(body), &s) == nil && s.Reason != metav1.StatusReasonForbidden) {
				t.Errorf("GET %s: %d %s; want the API server's answer", tt.served, code, body)
			}
			for _, path := range tt.outside {
				code, body := p.do(t, "GET", path, nil)
				want := "path is outside --api-prefix " + newAPIPrefix(tt.prefix).prefix
				if s := statusOf(t, body); code != 404 || s.Message != want || s.Reason != metav1.StatusReasonNotFound {
					t.Errorf("GET %s: %d %s; want 404 %q", path, code, body, want)
				}
			}
		})
	}
	t.Run("client-go under a prefix", func(t *testing.T) {
		p := e.startProxy(t, tok, func(c *Config) { c.APIPrefix = "/k8s/" })
		cs, err := kubernetes.NewForConfig(&rest.Config{Host: p.base + "/k8s"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cs.CoreV1().Pods(e.ns).List(t.Context(), metav1.ListOptions{}); err != nil {
			t.Errorf("listing pods through --api-prefix=/k8s/: %v", err)
		}
	})
}

func TestEnvtestAcceptHostsWholeHost(t *testing.T) {
	e := newSAEnv(t)
	p := e.startProxy(t, e.token(t, ""), nil)
	pods := "/api/v1/namespaces/" + e.ns + "/pods"
	for _, host := range []string{"localhost:8001", "127.0.0.1:8001", "[::1]:8001", "[::1]", "localhost"} {
		t.Run("accepted "+host, func(t *testing.T) {
			if code, body := p.do(t, "GET", pods, http.Header{"Host": {host}}); code != 200 || !strings.Contains(body, `"kind":"PodList"`) {
				t.Errorf("Host %q: %d %s; want the pod list", host, code, body)
			}
		})
	}
	for _, host := range []string{"[::1].evil.example.com", "[::1]evil.example.com:80", "[::1]:8001.evil.example.com",
		"localhost:http", "127.0.0.1:65536", "[::1"} {
		t.Run("refused "+host, func(t *testing.T) {
			code, body := p.do(t, "GET", pods, http.Header{"Host": {host}})
			want := "Host " + quote(host) + " is not a valid host[:port], so no --accept-hosts pattern can accept it"
			if s := statusOf(t, body); code != 403 || s.Message != want {
				t.Errorf("Host %q: %d %s; want 403 %q", host, code, body, want)
			}
		})
	}
}

func TestEnvtestWatchSpellings(t *testing.T) {
	e := newSAEnv(t)
	p := e.startProxy(t, e.token(t, ""), nil)
	pods := "/api/v1/namespaces/" + e.ns + "/pods"
	// Every spelling the API server streams (runtime.Convert_Slice_string_To_bool: anything
	// but 0 and false), and the /watch/ path.
	for i, query := range []string{"watch=true", "watch=1", "watch=True", "watch=TRUE", "watch=t", "watch=yes",
		"watch=on", "watch=", "watch", "%77atch=1", "watch=1&watch=false", "/watch/"} {
		t.Run(query, func(t *testing.T) {
			label := "spelling=s" + string(rune('a'+i))
			path := pods + "?labelSelector=" + label + "&" + query
			if query == "/watch/" {
				path = "/api/v1/watch/namespaces/" + e.ns + "/pods?labelSelector=" + label
			}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			resp, err := http.DefaultClient.Do(newRequest(t, "GET", p.base+path, nil).WithContext(ctx))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != 200 {
				b, _ := io.ReadAll(resp.Body)
				t.Fatalf("GET %s: %s %s", path, resp.Status, b)
			}
			name := "w" + string(rune('a'+i))
			k, v, _ := strings.Cut(label, "=")
			if _, err := e.admin.CoreV1().Pods(e.ns).Create(t.Context(), &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{k: v}},
				Spec:       corev1.PodSpec{ServiceAccountName: "app", Containers: []corev1.Container{{Name: "c", Image: "nginx"}}},
			}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			lines := make(chan string, 1)
			go func() {
				line, _ := bufio.NewReader(resp.Body).ReadString('\n')
				lines <- line
			}()
			select {
			case line := <-lines:
				var ev struct {
					Type   string
					Object corev1.Pod
				}
				if err := json.Unmarshal([]byte(line), &ev); err != nil || ev.Type != "ADDED" || ev.Object.Name != name {
					t.Errorf("first event %q (%v), want ADDED %s", line, err, name)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no event within 10s while the watch stays open: the answer was not streamed")
			}
		})
	}
	for _, query := range []string{"watch=false", "watch=0", "watch=FALSE", "watch=false&watch=true"} {
		t.Run(query, func(t *testing.T) {
			code, body := p.do(t, "GET", pods+"?"+query, nil)
			if code != 200 || !strings.Contains(body, `"kind":"PodList"`) {
				t.Errorf("GET ?%s: %d %.200s; want a pod list", query, code, body)
			}
		})
	}
}

func TestEnvtestLargeWritesWithinReplayBudget(t *testing.T) {
	e := newSAEnv(t)
	ctx := t.Context()
	if err := testenv.Grant(ctx, e.admin, e.ns, "app", "configmap-writer",
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"create"}}); err != nil {
		t.Fatal(err)
	}
	const budget = 2 << 20
	p := e.startProxy(t, e.token(t, ""), func(c *Config) { c.ReplayBufferSize = budget })
	cm, err := json.Marshal(&corev1.ConfigMap{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{GenerateName: "big-"}, Data: map[string]string{"data": strings.Repeat("x", 1000<<10)}})
	if err != nil {
		t.Fatal(err)
	}
	// 16 concurrent writes of 1000 KiB: two fit in the budget and are kept for a retry,
	// the others are sent as they come; every one reaches the API server whole.
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			req := newRequest(t, "POST", p.base+"/api/v1/namespaces/"+e.ns+"/configmaps?dryRun=All", bytes.NewReader(cm))
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			var got corev1.ConfigMap
			if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.StatusCode != 201 || len(got.Data["data"]) != 1000<<10 {
				t.Errorf("POST: %s (%v), %d bytes of data back; want 201 with the whole ConfigMap", resp.Status, err, len(got.Data["data"]))
			}
		})
	}
	wg.Wait()
	// Every byte taken from the budget comes back once the transport is done with the body.
	deadline := time.Now().Add(5 * time.Second)
	for p.srv.up.replay.avail.Load() != budget {
		if time.Now().After(deadline) {
			t.Fatalf("replay budget %d after the writes, want all %d back", p.srv.up.replay.avail.Load(), budget)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
