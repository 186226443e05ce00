package server_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/api-access-injector/api-access-injector/injector"
	"github.com/api-access-injector/api-access-injector/internal/server"
)

// TestCertificateExpiryMetric checks that the metrics endpoint's registry exports the serving
// certificate's NotAfter, follows a replaced certificate, and exports nothing without one.
func TestCertificateExpiryMetric(t *testing.T) {
	inj, err := injector.New(injector.Config{Sidecar: injector.SidecarConfig{Image: "registry.example.com/api-proxy:test"}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if _, err := server.New(&rest.Config{Host: "https://127.0.0.1:1"}, server.Options{
		Injector: inj, CertDir: dir, Port: 1, HealthProbeBindAddress: "0", MetricsBindAddress: "0",
	}); err != nil {
		t.Fatal(err)
	}
	if v, ok := gauge(t); ok {
		t.Fatalf("%s = %v with no certificate, want no sample", server.CertificateExpiryMetric, v)
	}
	for _, notAfter := range []time.Time{time.Unix(1900000000, 0), time.Unix(1900086400, 0)} {
		writeCertExpiring(t, dir, notAfter)
		if v, ok := gauge(t); !ok || v != float64(notAfter.Unix()) {
			t.Errorf("%s = %v (present %v), want %d", server.CertificateExpiryMetric, v, ok, notAfter.Unix())
		}
	}
}

func gauge(t *testing.T) (float64, bool) {
	t.Helper()
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == server.CertificateExpiryMetric && len(f.GetMetric()) == 1 {
			return f.GetMetric()[0].GetGauge().GetValue(), true
		}
	}
	return 0, false
}

func writeCertExpiring(t *testing.T, dir string, notAfter time.Time) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test"},
		NotBefore: notAfter.Add(-48 * time.Hour), NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
}
