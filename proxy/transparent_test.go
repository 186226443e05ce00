package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/api-access-injector/api-access-injector/test/framework/testenv"
)

// freeTLSPort returns a loopback port that was free a moment ago.
func freeTLSPort(t *testing.T) int {
	t.Helper()
	addr, err := testenv.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(port)
	return n
}

// TestTransparentTLS: with --tls-port and --serviceaccount-out, the proxy writes the app's
// service-account files (the CA, the namespace, a token that is no credential) and serves the
// API over TLS under every name in-cluster clients use; client-go, configured as
// rest.InClusterConfig() configures it from those files, lists pods through it, its placeholder
// token dropped and the pod's own credentials added; the filters, --read-only among them, hold
// on the TLS listener as on the plain one.
func TestTransparentTLS(t *testing.T) {
	e := newSAEnv(t)
	tlsPort := freeTLSPort(t)
	out := t.TempDir()
	p := e.startProxy(t, e.token(t, ""), func(c *Config) {
		c.TLSPort, c.ServiceAccountOut, c.ReadOnly = tlsPort, out, true
	})
	tlsAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(tlsPort))
	// Run writes the files before it serves: once /healthz answers, they are there.
	resp, err := http.Get("http://" + p.srv.HealthAddr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	t.Run("service-account files", func(t *testing.T) {
		entries, err := os.ReadDir(out)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, en := range entries {
			names = append(names, en.Name())
			b, _ := os.ReadFile(filepath.Join(out, en.Name()))
			if strings.Contains(string(b), "PRIVATE KEY") {
				t.Errorf("%s holds a private key", en.Name())
			}
			if fi, _ := en.Info(); fi.Mode().Perm() != 0o644 {
				t.Errorf("%s mode %v, want 0644", en.Name(), fi.Mode().Perm())
			}
		}
		if diff := cmp.Diff([]string{CAFile, NamespaceFile, TokenFile}, names); diff != "" {
			t.Errorf("files (-want +got):\n%s", diff)
		}
		for name, want := range map[string]string{NamespaceFile: e.ns, TokenFile: PlaceholderToken, CAFile: string(p.srv.CACertPEM())} {
			if got, _ := os.ReadFile(filepath.Join(out, name)); string(got) != want {
				t.Errorf("%s = %q, want %q", name, got, want)
			}
		}
	})

	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(p.srv.CACertPEM()) {
		t.Fatal("ca.crt holds no certificate")
	}

	t.Run("the certificate names the API server as in-cluster clients do", func(t *testing.T) {
		for _, name := range append(TransparentNames(DefaultClusterDomain), "127.0.0.1", "::1") {
			conn, err := tls.Dial("tcp", tlsAddr, &tls.Config{RootCAs: pool, ServerName: name})
			if err != nil {
				t.Errorf("TLS to %s as %q: %v", tlsAddr, name, err)
				continue
			}
			conn.Close()
		}
		if conn, err := tls.Dial("tcp", tlsAddr, &tls.Config{RootCAs: pool, ServerName: "kubernetes.default.svc.example.org"}); err == nil {
			conn.Close()
			t.Error("the certificate is valid for a cluster domain it was not made for")
		}
	})

	// As rest.InClusterConfig() builds it from the files, with kubernetes.default.svc dialled
	// on loopback, as the pod's hostAliases make it.
	cfg := &rest.Config{
		Host:            "https://kubernetes.default.svc:" + strconv.Itoa(tlsPort),
		TLSClientConfig: rest.TLSClientConfig{CAFile: filepath.Join(out, CAFile)},
		BearerTokenFile: filepath.Join(out, TokenFile),
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, tlsAddr)
		},
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("client-go lists pods over TLS", func(t *testing.T) {
		if _, err := cs.CoreV1().Pods(e.ns).List(t.Context(), metav1.ListOptions{}); err != nil {
			t.Fatalf("listing pods through the TLS listener: %v", err)
		}
	})

	t.Run("read-only holds over TLS", func(t *testing.T) {
		err := cs.CoreV1().Pods(e.ns).Delete(t.Context(), "anything", metav1.DeleteOptions{})
		if err == nil || !strings.Contains(err.Error(), "--read-only lets only GET, HEAD and OPTIONS through, not DELETE") {
			t.Errorf("delete through the TLS listener: %v; want the proxy's read-only refusal", err)
		}
	})

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	get := func(t *testing.T, base, host string) int {
		t.Helper()
		req := newRequest(t, http.MethodGet, base+"/api", nil)
		req.Host = host
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	t.Run("hosts", func(t *testing.T) {
		for _, tt := range []struct {
			base, host string
			want       int
		}{
			{"https://" + tlsAddr, "kubernetes.default.svc", http.StatusOK},
			{"https://" + tlsAddr, "KUBERNETES.default.svc.cluster.local:443", http.StatusOK},
			{"https://" + tlsAddr, "kubernetes", http.StatusOK},
			{"https://" + tlsAddr, "127.0.0.1:" + strconv.Itoa(tlsPort), http.StatusOK},
			{"https://" + tlsAddr, "evil.example.com", http.StatusForbidden},
			{"https://" + tlsAddr, "kubernetes.default.svc.evil.example.com", http.StatusForbidden},
			// The plain listener keeps kubectl proxy's hosts only.
			{p.base, "kubernetes.default.svc", http.StatusForbidden},
			{p.base, "localhost", http.StatusOK},
		} {
			if got := get(t, tt.base, tt.host); got != tt.want {
				t.Errorf("GET %s/api with Host %q: %d, want %d", tt.base, tt.host, got, tt.want)
			}
		}
	})

	if !slices.ContainsFunc(strings.Split(p.logs.String(), "\n"), func(l string) bool {
		return strings.Contains(l, "api-proxy serving") && strings.Contains(l, "tls=https://"+tlsAddr)
	}) {
		t.Errorf("the start log does not name the TLS listener:\n%s", p.logs)
	}
}

// TestTransparentConfigValidation: the flags of transparent mode are checked with the others.
func TestTransparentConfigValidation(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string // "" for valid
	}{
		{"off", func(c *Config) {}, ""},
		{"on", func(c *Config) { c.TLSPort, c.ServiceAccountOut = 443, "/out" }, ""},
		{"port out of range", func(c *Config) { c.TLSPort = 70000 }, "--tls-port 70000 is not a port"},
		{"port is the API port", func(c *Config) { c.TLSPort = c.Port }, "--tls-port 8001 is also --port or --health-port"},
		{"port is the health port", func(c *Config) { c.TLSPort = c.HealthPort }, "--tls-port 8002 is also --port or --health-port"},
		{"bad cluster domain", func(c *Config) { c.TLSPort, c.ClusterDomain = 443, "cluster..local" }, `--cluster-domain "cluster..local" is not a DNS domain`},
		{"out without TLS", func(c *Config) { c.ServiceAccountOut = "/out" }, "--serviceaccount-out needs --tls-port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			c.Server = "https://10.0.0.1:443"
			tt.mutate(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Validate: %v, want %q", err, tt.want)
			}
		})
	}
}
