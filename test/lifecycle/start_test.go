package lifecycle

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// startTimeout bounds a start with self-managed certificates: the rotator looks for the
// mounted certificate and for its caBundle with backoffs of 1, 2, 4... seconds.
const startTimeout = 90 * time.Second

// TestReplicasStartQuietly starts two webhook processes at once against an empty Secret, as
// a fresh install with two replicas does: both must become ready serving the same
// certificate, exactly one must have written it, and neither may log at error level.
func TestReplicasStartQuietly(t *testing.T) {
	const ns = "quiet-replicas"
	flags := selfManagedSetup(t, ns)
	dirs := []string{t.TempDir(), t.TempDir()}
	mountSecret(t, ns, "api-access-injector-tls", dirs...)

	procs := []*process{
		startWebhook(t, "replica-0", dirs[0], flags...),
		startWebhook(t, "replica-1", dirs[1], flags...),
	}
	for _, p := range procs {
		p.waitReady(t, startTimeout)
	}

	secret, err := clientset.CoreV1().Secrets(ns).Get(t.Context(), "api-access-injector-tls", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(secret.Data["tls.crt"])
	if block == nil {
		t.Fatal("the Secret holds no PEM certificate")
	}
	want := fingerprint(block.Bytes)
	for _, p := range procs {
		if got := p.servedCert(t); got != want {
			t.Errorf("%s serves certificate %s, want the Secret's %s", p.name, got, want)
		}
	}
	if _, err := x509.ParseCertificate(block.Bytes); err != nil {
		t.Errorf("the Secret's certificate: %v", err)
	}
	mwc, err := clientset.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(t.Context(), ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range mwc.Webhooks {
		if !bytes.Equal(w.ClientConfig.CABundle, secret.Data["ca.crt"]) {
			t.Errorf("entry %s: caBundle is not the Secret's CA", w.Name)
		}
	}

	for _, p := range procs {
		if code := p.stop(t, 30*time.Second); code != 0 {
			t.Errorf("%s exited %d after SIGTERM, want 0", p.name, code)
		}
	}
	created, raced := 0, 0
	for _, p := range procs {
		lines := p.quietLog(t)
		created += count(lines, "created a CA and a serving certificate")
		raced += count(lines, "another replica changed the Secret first; reading it again") +
			count(lines, "the webhook configuration had changed since it was read; its caBundle is current")
	}
	if created != 1 {
		t.Errorf("%d replicas logged that they created the certificates, want exactly 1", created)
	}
	// Whether the replicas collided depends on timing; say so, for whoever reads the run.
	t.Logf("write conflicts settled between the replicas: %d", raced)
}

// TestStartupLogIsClean reads the whole log of one normal start and stop, as the chart runs
// the webhook (self-managed certificates, the chart's list of excluded namespaces): on a
// fresh install (empty Secret) and on a restart (certificates in place). No line may be at
// error level, and the excluded namespaces are logged once, each once.
func TestStartupLogIsClean(t *testing.T) {
	const ns = "quiet-start"
	flags := selfManagedSetup(t, ns)
	// The configuration as the chart renders it: its list already holds the always-excluded
	// namespaces and the release namespace, which the command adds again.
	config := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(config, []byte("excludedNamespaces: [\"kube-system\",\"kube-node-lease\",\""+ns+"\",\"platform\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	flags = append(flags, "--config="+config)
	dir := t.TempDir()
	mountSecret(t, ns, "api-access-injector-tls", dir)

	for _, start := range []string{"fresh install", "restart"} {
		t.Run(start, func(t *testing.T) {
			p := startWebhook(t, start, dir, flags...)
			p.waitReady(t, startTimeout)
			if code := p.stop(t, 30*time.Second); code != 0 {
				t.Errorf("exit code after SIGTERM = %d, want 0", code)
			}
			lines := p.quietLog(t)
			var excluded [][]any
			for _, l := range lines {
				if v, ok := l["excludedNamespaces"]; ok {
					list, _ := v.([]any)
					excluded = append(excluded, list)
				}
			}
			want := []any{"kube-system", "kube-node-lease", ns, "platform"}
			if len(excluded) != 1 || !slices.Equal(excluded[0], want) {
				t.Errorf("excludedNamespaces logged as %v, want once as %v", excluded, want)
			}
			wantMsg := map[string]string{"fresh install": "created a CA and a serving certificate", "restart": "using the certificates in the Secret"}[start]
			if count(lines, wantMsg) != 1 {
				t.Errorf("the log does not say %q once", wantMsg)
			}
		})
	}
}
