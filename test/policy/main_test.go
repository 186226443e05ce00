// Package policy tests the ValidatingAdmissionPolicies that the chart installs (as
// config/policy holds them; test/chart keeps the two identical) through envtest's real
// kube-apiserver, with the injection webhook running in-process behind the chart's webhook
// configuration (config/webhook), and with it stopped: the policies must hold either way.
package policy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/api-access-injector/api-access-injector/injector"
	"github.com/api-access-injector/api-access-injector/test/framework/testenv"
)

const (
	webhookManifest = "../../config/webhook/manifests.yaml"
	policyManifest  = "../../config/policy/policies.yaml"
	sidecarImage    = "registry.example.com/api-proxy:policy"
	// injectorNamespace is the release namespace of config/ and the documented install.
	injectorNamespace = "api-access-system"
)

var (
	env     *envtest.Environment
	restCfg *rest.Config
	admin   *kubernetes.Clientset
	inj     *injector.Injector

	// hookMu guards stopHook, the running webhook's stop function (nil while it is stopped).
	hookMu   sync.Mutex
	stopHook func()
)

func TestMain(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "policy:", err)
		code = 1
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	ctrl.SetLogger(logr.Discard())
	var err error
	if inj, err = injector.New(injector.Config{Version: "policy", Sidecar: injector.SidecarConfig{Image: sidecarImage},
		ExcludedNamespaces: []string{injectorNamespace}}); err != nil {
		return 0, err
	}
	if env, restCfg, err = testenv.Start(webhookManifest); err != nil {
		return 0, err
	}
	defer func() { _ = env.Stop() }()
	quiet := rest.CopyConfig(restCfg)
	quiet.WarningHandler = rest.NoWarnings{} // tests that look at warnings use recording
	if admin, err = kubernetes.NewForConfig(quiet); err != nil {
		return 0, err
	}
	if err := installPolicies(); err != nil {
		return 0, err
	}
	// The webhook is not started yet: the probes see the policies alone.
	if err := waitEnforced(); err != nil {
		return 0, err
	}
	if err := startWebhook(); err != nil {
		return 0, err
	}
	defer func() {
		if err := stopWebhook(); err != nil {
			log.Printf("stopping the webhook: %v", err)
		}
	}()
	return m.Run(), nil
}

// installPolicies creates the policies and bindings of config/policy.
func installPolicies() error {
	data, err := os.ReadFile(policyManifest)
	if err != nil {
		return err
	}
	ctx := context.Background() //nolint:forbidigo // run from TestMain, which has no t.Context()
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		var meta metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			return err
		}
		switch meta.Kind {
		case "ValidatingAdmissionPolicy":
			var p admissionregistrationv1.ValidatingAdmissionPolicy
			if err := yaml.UnmarshalStrict(doc, &p); err != nil {
				return fmt.Errorf("%s: %w", policyManifest, err)
			}
			if _, err := admin.AdmissionregistrationV1().ValidatingAdmissionPolicies().Create(ctx, &p, metav1.CreateOptions{}); err != nil {
				return err
			}
		case "ValidatingAdmissionPolicyBinding":
			var b admissionregistrationv1.ValidatingAdmissionPolicyBinding
			if err := yaml.UnmarshalStrict(doc, &b); err != nil {
				return fmt.Errorf("%s: %w", policyManifest, err)
			}
			if _, err := admin.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Create(ctx, &b, metav1.CreateOptions{}); err != nil {
				return err
			}
		case "":
		default:
			return fmt.Errorf("%s: unexpected kind %s", policyManifest, meta.Kind)
		}
	}
}

// startWebhook starts the webhook on the address the installed configuration calls.
func startWebhook() error {
	hookMu.Lock()
	defer hookMu.Unlock()
	stop, err := testenv.StartWebhook(env, restCfg, inj, nil)
	if err != nil {
		return err
	}
	stopHook = stop
	return nil
}

// stopWebhook stops the webhook, if it runs, and waits until its port refuses connections.
func stopWebhook() error {
	hookMu.Lock()
	defer hookMu.Unlock()
	if stopHook == nil {
		return nil
	}
	stopHook()
	stopHook = nil
	o := env.WebhookInstallOptions
	addr := net.JoinHostPort(o.LocalServingHost, strconv.Itoa(o.LocalServingPort))
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // a liveness check only
		if err != nil {
			return nil
		}
		conn.Close()
	}
	return fmt.Errorf("webhook still serving on %s", addr)
}

// withoutWebhook runs f while the webhook is stopped, and starts it again afterwards.
func withoutWebhook(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	if err := stopWebhook(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := startWebhook(); err != nil {
			t.Fatal(err)
		}
	}()
	f(t)
}

// recording returns a client whose warnings go to the returned recorder.
func recording(t *testing.T) (*kubernetes.Clientset, *testenv.Warnings) {
	t.Helper()
	cs, rec, err := testenv.ClientWithWarnings(restCfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs, rec
}

// newNamespace creates a namespace with an injection label (none when mode is ModeOptIn)
// and its default ServiceAccount (envtest runs no controller-manager to create it).
func newNamespace(t *testing.T, mode injector.NamespaceMode) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "policy-"}}
	if mode != injector.ModeOptIn {
		ns.Labels = map[string]string{injector.InjectionLabel: string(mode)}
	}
	created, err := admin.CoreV1().Namespaces().Create(t.Context(), ns, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ensureNamespace(t, created.Name)
	return created.Name
}

// ensureNamespace creates a namespace by name if it does not exist, and its default
// ServiceAccount.
func ensureNamespace(t *testing.T, name string) {
	t.Helper()
	if _, err := admin.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}},
		metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	if _, err := admin.CoreV1().ServiceAccounts(name).Create(t.Context(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}},
		metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}
