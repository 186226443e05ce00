package chart

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/api-access-injector/api-access-injector/injector"
	"github.com/api-access-injector/api-access-injector/internal/server"
	"github.com/api-access-injector/api-access-injector/test/framework/testenv"
)

// TestServerDryRun creates every object each mode renders on a real API server with
// server-side dry-run: schemas (the built-in kinds' and the CRDs'), validation and admission,
// including Pod Security "restricted", enforced and warned, on the release namespace.
func TestServerDryRun(t *testing.T) {
	cfg := apiServer(t)
	var warned testenv.Warnings
	cfg.WarningHandler = &warned
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: releaseNamespace, Labels: map[string]string{
		"pod-security.kubernetes.io/enforce": "restricted",
		"pod-security.kubernetes.io/warn":    "restricted",
	}}}
	if err := c.Create(t.Context(), ns); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		args []string
	}{
		{"default", nil},
		{"cert-manager", []string{"--set", "certificates.mode=cert-manager"}},
		{"cert-manager with issuerRef", []string{"--set", "certificates.mode=cert-manager,certificates.certManager.issuerRef.name=corp-ca,certificates.certManager.issuerRef.kind=ClusterIssuer"}},
		{"provided", []string{"--set", "certificates.mode=provided,certificates.provided.secretName=my-tls,certificates.provided.caBundle=" + testCABundle(t)}},
		{"kubectl, monitoring, network policy", []string{"--set", "sidecar.mode=kubectl,metrics.serviceMonitor.enabled=true,networkPolicy.enabled=true,priorityClassName=system-cluster-critical",
			"--set-json", `networkPolicy.metricsFrom=[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"monitoring"}}}]`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := render(t, tc.args...)
			for _, obj := range r.objects {
				if obj.GetAnnotations()["helm.sh/hook"] == "test" {
					continue // created by helm test, in order: TestHelmTestHooks
				}
				if err := c.Create(t.Context(), obj.DeepCopy(), client.DryRunAll); err != nil {
					t.Errorf("%s/%s: %v", obj.GetKind(), obj.GetName(), err)
				}
				for _, w := range warned.Take() {
					t.Errorf("%s/%s: API server warning: %s", obj.GetKind(), obj.GetName(), w)
				}
			}
		})
	}
}

// TestRBAC installs the default render's ServiceAccount, RBAC, Secret and webhook
// configuration, and checks as the webhook's ServiceAccount that it may read, watch and write
// its own Secret and webhook configuration, and nothing else. Lists and watches are allowed
// only when they select the object by metadata.name.
func TestRBAC(t *testing.T) {
	cfg := apiServer(t)
	admin, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	const ns = "api-access-rbac"
	if err := admin.Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	const name = "rbac-api-access-injector"
	out, stderr, err := runHelm(t, "template", "rbac", chartDir, "--namespace", ns)
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, stderr)
	}
	r, err := parse([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	for _, obj := range r.objects {
		switch obj.GetKind() {
		case "ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding", "Secret", "MutatingWebhookConfiguration":
			if err := admin.Create(t.Context(), obj.DeepCopy()); err != nil {
				t.Fatalf("%s/%s: %v", obj.GetKind(), obj.GetName(), err)
			}
		}
	}

	as := rest.CopyConfig(cfg)
	as.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + ns + ":" + name}
	sa, err := kubernetes.NewForConfig(as)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	byName := func(n string) metav1.ListOptions {
		return metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", n).String()}
	}
	secrets, hooks := sa.CoreV1().Secrets(ns), sa.AdmissionregistrationV1().MutatingWebhookConfigurations()

	allowed := map[string]func() error{
		"get its Secret":        func() error { _, err := secrets.Get(ctx, name+"-tls", metav1.GetOptions{}); return err },
		"list its Secret":       func() error { _, err := secrets.List(ctx, byName(name+"-tls")); return err },
		"watch its Secret":      func() error { w, err := secrets.Watch(ctx, byName(name+"-tls")); stopWatch(w); return err },
		"get its configuration": func() error { _, err := hooks.Get(ctx, name, metav1.GetOptions{}); return err },
		// The certificate rotator's caches watch whole kinds: its namespace's Secrets and
		// every webhook configuration.
		"list the namespace's Secrets": func() error { _, err := secrets.List(ctx, metav1.ListOptions{}); return err },
		// The namespace defaults: a metadata-only informer of the namespaces.
		"get a namespace": func() error { _, err := sa.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{}); return err },
		"list namespaces": func() error { _, err := sa.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); return err },
		"watch namespaces": func() error {
			w, err := sa.CoreV1().Namespaces().Watch(ctx, metav1.ListOptions{})
			stopWatch(w)
			return err
		},
		"list all configurations": func() error { _, err := hooks.List(ctx, metav1.ListOptions{}); return err },
		"list its configuration":  func() error { _, err := hooks.List(ctx, byName(name)); return err },
		"watch its configuration": func() error {
			w, err := hooks.Watch(ctx, byName(name))
			stopWatch(w)
			return err
		},
		"write its Secret": func() error {
			s, err := secrets.Get(ctx, name+"-tls", metav1.GetOptions{})
			if err != nil {
				return err
			}
			s.Data = map[string][]byte{"ca.crt": []byte("ca"), "tls.crt": []byte("crt")}
			_, err = secrets.Update(ctx, s, metav1.UpdateOptions{})
			return err
		},
		"write its caBundle": func() error {
			h, err := hooks.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			for i := range h.Webhooks {
				h.Webhooks[i].ClientConfig.CABundle, _ = base64.StdEncoding.DecodeString(testCABundle(t))
			}
			_, err = hooks.Update(ctx, h, metav1.UpdateOptions{})
			return err
		},
	}
	for what, do := range allowed {
		if err := do(); err != nil {
			t.Errorf("%s: %v; want it allowed", what, err)
		}
	}
	forbidden := map[string]func() error{
		"get another Secret": func() error { _, err := secrets.Get(ctx, "other", metav1.GetOptions{}); return err },
		"create a Secret": func() error {
			_, err := secrets.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "other"}}, metav1.CreateOptions{})
			return err
		},
		"delete its Secret": func() error { return secrets.Delete(ctx, name+"-tls", metav1.DeleteOptions{}) },
		"read Secrets elsewhere": func() error {
			_, err := sa.CoreV1().Secrets("default").Get(ctx, name+"-tls", metav1.GetOptions{})
			return err
		},
		"list Secrets elsewhere": func() error { _, err := sa.CoreV1().Secrets("default").List(ctx, metav1.ListOptions{}); return err },
		"update another configuration": func() error {
			h, err := hooks.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			h.Name = "other"
			_, err = hooks.Update(ctx, h, metav1.UpdateOptions{})
			return err
		},
		"get another configuration": func() error {
			_, err := hooks.Get(ctx, "other", metav1.GetOptions{})
			return err
		},
		"create a configuration": func() error {
			_, err := hooks.Create(ctx, &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "other"}}, metav1.CreateOptions{})
			return err
		},
		"list pods": func() error { _, err := sa.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{}); return err },
		"update a namespace": func() error {
			var n corev1.Namespace
			if err := admin.Get(ctx, client.ObjectKey{Name: ns}, &n); err != nil {
				return err
			}
			_, err := sa.CoreV1().Namespaces().Update(ctx, &n, metav1.UpdateOptions{})
			return err
		},
	}
	for what, do := range forbidden {
		if err := do(); !apierrors.IsForbidden(err) {
			t.Errorf("%s: %v; want Forbidden", what, err)
		}
	}

	// The proof: the webhook process with self-managed certificates, run as that
	// ServiceAccount, fills its Secret and patches the caBundle of every entry.
	rotatorRunsAs(t, as, ns, name)
}

// TestUpgradeKeepsCertificates installs the chart for real (self-managed mode), writes a
// certificate and caBundle as the webhook does, then upgrades with a changed value (by
// server-side apply, by three-way merge and by replacement) and uninstalls: every upgrade
// must keep the caBundle, all but replacement the Secret's data, and the uninstall the Secret.
func TestUpgradeKeepsCertificates(t *testing.T) {
	cfg := apiServer(t)
	kubeconfig := writeKubeconfig(t)
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	const release, ns = "upgrade", "api-access-upgrade"
	const name = release + "-api-access-injector"
	helmArgs := func(args ...string) []string { return append(args, "--kubeconfig", kubeconfig, "--namespace", ns) }
	if out, stderr, err := runHelm(t, helmArgs("install", release, chartDir, "--create-namespace")...); err != nil {
		t.Fatalf("helm install: %v\n%s%s", err, out, stderr)
	}

	ctx := t.Context()
	secret, err := cs.CoreV1().Secrets(ns).Get(ctx, name+"-tls", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	secret.Data = map[string][]byte{"ca.crt": []byte("ca"), "ca.key": []byte("key"), "tls.crt": []byte("crt"), "tls.key": []byte("key")}
	if _, err := cs.CoreV1().Secrets(ns).Update(ctx, secret, metav1.UpdateOptions{FieldManager: "api-access-injector"}); err != nil {
		t.Fatal(err)
	}
	hooks := cs.AdmissionregistrationV1().MutatingWebhookConfigurations()
	mwc, err := hooks.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bundle, _ := base64.StdEncoding.DecodeString(testCABundle(t))
	for i := range mwc.Webhooks {
		mwc.Webhooks[i].ClientConfig.CABundle = bundle
	}
	if _, err := hooks.Update(ctx, mwc, metav1.UpdateOptions{FieldManager: "api-access-injector"}); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		args []string
		// keepsSecret: replacement writes the Secret as rendered, empty, and the webhook
		// then makes new certificates, as on first start; the rendered caBundle (lookup)
		// keeps the API server trusting the old ones until it has.
		keepsSecret bool
	}{
		{[]string{"upgrade", release, chartDir, "--set", "logLevel=debug"}, true},
		{[]string{"upgrade", release, chartDir, "--set", "logLevel=info", "--server-side=false"}, true},
		{[]string{"upgrade", release, chartDir, "--set", "logLevel=debug", "--force-replace"}, false},
	} {
		how := strings.Join(tc.args, " ")
		if out, stderr, err := runHelm(t, helmArgs(tc.args...)...); err != nil {
			t.Fatalf("helm %s: %v\n%s%s", how, err, out, stderr)
		}
		mwc, err := hooks.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range mwc.Webhooks {
			if string(w.ClientConfig.CABundle) != string(bundle) {
				t.Errorf("after helm %s: %s caBundle = %q, want the one the webhook wrote", how, w.Name, w.ClientConfig.CABundle)
			}
		}
		s, err := cs.CoreV1().Secrets(ns).Get(ctx, name+"-tls", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if tc.keepsSecret && len(s.Data) != 4 {
			t.Errorf("after helm %s: Secret keys = %d, want the 4 the webhook wrote", how, len(s.Data))
		}
	}

	if out, stderr, err := runHelm(t, helmArgs("uninstall", release)...); err != nil {
		t.Fatalf("helm uninstall: %v\n%s%s", err, out, stderr)
	}
	if _, err := cs.CoreV1().Secrets(ns).Get(ctx, name+"-tls", metav1.GetOptions{}); err != nil {
		t.Errorf("Secret after uninstall: %v; want it kept", err)
	}
	if _, err := hooks.Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("webhook configuration after uninstall: %v; want it deleted", err)
	}
}

// writeKubeconfig writes a kubeconfig for envtest's API server, as a cluster admin, for the
// Helm CLI.
func writeKubeconfig(t *testing.T) string {
	t.Helper()
	user, err := sharedEnv.Env(t).ControlPlane.AddUser(envtest.User{Name: "helm", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	data, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// stopWatch stops a watch that may be nil.
func stopWatch(w interface{ Stop() }) {
	if w != nil {
		w.Stop()
	}
}

// rotatorRunsAs runs the webhook process with self-managed certificates under the identity of
// cfg and waits until it has written its Secret and the caBundles.
func rotatorRunsAs(t *testing.T, cfg *rest.Config, ns, name string) {
	t.Helper()
	inj, err := injector.New(injector.Config{Sidecar: injector.SidecarConfig{Image: "registry.example.com/api-proxy:test"}})
	if err != nil {
		t.Fatal(err)
	}
	addr, err := testenv.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	mgr, err := server.New(cfg, server.Options{
		Injector: inj, CertDir: t.TempDir(), Host: "127.0.0.1", Port: p, HealthProbeBindAddress: "0", MetricsBindAddress: "0",
		SelfManagedCerts: &server.SelfManagedCerts{Namespace: ns, SecretName: name + "-tls", WebhookConfigName: name, ServiceName: name + "-webhook"},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Logf("stopping the manager: %v", err)
		}
	}()

	cs := kubernetes.NewForConfigOrDie(cfg)
	var last string
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		select {
		case err := <-done:
			t.Fatalf("the webhook process stopped: %v", err)
		default:
		}
		secret, err := cs.CoreV1().Secrets(ns).Get(t.Context(), name+"-tls", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tls.X509KeyPair(secret.Data["tls.crt"], secret.Data["tls.key"]); err != nil {
			last = "no serving certificate in the Secret yet: " + err.Error()
			continue
		}
		hooks, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		patched := len(hooks.Webhooks) == 3
		for _, w := range hooks.Webhooks {
			patched = patched && bytes.Equal(w.ClientConfig.CABundle, secret.Data["ca.crt"])
		}
		if patched {
			return
		}
		last = "the caBundles are not the Secret's CA yet"
	}
	t.Fatalf("running as the chart's ServiceAccount, the webhook did not set up its certificates in 60s: %s", last)
}
