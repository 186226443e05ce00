// Package certs checks the webhook's self-managed certificates against a real API server:
// created from nothing, patched into the webhook configuration, served, and rotated without
// an admission failing.
package certs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/api-access-injector/api-access-injector/injector"
	"github.com/api-access-injector/api-access-injector/internal/server"
	"github.com/api-access-injector/api-access-injector/test/framework/testenv"
)

const (
	namespace  = "api-access-system"
	secretName = "api-access-injector-tls"
	configName = "api-access-injector"
)

func TestSelfManagedCertificates(t *testing.T) {
	ctrl.SetLogger(logr.Discard())
	ctx := t.Context()
	env, err := testenv.New()
	if err != nil {
		t.Fatal(err)
	}
	hooks, err := testenv.LoadWebhooks("../../config/webhook/manifests.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// The API server calls https://localhost:<port>/...: the name the certificate is made for.
	env.WebhookInstallOptions = envtest.WebhookInstallOptions{MutatingWebhooks: hooks, LocalServingHostExternalName: "localhost"}
	cfg, err := env.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	cs := kubernetes.NewForConfigOrDie(cfg)

	// Start from nothing: no caBundle in the configuration, no certificate on disk.
	mwc, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, configName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range mwc.Webhooks {
		mwc.Webhooks[i].ClientConfig.CABundle = nil
	}
	if _, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Update(ctx, mwc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The Secret exists, empty, as the chart creates it; the webhook fills it.
	if _, err := cs.CoreV1().Secrets(namespace).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: secretName}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	certDir := t.TempDir()
	go syncSecret(ctx, t, cs, certDir)

	inj, err := injector.New(injector.Config{Sidecar: injector.SidecarConfig{Image: "registry.example.com/api-proxy:test"}})
	if err != nil {
		t.Fatal(err)
	}
	probe, err := testenv.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	o := env.WebhookInstallOptions
	mgr, err := server.New(cfg, server.Options{
		Injector: inj, CertDir: certDir, Host: o.LocalServingHost, Port: o.LocalServingPort,
		HealthProbeBindAddress: probe, MetricsBindAddress: "0",
		SelfManagedCerts: &server.SelfManagedCerts{
			Namespace: namespace, SecretName: secretName, WebhookConfigName: configName, DNSNames: []string{"localhost"},
			// A server certificate that enters the look-ahead window 5 seconds after it is
			// made: renewed every 5 to 7 seconds (the CA stays).
			ServerCertDuration: 2*time.Hour + 5*time.Second, LookaheadInterval: 2 * time.Hour, RotationCheckFrequency: 2 * time.Second,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	mctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(mctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Logf("stopping the manager: %v", err)
		}
	})

	start := time.Now()
	for !probeServes(probe) {
		if _, err := os.Stat(filepath.Join(certDir, "tls.crt")); err != nil && probeServes(probe) { // ready only with a certificate
			t.Fatal("ready before a certificate was on disk")
		}
		if time.Since(start) > 90*time.Second {
			t.Fatal("not ready after 90s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("ready %v after start, with a certificate it made itself", time.Since(start).Round(time.Millisecond))

	secret, err := cs.CoreV1().Secrets(namespace).Get(ctx, secretName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mwc, err = cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, configName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range mwc.Webhooks {
		if !bytes.Equal(w.ClientConfig.CABundle, secret.Data["ca.crt"]) {
			t.Errorf("entry %s: caBundle is not the CA in the Secret", w.Name)
		}
	}

	// Admissions through the API server while the serving certificate is renewed: none may fail.
	appNS, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "certs-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ServiceAccounts(appNS.Name).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort(o.LocalServingHost, strconv.Itoa(o.LocalServingPort))
	seen := map[string]bool{}
	for i := 0; i < 60 || len(seen) < 3; i++ {
		if i > 400 {
			t.Fatalf("saw %d served certificates in %d admissions; the rotation did not happen or was not picked up", len(seen), i)
		}
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "p-" + strconv.Itoa(i), Annotations: map[string]string{injector.InjectAnnotation: "true"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}},
		}
		got, err := cs.CoreV1().Pods(appNS.Name).Create(ctx, pod, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("admission %d: %v", i, err)
		}
		if len(got.Spec.InitContainers) == 0 || got.Spec.InitContainers[0].Name != injector.SidecarName {
			t.Fatalf("admission %d: pod not injected (the API server could not call the webhook)", i)
		}
		seen[served(t, addr)] = true
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("%d served certificates went by, no admission failed", len(seen))
}

// syncSecret plays the kubelet's part: it keeps the Secret's files in certDir, replacing
// them atomically as a Secret volume update does.
func syncSecret(ctx context.Context, t *testing.T, cs kubernetes.Interface, certDir string) {
	var last []byte
	for ctx.Err() == nil {
		s, err := cs.CoreV1().Secrets(namespace).Get(ctx, secretName, metav1.GetOptions{})
		if err == nil && len(s.Data["tls.crt"]) > 0 && !bytes.Equal(s.Data["tls.crt"], last) {
			for _, name := range []string{"tls.key", "ca.crt", "tls.crt"} {
				tmp := filepath.Join(certDir, "."+name)
				err := os.WriteFile(tmp, s.Data[name], 0o600)
				if err == nil {
					err = os.Rename(tmp, filepath.Join(certDir, name))
				}
				if err != nil {
					t.Errorf("writing %s: %v", name, err)
				}
			}
			last = s.Data["tls.crt"]
		} else if err != nil && !apierrors.IsNotFound(err) && ctx.Err() == nil {
			t.Errorf("reading the Secret: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// served returns the SHA-256 fingerprint of the certificate the webhook serves now.
func served(t *testing.T, addr string) string {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // only the certificate is looked at
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sum := sha256.Sum256(conn.ConnectionState().PeerCertificates[0].Raw)
	return hex.EncodeToString(sum[:])
}

// probeServes reports whether the webhook process reports ready.
func probeServes(probe string) bool {
	resp, err := http.Get("http://" + probe + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
