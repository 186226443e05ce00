package explain_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"

	"github.com/api-access-injector/api-access-injector/injector"
	"github.com/api-access-injector/api-access-injector/internal/explain"
)

// newNamespace creates a namespace with the given labels (name generated unless given) and
// its default ServiceAccount (envtest runs no controller-manager to create it).
func newNamespace(t *testing.T, name string, labels map[string]string) string {
	t.Helper()
	meta := metav1.ObjectMeta{Name: name, Labels: labels}
	if name == "" {
		meta.GenerateName = "explain-"
	}
	ns, err := clientset.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: meta}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := clientset.CoreV1().ServiceAccounts(ns.Name).Create(t.Context(),
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	return ns.Name
}

func appPod(ns, name string, annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: annotations},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example.com/app:1"}}},
	}
}

// kubeconfig writes a kubeconfig for envtest's admin user, for the command's --kubeconfig.
func kubeconfig(t *testing.T) string {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["envtest"] = &clientcmdapi.Cluster{Server: restCfg.Host, CertificateAuthorityData: restCfg.CAData}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: restCfg.CertData, ClientKeyData: restCfg.KeyData, Token: restCfg.BearerToken}
	cfg.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "admin", Namespace: "default"}
	cfg.CurrentContext = "envtest"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// command runs the explain command as a user would, with -o json, and parses its output.
func command(t *testing.T, stdin string, args ...string) ([]explain.Report, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	args = append([]string{"--kubeconfig", kubeconfig(t), "-o", "json"}, args...)
	err := explain.Command(t.Context(), "explain", args, strings.NewReader(stdin), &stdout, &stderr)
	if err != nil && !errors.Is(err, explain.ErrProblems) {
		t.Fatalf("explain %s: %v\nstderr: %s", strings.Join(args, " "), err, stderr.String())
	}
	var reports []explain.Report
	if jerr := json.Unmarshal(stdout.Bytes(), &reports); jerr != nil {
		t.Fatalf("-o json output does not parse: %v\n%s", jerr, stdout.String())
	}
	// The same reports for a person, in the test log (go test -v shows them).
	var text bytes.Buffer
	for i := range reports {
		if perr := explain.Print(&text, &reports[i]); perr != nil {
			t.Fatal(perr)
		}
	}
	t.Logf("explain %s:\n%s", strings.Join(args[4:], " "), text.String())
	return reports, err
}

func one(t *testing.T, reports []explain.Report) explain.Report {
	t.Helper()
	if len(reports) != 1 {
		t.Fatalf("got %d reports, want 1", len(reports))
	}
	return reports[0]
}

// summary is what each case asserts of a report.
type summary struct {
	WouldInject   bool
	Applies       string
	DecisionIn    bool
	Excluded      bool
	DryRunInjects bool
	Healthy       bool
}

func summarize(r explain.Report) summary {
	s := summary{WouldInject: r.WouldInject, Applies: r.Applies, DecisionIn: r.Decision.Inject, Excluded: r.Namespace.Excluded}
	if r.DryRun != nil {
		s.DryRunInjects = r.DryRun.Injected
	}
	if r.Health != nil {
		s.Healthy = r.Health.Healthy
	}
	return s
}

func TestExplainFromFile(t *testing.T) {
	plain := newNamespace(t, "", nil)
	enabled := newNamespace(t, "", map[string]string{injector.InjectionLabel: "enabled"})
	excluded := newNamespace(t, injectorNamespace, map[string]string{injector.InjectionLabel: "enforced"})
	deployment := func(ns string, annotations string) string {
		return `apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: ` + ns + `}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      labels: {app: web}
      annotations: {` + annotations + `}
    spec:
      containers: [{name: app, image: registry.example.com/app:1}]
`
	}
	for _, tc := range []struct {
		name     string
		manifest string
		want     summary
		reason   string
		why      map[string]string // entry name -> start of why it is not called
	}{{
		name:     "opted-in pod in a namespace without the label",
		manifest: deployment(plain, `apiaccess.io/inject: "true"`),
		want:     summary{WouldInject: true, Applies: "opt-in.inject.apiaccess.io", DecisionIn: true, DryRunInjects: true, Healthy: true},
		reason:   `pod opted in with apiaccess.io/inject: "true"`,
		why:      map[string]string{"enabled.inject.apiaccess.io": "namespace " + plain + " has no label apiaccess.io/injection"},
	}, {
		name:     "pod that opted out in an enabled namespace",
		manifest: deployment(enabled, `apiaccess.io/inject: "false"`),
		want:     summary{Healthy: true},
		reason:   `pod opted out with apiaccess.io/inject: "false"`,
		why:      map[string]string{"enabled.inject.apiaccess.io": "matchCondition not-opted-out is false for the pod"},
	}, {
		name:     "pod in an excluded namespace",
		manifest: deployment(excluded, `apiaccess.io/inject: "true"`),
		want:     summary{Excluded: true, Healthy: true},
		reason:   "namespace " + injectorNamespace + " is excluded from injection",
		why:      map[string]string{"enforced.inject.apiaccess.io": "namespace " + injectorNamespace + " has kubernetes.io/metadata.name=" + injectorNamespace},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			r := one(t, must(command(t, tc.manifest, "-f", "-", "--expiry-warning", "1h")))
			if diff := cmp.Diff(tc.want, summarize(r)); diff != "" {
				t.Errorf("report (-want +got):\n%s", diff)
			}
			if !strings.HasPrefix(r.Decision.Reason, tc.reason) {
				t.Errorf("decision reason = %q, want it to start with %q", r.Decision.Reason, tc.reason)
			}
			for name, why := range tc.why {
				i := slices.IndexFunc(r.Webhooks, func(w explain.Webhook) bool { return w.Name == name })
				if i < 0 || !strings.HasPrefix(r.Webhooks[i].Why, why) {
					t.Errorf("entry %s: why = %+v, want it to start with %q", name, r.Webhooks, why)
				}
			}
			if r.DryRun == nil || !r.DryRun.Admitted {
				t.Fatalf("dry-run not admitted: %+v", r.DryRun)
			}
			sidecarAdded := slices.ContainsFunc(r.DryRun.Changes, func(c explain.Change) bool {
				return c.Op == "+" && c.Path == "spec.initContainers["+injector.SidecarName+"]" && c.Injector
			})
			if sidecarAdded != tc.want.DryRunInjects {
				t.Errorf("changes show the sidecar added: %v, want %v: %+v", sidecarAdded, tc.want.DryRunInjects, r.DryRun.Changes)
			}
		})
	}
}

func must[T any](v T, _ error) T { return v }

func TestExplainRunningInjectedPod(t *testing.T) {
	ns := newNamespace(t, "", map[string]string{injector.InjectionLabel: "enabled"})
	pod, err := clientset.CoreV1().Pods(ns).Create(t.Context(), appPod(ns, "app", nil), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Play the kubelet's part: the sidecar started and is ready.
	pod.Status.Phase = corev1.PodRunning
	pod.Status.InitContainerStatuses = []corev1.ContainerStatus{{
		Name: injector.SidecarName, Ready: true, Started: ptr.To(true), Image: "registry.example.com/api-proxy:explain",
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}},
	}}
	if _, err := clientset.CoreV1().Pods(ns).UpdateStatus(t.Context(), pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	r := one(t, must(command(t, "", "-n", ns, "pod/app", "--expiry-warning", "1h")))
	if r.Running == nil || !r.Running.Injected || r.Running.Status == nil || r.Running.Sidecar == nil {
		t.Fatalf("running = %+v, want an injected pod with a sidecar status", r.Running)
	}
	got := struct {
		Version, Phase string
		Ready, Started bool
		WouldInject    bool
		Problems       []string
	}{r.Running.Status.Version, r.Running.Phase, r.Running.Sidecar.Ready, r.Running.Sidecar.Started, r.WouldInject, r.Problems}
	want := got
	want.Version, want.Phase, want.Ready, want.Started, want.WouldInject, want.Problems = injectorVersion, "Running", true, true, true, nil
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("report (-want +got):\n%s", diff)
	}
	// A re-admission of an injected pod changes nothing the injector owns: injection is idempotent.
	for _, c := range r.DryRun.Changes {
		if c.Injector && c.Path != "metadata.annotations["+injector.StatusAnnotation+"]" {
			t.Errorf("dry-run of the injected pod changed %+v", c)
		}
	}
}

func TestExplainCABundleMismatch(t *testing.T) {
	ns := newNamespace(t, "", nil)
	hooks := clientset.AdmissionregistrationV1().MutatingWebhookConfigurations()
	cfg, err := hooks.Get(t.Context(), "api-access-injector", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	good := cfg.DeepCopy()
	t.Cleanup(func() {
		// Put the working caBundle back (the other tests of the package need it). The
		// test's context is done by now.
		ctx := context.WithoutCancel(t.Context())
		cur, err := hooks.Get(ctx, good.Name, metav1.GetOptions{})
		if err == nil {
			good.ResourceVersion = cur.ResourceVersion
			_, err = hooks.Update(ctx, good, metav1.UpdateOptions{})
		}
		if err != nil {
			t.Errorf("restoring the webhook configuration: %v", err)
		}
	})
	other := otherCA(t)
	for i := range cfg.Webhooks {
		cfg.Webhooks[i].ClientConfig.CABundle = other
	}
	if _, err := hooks.Update(t.Context(), cfg, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	pod := `{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "app", "annotations": {"apiaccess.io/inject": "true"}},
	 "spec": {"containers": [{"name": "app", "image": "registry.example.com/app:1"}]}}`
	reports, err := command(t, pod, "-f", "-", "-n", ns, "--expiry-warning", "1h")
	if !errors.Is(err, explain.ErrProblems) {
		t.Errorf("error = %v, want %v", err, explain.ErrProblems)
	}
	r := one(t, reports)
	if r.Health == nil || r.Health.Healthy || r.Health.CABundleVerifies {
		t.Fatalf("health = %+v, want a caBundle that does not verify the serving certificate", r.Health)
	}
	if r.Health.CABundle.Subject != "CN=some other CA" {
		t.Errorf("caBundle subject = %q, want the one installed", r.Health.CABundle.Subject)
	}
	if !slices.ContainsFunc(r.Problems, func(p string) bool {
		return strings.Contains(p, "the caBundle does not verify the serving certificate")
	}) {
		t.Errorf("problems do not name the caBundle: %q", r.Problems)
	}
	// The opt-in entry fails open: the API server admits the pod without the sidecar, and
	// explain says so rather than reporting what the injector alone would decide.
	if !r.Decision.Inject || r.WouldInject || r.DryRun == nil || !r.DryRun.Admitted || r.DryRun.Injected {
		t.Errorf("decision %+v, wouldInject %v, dry-run %+v: want the webhook's yes overruled by a failed call", r.Decision, r.WouldInject, r.DryRun)
	}
	if !strings.Contains(r.Verdict, "failurePolicy Ignore") {
		t.Errorf("verdict = %q, want it to name the failure policy", r.Verdict)
	}
}

// otherCA returns a PEM CA certificate that signed nothing the webhook serves.
func otherCA(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "some other CA"}, IsCA: true, BasicConstraintsValid: true,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(365 * 24 * time.Hour), KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// TestFileTargetsDecodeAsTheAPIServer: a file's objects are read as the API server reads them,
// field names matched case-sensitively, so that a misspelt "Annotations" opts nothing in here
// either; the correctly spelt one is the control.
func TestFileTargetsDecodeAsTheAPIServer(t *testing.T) {
	for _, tc := range []struct {
		key  string
		want map[string]string
	}{
		{"annotations", map[string]string{injector.InjectAnnotation: "true"}},
		{"Annotations", nil},
	} {
		doc := "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  " + tc.key + `: {apiaccess.io/inject: "true"}` +
			"\nspec:\n  containers: [{name: app, image: registry.example.com/app:1}]\n"
		targets, err := explain.FileTargets(strings.NewReader(doc), "pod.yaml", "team-a")
		if err != nil {
			t.Fatalf("%s: %v", tc.key, err)
		}
		if diff := cmp.Diff(tc.want, targets[0].Pod.Annotations); diff != "" {
			t.Errorf("metadata.%s: the pod's annotations (-want +got):\n%s", tc.key, diff)
		}
	}
}
