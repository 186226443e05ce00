package explain_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// TestExplainServiceHealth checks the health of a webhook behind a Service, as in a cluster:
// the EndpointSlices' ready and not-ready endpoints, and, since the Service's DNS name cannot
// be reached from outside the cluster, the serving certificate read from the Secret its pods
// mount, verified against the caBundle for <service>.<namespace>.svc, and its expiry. The
// webhook configuration under test selects no namespace, so it changes no admission.
func TestExplainServiceHealth(t *testing.T) {
	ns := newNamespace(t, "", nil)
	ctx := t.Context()
	caPEM, crtPEM, keyPEM := chain(t, "webhook."+ns+".svc", 48*time.Hour)
	if _, err := clientset.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "webhook-tls"}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: crtPEM, corev1.TLSPrivateKeyKey: keyPEM},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := appPod(ns, "webhook-0", nil)
	pod.Labels = map[string]string{"app": "webhook"}
	pod.Spec.Volumes = []corev1.Volume{{Name: "certs", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "webhook-tls"}}}} //nolint:gosec // a Secret's name, no credential
	if _, err := clientset.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := clientset.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "webhook"},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": "webhook"}, Ports: []corev1.ServicePort{{Port: 443}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// envtest runs no controller-manager: the EndpointSlice is written as its controller would.
	if _, err := clientset.DiscoveryV1().EndpointSlices(ns).Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "webhook-1", Labels: map[string]string{discoveryv1.LabelServiceName: "webhook"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"10.0.0.10"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}},
			{Addresses: []string{"10.0.0.11"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false)}},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	hooks := clientset.AdmissionregistrationV1().MutatingWebhookConfigurations()
	live, err := hooks.Get(ctx, "api-access-injector", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "explain-service-" + ns}, Webhooks: live.Webhooks}
	for i := range cfg.Webhooks {
		w := &cfg.Webhooks[i]
		w.ClientConfig = admissionregistrationv1.WebhookClientConfig{
			Service:  &admissionregistrationv1.ServiceReference{Namespace: ns, Name: "webhook", Path: ptr.To("/inject/opt-in"), Port: ptr.To[int32](443)},
			CABundle: caPEM,
		}
		w.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"explain.test/never": "true"}}
	}
	if _, err := hooks.Create(ctx, cfg, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hooks.Delete(t.Context(), cfg.Name, metav1.DeleteOptions{}) })

	file := `{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "app", "annotations": {"apiaccess.io/inject": "true"}},
	 "spec": {"containers": [{"name": "app", "image": "registry.example.com/app:1"}]}}`
	type health struct {
		Service           string
		Ready, NotReady   int
		Source, Subject   string
		Verifies, Healthy bool
	}
	for _, tc := range []struct {
		expiryWarning string
		problem       string // "" for none
	}{
		{"24h", ""},
		{"72h", "the serving certificate expires at"},
	} {
		t.Run("expiry warning "+tc.expiryWarning, func(t *testing.T) {
			r := one(t, must(command(t, file, "-f", "-", "-n", ns, "--webhook-config", cfg.Name, "--expiry-warning", tc.expiryWarning)))
			h := r.Health
			if h == nil || h.ReadyEndpoints == nil || h.ServingCertificate == nil {
				t.Fatalf("health = %+v, want endpoints and a serving certificate", h)
			}
			got := health{h.Service, *h.ReadyEndpoints, *h.NotReadyEndpoints, h.ServingCertificate.Source, h.ServingCertificate.Subject, h.CABundleVerifies, h.Healthy}
			want := health{ns + "/webhook:443", 1, 1, "secret " + ns + "/webhook-tls", "CN=webhook." + ns + ".svc", true, tc.problem == ""}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("health (-want +got):\n%s", diff)
			}
			found := slices.ContainsFunc(h.Problems, func(p string) bool { return tc.problem != "" && strings.HasPrefix(p, tc.problem) })
			if (tc.problem != "") != found || (tc.problem == "" && len(h.Problems) > 0) {
				t.Errorf("problems = %q, want one starting with %q", h.Problems, tc.problem)
			}
			if r.Applies != "" {
				t.Errorf("entry %s applies; the configuration under test selects no namespace", r.Applies)
			}
		})
	}
}

// chain returns a CA (PEM) and a serving certificate and key it signed for dnsName, valid for
// the given time from now.
func chain(t *testing.T, dnsName string, valid time.Duration) (caPEM, crtPEM, keyPEM []byte) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true, BasicConstraintsValid: true,
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(365 * 24 * time.Hour), KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: dnsName}, DNSNames: []string{dnsName},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(valid), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
}
