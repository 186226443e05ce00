package proxy

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// loadKubeconfig loads a kubeconfig as kubectl and client-go do, and checks that it gives
// the app nothing but a server and a namespace: no credential, no exec plugin, no auth
// provider, no TLS material.
func loadKubeconfig(t *testing.T, data []byte) (server, namespace string) {
	t.Helper()
	cfg, err := clientcmd.Load(data)
	if err != nil {
		t.Fatalf("clientcmd.Load: %v\n%s", err, data)
	}
	if err := clientcmd.Validate(*cfg); err != nil {
		t.Errorf("clientcmd.Validate: %v", err)
	}
	ctx := cfg.Contexts[cfg.CurrentContext]
	if ctx == nil {
		t.Fatalf("current context %q is not defined:\n%s", cfg.CurrentContext, data)
	}
	if len(cfg.Clusters) != 1 || len(cfg.AuthInfos) != 1 || len(cfg.Contexts) != 1 {
		t.Errorf("want one cluster, user and context; got %d, %d, %d", len(cfg.Clusters), len(cfg.AuthInfos), len(cfg.Contexts))
	}
	cluster := cfg.Clusters[ctx.Cluster]
	if cluster == nil {
		t.Fatalf("context's cluster %q is not defined", ctx.Cluster)
	}
	if cluster.InsecureSkipTLSVerify || cluster.CertificateAuthority != "" || len(cluster.CertificateAuthorityData) > 0 || cluster.ProxyURL != "" {
		t.Errorf("the cluster carries more than a server: %+v", cluster)
	}
	user := cfg.AuthInfos[ctx.AuthInfo]
	if user == nil {
		t.Fatalf("context's user %q is not defined", ctx.AuthInfo)
	}
	if diff := cmp.Diff(&clientcmdapi.AuthInfo{}, user, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("the user is not empty (-want +got):\n%s", diff)
	}
	return cluster.Server, ctx.Namespace
}

// wantKubeconfig is the kubeconfig Kubeconfig(server, namespace) must produce, as
// clientcmd.Load returns it.
func wantKubeconfig(server, namespace string) *clientcmdapi.Config {
	want := clientcmdapi.NewConfig()
	want.Clusters["api-proxy"] = &clientcmdapi.Cluster{Server: server}
	want.AuthInfos["api-proxy"] = &clientcmdapi.AuthInfo{}
	want.Contexts["api-proxy"] = &clientcmdapi.Context{Cluster: "api-proxy", AuthInfo: "api-proxy", Namespace: namespace}
	want.CurrentContext = "api-proxy"
	return want
}

func TestKubeconfig(t *testing.T) {
	for _, tt := range []struct {
		name, server, namespace string
		wantErr                 string
	}{
		{name: "default", server: "http://127.0.0.1:8001", namespace: "team-a"},
		{name: "ipv6 and long namespace", server: "http://[::1]:9001", namespace: strings.Repeat("a", 63)},
		{name: "namespace too long", server: "http://127.0.0.1:8001", namespace: strings.Repeat("a", 64), wantErr: "is not a namespace name"},
		{name: "empty namespace", server: "http://127.0.0.1:8001", namespace: "", wantErr: `namespace "" is not a namespace name`},
		{name: "yaml injection in namespace", server: "http://127.0.0.1:8001", namespace: "a\nusers: []", wantErr: "is not a namespace name"},
		{name: "upper case", server: "http://127.0.0.1:8001", namespace: "Team", wantErr: `namespace "Team" is not a namespace name`},
		{name: "no scheme", server: "127.0.0.1:8001", namespace: "team-a", wantErr: "want an http:// or https:// URL"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			data, err := Kubeconfig(tt.server, tt.namespace)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Kubeconfig(%q, %q) error = %v, want one containing %q", tt.server, tt.namespace, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			server, ns := loadKubeconfig(t, data)
			if diff := cmp.Diff([]string{tt.server, tt.namespace}, []string{server, ns}); diff != "" {
				t.Errorf("server, namespace (-want +got):\n%s", diff)
			}
			// The whole file, as client-go reads it, is exactly one cluster, an empty user and
			// one context: nothing else slipped in.
			got, err := clientcmd.Load(data)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(wantKubeconfig(tt.server, tt.namespace), got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("the kubeconfig as clientcmd.Load reads it (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWriteKubeconfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "kubeconfig")
	// A restrictive umask must not make the file unreadable to app containers of other users.
	defer syscall.Umask(syscall.Umask(0o077))

	if err := WriteKubeconfig(path, "http://127.0.0.1:8001", "team-a"); err != nil {
		t.Fatal(err)
	}
	old, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	oldData, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("mode", func(t *testing.T) {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != KubeconfigFileMode {
			t.Errorf("mode %v, want %v", fi.Mode(), KubeconfigFileMode)
		}
	})

	t.Run("atomic replace", func(t *testing.T) {
		if err := WriteKubeconfig(path, "http://127.0.0.1:9001", "team-b"); err != nil {
			t.Fatal(err)
		}
		// A reader that opened the previous file still reads all of it: the new content
		// went to a new file renamed over the path, not into the old one.
		got, err := io.ReadAll(old)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(string(oldData), string(got)); diff != "" {
			t.Errorf("the file a reader had open changed under it (-before +after):\n%s", diff)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		server, ns := loadKubeconfig(t, data)
		if server != "http://127.0.0.1:9001" || ns != "team-b" {
			t.Errorf("after the rewrite: server %q, namespace %q", server, ns)
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 1 {
			t.Errorf("the directory holds %d entries, want only the kubeconfig (no temporary file left)", len(entries))
		}
	})

	t.Run("failure leaves nothing", func(t *testing.T) {
		err := WriteKubeconfig(filepath.Join(dir, "missing", "kubeconfig"), "http://127.0.0.1:8001", "team-a")
		if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "missing", "kubeconfig")) {
			t.Errorf("writing into a missing directory: %v, want an error naming the path", err)
		}
		if err := WriteKubeconfig(path, "http://127.0.0.1:8001", "Bad_NS"); err == nil {
			t.Error("an invalid namespace was written")
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if _, ns := loadKubeconfig(t, data); ns != "team-b" {
			t.Errorf("a refused write changed the file: namespace %q", ns)
		}
	})
}

// TestRunWritesKubeconfig checks that the proxy writes --kubeconfig-out, naming the port it
// really listens on, before its health port answers: the kubelet's startupProbe holds the
// app containers back until then, so the file exists before any of them starts.
func TestRunWritesKubeconfig(t *testing.T) {
	out := filepath.Join(t.TempDir(), "kubeconfig")
	withOut := func(c *Config) { c.KubeconfigOut = out }
	f := newFixture(t, http.HandlerFunc(echoAuth), withOut)
	srv := f.srv

	t.Run("refuses to serve without a namespace", func(t *testing.T) {
		err := srv.Run(t.Context()) // the namespace file is not written yet
		if err == nil || !strings.Contains(err.Error(), "--kubeconfig-out") || !strings.Contains(err.Error(), NamespaceFile) {
			t.Fatalf("Run = %v, want an error naming --kubeconfig-out and the namespace file", err)
		}
		if _, err := os.Stat(out); !os.IsNotExist(err) {
			t.Errorf("a kubeconfig was written without a namespace: %v", err)
		}
	})

	if err := os.WriteFile(filepath.Join(f.dir, NamespaceFile), []byte("team-a"), 0o644); err != nil {
		t.Fatal(err)
	}
	srv = newServerFor(t, f, withOut)
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatalf("the kubeconfig exists before Run: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Run: %v", err)
		}
	})

	// Wait, bounded, for the first health answer; the file must exist by then.
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := client.Get("http://" + srv.HealthAddr().String() + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the health port never answered: %v", err)
		}
		select {
		case err := <-served:
			t.Fatalf("Run returned early: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("the health port answers but the kubeconfig is not there: %v", err)
	}
	server, ns := loadKubeconfig(t, data)
	_, port, _ := net.SplitHostPort(srv.Addr().String())
	if want := "http://127.0.0.1:" + port; server != want {
		t.Errorf("server %q, want the listener's %q", server, want)
	}
	if ns != "team-a" {
		t.Errorf("namespace %q, want team-a from the service-account directory", ns)
	}
	if p, _ := strconv.Atoi(port); p == 0 {
		t.Errorf("listener port %q", port)
	}
}

func TestKubeconfigConfig(t *testing.T) {
	out := filepath.Join(t.TempDir(), "kubeconfig")
	c := KubeconfigConfig{Out: out, Port: 9001, Namespace: "team-a"}
	if err := c.Write(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if server, ns := loadKubeconfig(t, data); server != "http://127.0.0.1:9001" || ns != "team-a" {
		t.Errorf("server %q, namespace %q", server, ns)
	}
	err = (&KubeconfigConfig{Port: 0, Namespace: ""}).Write()
	for _, want := range []string{"--kubeconfig-out is empty", "--port 0 is not a port", "--namespace is empty"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Write of an empty config: %v, want an error containing %q", err, want)
		}
	}
	err = (&KubeconfigConfig{Out: out, Port: 8001, Namespace: "$(POD_NAMESPACE)"}).Write()
	if err == nil || !strings.Contains(err.Error(), `namespace "$(POD_NAMESPACE)" is not a namespace name`) {
		t.Errorf("Write with an unexpanded reference: %v, want a refusal naming the value", err)
	}
}
