package proxy

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
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
// from a CA of its own. The serving key lives only in the process's memory; the CA's key too,
// unless --ca-dir names a directory to keep it in, which only the sidecar mounts (the injector
// gives it a memory-backed emptyDir), so that a restarted sidecar (an OOM kill) serves under the
// CA the app containers already trust. The CA's certificate, the pod's namespace and a token
// that is no credential are written (--serviceaccount-out) into a volume that the app
// containers mount where the kubelet would mount their service-account token, so that
// rest.InClusterConfig(), the other client libraries' in-cluster loaders, kubectl and a curl
// with --cacert find what they expect and talk to the proxy, which adds the pod's real
// credentials after its filters.

// DefaultClusterDomain is the cluster's DNS domain, the kubelet's default --cluster-domain.
const DefaultClusterDomain = "cluster.local"

// PlaceholderToken is what --serviceaccount-out writes as the token: in-cluster loaders refuse
// to start without a token file, and send its content as a bearer token, which the proxy drops
// (see Server.rewrite). It is no JWT and no credential, so an app that passes it on elsewhere
// hands out nothing. No newline: some loaders send the file's content as it is.
const PlaceholderToken = "not-a-credential.api-proxy-adds-the-pod-credentials" //nolint:gosec // no credential, as it says

// CAStateFile is the file in --ca-dir that holds the CA's certificate and its private key, both
// PEM, in one file so that one atomic rename replaces them together: a crash between two files
// could leave a key that does not match its certificate.
const CAStateFile = "ca.pem"

// CAStateFileMode keeps the CA's key from any other user of the volume.
const CAStateFileMode os.FileMode = 0o600

// caValidity is the lifetime of a new CA. The serving certificate, made at each start, lives as
// long as its CA, so a pod that runs for years never sees it expire.
const caValidity = 10 * 365 * 24 * time.Hour

// minCALife is how long a CA found in --ca-dir must stay valid to be reused: the shortest life
// a serving certificate issued at this start gets. A CA closer to its end is replaced (once per
// decade of a pod's life), rather than the proxy serving a certificate about to expire.
const minCALife = 365 * 24 * time.Hour

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

// servingCA is the CA and the serving certificate it signed.
type servingCA struct {
	caPEM []byte
	cert  tls.Certificate
}

// authority is a CA: its certificate and its private key.
type authority struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// newServingCA returns a serving certificate for names and the loopback addresses, signed by
// the CA kept in caDir if there is a usable one there, else by a new CA, which it then keeps
// there. Without caDir the CA is new and lives only in memory. The certificates are shaped for
// strict verifiers (Python 3.13's VERIFY_X509_STRICT among them): a critical basicConstraints
// on the CA, key identifiers, serverAuth on the leaf.
func newServingCA(names []string, caDir string, log *slog.Logger, now time.Time) (*servingCA, error) {
	var ca *authority
	var err error
	if caDir == "" {
		ca, err = newAuthority(now)
	} else {
		ca, err = keptAuthority(filepath.Join(caDir, CAStateFile), log, now)
	}
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("creating the serving key: %w", err)
	}
	notBefore := now.Add(-time.Hour) // clocks of the app's libraries may lag a little
	if notBefore.Before(ca.cert.NotBefore) {
		notBefore = ca.cert.NotBefore
	}
	leaf := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    notBefore,
		NotAfter:     ca.cert.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     names,
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, fmt.Errorf("creating the serving certificate: %w", err)
	}
	return &servingCA{
		caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw}),
		cert:  tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: key},
	}, nil
}

// newAuthority creates a CA: an ECDSA P-256 key and a self-signed certificate valid for
// caValidity.
func newAuthority(now time.Time) (*authority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("creating the CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "api-proxy transparent-mode CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("creating the CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &authority{cert: cert, key: key}, nil
}

// keptAuthority returns the CA kept in path when it is usable at now (see parseAuthority);
// otherwise it creates one, writes it to path, and logs why, since apps that loaded the old
// ca.crt then fail to verify the proxy until they load it again.
func keptAuthority(path string, log *slog.Logger, now time.Time) (*authority, error) {
	data, err := os.ReadFile(path)
	var why error
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		why = err
	default:
		ca, err := parseAuthority(data, now)
		if err == nil {
			log.Info("reusing the transparent-mode CA of an earlier start", "file", path, "notAfter", ca.cert.NotAfter.UTC().Format(time.RFC3339))
			return ca, nil
		}
		why = err
	}
	ca, err := newAuthority(now)
	if err != nil {
		return nil, err
	}
	out, err := ca.encode()
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(path, out, CAStateFileMode); err != nil {
		return nil, fmt.Errorf("--ca-dir: keeping the CA in %s: %w", path, err)
	}
	if why == nil {
		log.Info("created the transparent-mode CA", "file", path, "notAfter", ca.cert.NotAfter.UTC().Format(time.RFC3339))
	} else {
		log.Warn("replaced the transparent-mode CA found in --ca-dir, which is unusable; "+
			"apps that loaded the old ca.crt fail to verify the proxy until they load it again",
			"file", path, "reason", why.Error(), "notAfter", ca.cert.NotAfter.UTC().Format(time.RFC3339))
	}
	return ca, nil
}

// encode returns the content of CAStateFile for ca: its certificate, then its PKCS#8 key.
func (ca *authority) encode() ([]byte, error) {
	keyDER, err := x509.MarshalPKCS8PrivateKey(ca.key)
	if err != nil {
		return nil, fmt.Errorf("encoding the CA key: %w", err)
	}
	return append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})...), nil
}

// parseAuthority reads a CA kept by keptAuthority: exactly one PEM certificate and one PKCS#8
// private key, the certificate a self-signed CA that may sign certificates, with a subject key
// identifier (strict verifiers need the leaf's authority key identifier), valid from now for
// minCALife at least, and the key its own.
func parseAuthority(data []byte, now time.Time) (*authority, error) {
	var certDER, keyDER []byte
	for rest := data; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		switch {
		case b.Type == "CERTIFICATE" && certDER == nil:
			certDER = b.Bytes
		case b.Type == "PRIVATE KEY" && keyDER == nil:
			keyDER = b.Bytes
		default:
			return nil, fmt.Errorf("unexpected PEM block %q: want one CERTIFICATE and one PRIVATE KEY", b.Type)
		}
	}
	if certDER == nil || keyDER == nil {
		return nil, errors.New("want one PEM CERTIFICATE and one PEM PRIVATE KEY")
	}
	cert, err := x509.ParseCertificate(certDER)
	if err != nil {
		return nil, fmt.Errorf("the certificate: %w", err)
	}
	k, err := x509.ParsePKCS8PrivateKey(keyDER)
	if err != nil {
		return nil, fmt.Errorf("the private key: %w", err)
	}
	key, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("the private key (%T) cannot sign", k)
	}
	switch {
	case !cert.BasicConstraintsValid || !cert.IsCA:
		return nil, fmt.Errorf("the certificate of %q is not a CA's", cert.Subject)
	case cert.KeyUsage&x509.KeyUsageCertSign == 0:
		return nil, fmt.Errorf("the certificate of %q may not sign certificates", cert.Subject)
	case cert.CheckSignatureFrom(cert) != nil:
		return nil, fmt.Errorf("the certificate of %q is not self-signed", cert.Subject)
	case len(cert.SubjectKeyId) == 0:
		return nil, fmt.Errorf("the certificate of %q has no subject key identifier", cert.Subject)
	case now.Before(cert.NotBefore):
		return nil, fmt.Errorf("the certificate of %q is not valid before %s", cert.Subject, cert.NotBefore.UTC().Format(time.RFC3339))
	case now.Add(minCALife).After(cert.NotAfter):
		return nil, fmt.Errorf("the certificate of %q expires at %s, within %v", cert.Subject, cert.NotAfter.UTC().Format(time.RFC3339), minCALife)
	}
	if pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("the private key is not the key of the certificate of %q", cert.Subject)
	}
	return &authority{cert: cert, key: key}, nil
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
