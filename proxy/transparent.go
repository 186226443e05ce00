package proxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Transparent mode: besides the plain HTTP listener, the proxy serves the API over TLS on
// --address:--tls-port, under the names in-cluster clients use for the API server
// (https://kubernetes.io/docs/tasks/run-application/access-api-from-pod/), with a certificate
// from a CA it creates when it starts. Both private keys live only in the process's memory:
// nothing on disk can sign a certificate the app trusts. The CA's certificate, the pod's
// namespace and a token that is no credential are written (--serviceaccount-out) into a volume
// that the app containers mount where the kubelet would mount their service-account token, so
// that rest.InClusterConfig(), the other client libraries' in-cluster loaders, kubectl and a
// curl with --cacert find what they expect and talk to the proxy, which adds the pod's real
// credentials after its filters.

// DefaultClusterDomain is the cluster's DNS domain, the kubelet's default --cluster-domain.
const DefaultClusterDomain = "cluster.local"

// PlaceholderToken is what --serviceaccount-out writes as the token: in-cluster loaders refuse
// to start without a token file, and send its content as a bearer token, which the proxy drops
// (see Server.rewrite). It is no JWT and no credential, so an app that passes it on elsewhere
// hands out nothing. No newline: some loaders send the file's content as it is.
const PlaceholderToken = "not-a-credential.api-proxy-adds-the-pod-credentials"

// caValidity is the lifetime of the CA and the serving certificate. They die with the process
// (a restarted sidecar makes new ones), so a long life costs nothing, and a pod that runs for
// years never sees the certificate expire.
const caValidity = 10 * 365 * 24 * time.Hour

// TransparentNames are the DNS names in-cluster clients reach the API server by, which the
// serving certificate names and the TLS listener accepts as Host: the Service kubernetes in
// the namespace default, in each of its short forms and in the cluster-domain form.
func TransparentNames(clusterDomain string) []string {
	names := []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc"}
	if clusterDomain != "" {
		names = append(names, "kubernetes.default.svc."+clusterDomain)
	}
	return append(names, "localhost")
}

// servingCA is the in-memory CA and the serving certificate it signed.
type servingCA struct {
	caPEM []byte
	cert  tls.Certificate
}

// newServingCA creates a CA and a serving certificate for names and the loopback addresses.
// The certificates are shaped for strict verifiers (Python 3.13's VERIFY_X509_STRICT among
// them): a critical basicConstraints on the CA, key identifiers, serverAuth on the leaf.
func newServingCA(names []string, now time.Time) (*servingCA, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("creating the CA key: %w", err)
	}
	notBefore := now.Add(-time.Hour) // clocks of the app's libraries may lag a little
	ca := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "api-proxy transparent-mode CA"},
		NotBefore:             notBefore,
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("creating the CA certificate: %w", err)
	}
	if ca, err = x509.ParseCertificate(caDER); err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("creating the serving key: %w", err)
	}
	leaf := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    notBefore,
		NotAfter:     now.Add(caValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     names,
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("creating the serving certificate: %w", err)
	}
	return &servingCA{
		caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		cert:  tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: key},
	}, nil
}

// serial is a random 128-bit certificate serial number, as RFC 5280 recommends.
func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return n
}

// tlsNames is the set of TransparentNames, for the Host check of the TLS listener.
type tlsNames map[string]bool

func newTLSNames(clusterDomain string) tlsNames {
	m := tlsNames{}
	for _, n := range TransparentNames(clusterDomain) {
		m[n] = true
	}
	return m
}

// accepts reports whether a Host header names the API server by one of the certificate's
// names (its loopback addresses are accepted by the default --accept-hosts already).
func (n tlsNames) accepts(host string) bool {
	h, ok := splitHostHeader(host)
	return ok && n[strings.ToLower(h)]
}

// writeServiceAccount writes --serviceaccount-out: ca.crt (the CA), namespace (read from
// --serviceaccount-dir) and token (PlaceholderToken), each atomically with mode 0644, the files
// in-cluster clients read from /var/run/secrets/kubernetes.io/serviceaccount.
func (s *Server) writeServiceAccount() error {
	dir := s.cfg.ServiceAccountOut
	if dir == "" {
		return nil
	}
	ns := readNamespace(s.cfg.ServiceAccountDir)
	if ns == "" {
		return fmt.Errorf("--serviceaccount-out: no namespace in %s", filepath.Join(s.cfg.ServiceAccountDir, NamespaceFile))
	}
	var errs []error
	for _, f := range []struct {
		name string
		data []byte
	}{{CAFile, s.ca.caPEM}, {NamespaceFile, []byte(ns)}, {TokenFile, []byte(PlaceholderToken)}} {
		if err := writeFileAtomic(filepath.Join(dir, f.name), f.data, KubeconfigFileMode); err != nil {
			errs = append(errs, fmt.Errorf("--serviceaccount-out: writing %s: %w", f.name, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	s.log.Info("wrote the app containers' service-account files", "dir", dir, "namespace", ns)
	return nil
}

// listenTLS binds the TLS listener of transparent mode.
func (s *Server) listenTLS() (net.Listener, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(s.cfg.Address, fmt.Sprint(s.cfg.TLSPort)))
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			err = fmt.Errorf("%w (a port below 1024 needs the pod's sysctl net.ipv4.ip_unprivileged_port_start at or below it)", err)
		}
		return nil, fmt.Errorf("listening for the API over TLS: %w", err)
	}
	return ln, nil
}
