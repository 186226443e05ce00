package proxy

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

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
		{"CA dir", func(c *Config) { c.TLSPort, c.CADir = 443, "/ca" }, ""},
		{"CA dir without TLS", func(c *Config) { c.CADir = "/ca" }, "--ca-dir needs --tls-port"},
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

// startCA runs what New runs for the TLS listener at time now, with --ca-dir dir, and returns
// the serving CA and the log.
func startCA(t *testing.T, dir string, now time.Time) (*servingCA, string) {
	t.Helper()
	var logs bytes.Buffer
	ca, err := newServingCA(TransparentNames(DefaultClusterDomain), dir, slog.New(slog.NewTextHandler(&logs, nil)), now)
	if err != nil {
		t.Fatalf("newServingCA: %v\n%s", err, logs.String())
	}
	return ca, logs.String()
}

// verifyServing checks that ca's serving certificate chains, for kubernetes.default.svc, to the
// CA whose PEM certificate is trusted, as an app that loaded that ca.crt checks it.
func verifyServing(t *testing.T, ca *servingCA, trusted []byte, now time.Time) error {
	t.Helper()
	leaf, err := x509.ParseCertificate(ca.cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(trusted) {
		t.Fatal("no certificate in the trusted PEM")
	}
	_, err = leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "kubernetes.default.svc", CurrentTime: now})
	return err
}

// TestCADirKeepsTheCA: with --ca-dir, the first start creates the CA and keeps it there (mode
// 0600, nowhere else); a restart reuses it, with a fresh serving certificate that an app which
// loaded the first start's ca.crt still verifies. Without --ca-dir each start makes a new CA.
func TestCADirKeepsTheCA(t *testing.T) {
	now := time.Now()
	dir := t.TempDir()
	first, log := startCA(t, dir, now)
	if !strings.Contains(log, `msg="created the transparent-mode CA"`) {
		t.Errorf("first start's log does not say it created the CA:\n%s", log)
	}
	fi, err := os.Stat(filepath.Join(dir, CAStateFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != CAStateFileMode {
		t.Errorf("%s mode %v, want %v", CAStateFile, fi.Mode().Perm(), CAStateFileMode)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("--ca-dir holds %d entries, want only %s", len(entries), CAStateFile)
	}

	later := now.Add(3 * 24 * time.Hour)
	second, log := startCA(t, dir, later)
	if !strings.Contains(log, `msg="reusing the transparent-mode CA of an earlier start"`) {
		t.Errorf("restart's log does not say it reused the CA:\n%s", log)
	}
	if diff := cmp.Diff(string(first.caPEM), string(second.caPEM)); diff != "" {
		t.Errorf("the restart changed ca.crt (-first +second):\n%s", diff)
	}
	if bytes.Equal(first.cert.Certificate[0], second.cert.Certificate[0]) {
		t.Error("the restart serves the first start's certificate; want a fresh one")
	}
	if err := verifyServing(t, second, first.caPEM, later); err != nil {
		t.Errorf("an app that loaded the first ca.crt does not verify the restarted proxy: %v", err)
	}

	a, _ := startCA(t, "", now)
	b, _ := startCA(t, "", now)
	if bytes.Equal(a.caPEM, b.caPEM) {
		t.Error("without --ca-dir two starts share a CA")
	}
	if err := verifyServing(t, b, a.caPEM, now); err == nil {
		t.Error("without --ca-dir, the second start's certificate chains to the first's CA")
	}
}

// TestCADirReplacesUnusable: a missing piece, a foreign or broken file, a CA near its end or
// not valid yet, is replaced by a new CA, kept in its place, and the log says why in a warning.
func TestCADirReplacesUnusable(t *testing.T) {
	now := time.Now()
	mustCA := func(at time.Time) *authority {
		ca, err := newAuthority(at)
		if err != nil {
			t.Fatal(err)
		}
		return ca
	}
	encode := func(ca *authority) []byte {
		b, err := ca.encode()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	certPEM := func(der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}) }
	keyPEM := func(k any) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	a, b := mustCA(now), mustCA(now)
	serving, _ := startCA(t, "", now)
	// A CA certificate of b's key that a signed: a CA, but not a root.
	intermediate := func() []byte {
		tmpl := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: "intermediate"}, NotBefore: now.Add(-time.Hour),
			NotAfter: now.Add(caValidity), KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, b.key.Public(), a.key)
		if err != nil {
			t.Fatal(err)
		}
		return append(certPEM(der), keyPEM(b.key)...)
	}()

	tests := []struct {
		name string
		file []byte
		want string // in the warning's reason
	}{
		{"empty", []byte{}, "want one PEM CERTIFICATE and one PEM PRIVATE KEY"},
		{"not PEM", []byte("hello"), "want one PEM CERTIFICATE and one PEM PRIVATE KEY"},
		{"certificate only", certPEM(a.cert.Raw), "want one PEM CERTIFICATE and one PEM PRIVATE KEY"},
		{"two certificates", append(encode(a), certPEM(b.cert.Raw)...), `unexpected PEM block \"CERTIFICATE\"`},
		{"broken certificate", append(certPEM([]byte("junk")), keyPEM(a.key)...), "the certificate: x509:"},
		{"another CA's key", append(certPEM(a.cert.Raw), keyPEM(b.key)...), "the private key is not the key of the certificate"},
		{"a serving certificate, not a CA", append(certPEM(serving.cert.Certificate[0]), keyPEM(serving.cert.PrivateKey)...), "is not a CA's"},
		{"an intermediate CA", intermediate, "is not self-signed"},
		{"expiring within the serving certificate's life", encode(mustCA(now.Add(-caValidity + minCALife/2))), "expires at"},
		{"not valid yet", encode(mustCA(now.Add(2 * time.Hour))), "is not valid before"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, CAStateFile)
			if err := os.WriteFile(path, tt.file, 0o600); err != nil {
				t.Fatal(err)
			}
			ca, log := startCA(t, dir, now)
			if !strings.Contains(log, `level=WARN msg="replaced the transparent-mode CA found in --ca-dir, which is unusable;`) ||
				!strings.Contains(log, tt.want) {
				t.Errorf("log does not warn of the replacement with a reason holding %q:\n%s", tt.want, log)
			}
			kept, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			got, err := parseAuthority(kept, now)
			if err != nil {
				t.Fatalf("the CA kept in place of the unusable one: %v", err)
			}
			if diff := cmp.Diff(string(certPEM(got.cert.Raw)), string(ca.caPEM)); diff != "" {
				t.Errorf("ca.crt is not the kept CA (-kept +ca.crt):\n%s", diff)
			}
			if err := verifyServing(t, ca, ca.caPEM, now); err != nil {
				t.Errorf("the serving certificate does not chain to the new CA: %v", err)
			}
		})
	}

	t.Run("a CA that cannot be kept is an error", func(t *testing.T) {
		dir := t.TempDir()
		// A directory where the file should be: neither read nor replaced.
		if err := os.MkdirAll(filepath.Join(dir, CAStateFile, "x"), 0o755); err != nil {
			t.Fatal(err)
		}
		_, err := newServingCA(TransparentNames(DefaultClusterDomain), dir, slog.New(slog.DiscardHandler), now)
		if err == nil || !strings.Contains(err.Error(), "--ca-dir: keeping the CA in "+filepath.Join(dir, CAStateFile)) {
			t.Errorf("newServingCA: %v, want an error naming --ca-dir and the file", err)
		}
	})
}

// FuzzParseAuthority: whatever --ca-dir holds, parseAuthority does not panic, and what it
// accepts is a usable CA: it signs a serving certificate that verifies against it.
func FuzzParseAuthority(f *testing.F) {
	now := time.Now()
	ca, err := newAuthority(now)
	if err != nil {
		f.Fatal(err)
	}
	good, err := ca.encode()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Add(good[:len(good)/2])
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := parseAuthority(data, now)
		if err != nil {
			return
		}
		if !got.cert.IsCA {
			t.Fatalf("accepted a certificate that is no CA: %+v", got.cert.Subject)
		}
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: serial(), NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour), DNSNames: []string{"kubernetes"}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, got.cert, &key.PublicKey, got.key)
		if err != nil {
			t.Fatalf("the accepted CA cannot sign: %v", err)
		}
		leaf, _ := x509.ParseCertificate(der)
		if err := leaf.CheckSignatureFrom(got.cert); err != nil {
			t.Fatalf("a certificate the accepted CA signed does not verify against it: %v", err)
		}
	})
}
