package proxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/api-access-injector/api-access-injector/test/framework/syncbuffer"
)

// newCA returns a CA certificate (PEM) and a serving certificate for 127.0.0.1 that it signed.
func newCA(t *testing.T, name string) (caPEM []byte, serving tls.Certificate) {
	t.Helper()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey, leafKey := key(), key()
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kube-apiserver"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: leafKey}
}

// TestCARotation rotates the API server's serving certificate to a new CA, as a cluster CA
// rotation does: the proxy trusts the new CA once the bundle holds it, without a restart.
func TestCARotation(t *testing.T) {
	oldCA, oldCert := newCA(t, "old-ca")
	newCAPEM, newCert := newCA(t, "new-ca")
	var serving atomic.Pointer[tls.Certificate]
	serving.Store(&oldCert)
	up := httptest.NewUnstartedServer(http.HandlerFunc(echoAuth))
	up.EnableHTTP2 = true
	// Called on every handshake, unlike GetCertificate when the client sends no SNI (an IP).
	up.TLS = &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		return &tls.Config{Certificates: []tls.Certificate{*serving.Load()}, NextProtos: []string{"h2", "http/1.1"}}, nil
	}}
	up.StartTLS()
	defer up.Close()

	f := &fixture{t: t, tb: t, dir: t.TempDir(), upstream: up, logs: new(syncbuffer.Buffer)}
	writeCA := func(pem []byte) {
		// Replace the file as a new inode, as the kubelet's symlink swap does.
		tmp := filepath.Join(f.dir, "ca.tmp")
		if err := os.WriteFile(tmp, pem, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(f.dir, CAFile)); err != nil {
			t.Fatal(err)
		}
	}
	writeCA(oldCA)
	f.writeToken("token-a")
	cfg := DefaultConfig()
	cfg.Server, cfg.ServiceAccountDir = up.URL, f.dir
	srv, err := newServerWith(cfg, f)
	if err != nil {
		t.Fatal(err)
	}
	f.srv = srv
	f.front = httptest.NewServer(srv)
	defer f.front.Close()
	srv.up.caInterval = 0
	srv.up.caNext.Store(0)

	if resp, body := f.get("/api"); resp.StatusCode != 200 {
		t.Fatalf("before the rotation: %d %s", resp.StatusCode, body)
	}
	// The API server restarts with a certificate of the new CA: its connections drop, and new
	// ones need the new CA. (Closing them from the client side instead races with HTTP/2
	// stream teardown: a connection whose last stream is still closing is not idle yet.)
	serving.Store(&newCert)
	up.CloseClientConnections()
	// A request may still meet a dropped connection (502, EOF); none may succeed, and once the
	// proxy dials anew it must fail on the certificate.
	for try := 1; ; try++ {
		resp, body := f.get("/api")
		if resp.StatusCode == http.StatusBadGateway && strings.Contains(body, "certificate") {
			break
		}
		if resp.StatusCode != http.StatusBadGateway || try == 3 {
			t.Fatalf("with the old bundle: %d %s, want 502 naming the certificate", resp.StatusCode, body)
		}
	}
	writeCA(append(append([]byte{}, oldCA...), newCAPEM...))
	if resp, body := f.get("/api"); resp.StatusCode != 200 {
		t.Fatalf("after the bundle gained the new CA: %d %s, want 200", resp.StatusCode, body)
	}
}
