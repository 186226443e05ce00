package policy

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/api-access-injector/api-access-injector/injector"
)

// badAnnotations are annotation sets the webhook refuses, each with what it shows.
var badAnnotations = []struct {
	name        string
	annotations map[string]string
}{
	{"inject not a boolean", map[string]string{injector.InjectAnnotation: "yes"}},
	{"inject refused alone", map[string]string{injector.InjectAnnotation: "True", injector.ProxyPortAnnotation: "80"}},
	{"read-only not a boolean", map[string]string{injector.InjectAnnotation: "true", injector.ReadOnlyAnnotation: "yes"}},
	{"isolate-token not a boolean", map[string]string{injector.IsolateTokenAnnotation: "1"}},
	{"port below range", map[string]string{injector.InjectAnnotation: "true", injector.ProxyPortAnnotation: "80"}},
	{"port above range", map[string]string{injector.ProxyPortAnnotation: "65536"}},
	{"port not a number", map[string]string{injector.ProxyPortAnnotation: "http"}},
	{"port that overflows", map[string]string{injector.ProxyPortAnnotation: "99999999999999999999"}},
	{"port with a sign", map[string]string{injector.ProxyPortAnnotation: "+8001"}},
	{"port with a leading zero", map[string]string{injector.ProxyPortAnnotation: "08001"}},
	{"port with a space", map[string]string{injector.ProxyPortAnnotation: " 8001"}},
	{"port is the health port", map[string]string{injector.ProxyPortAnnotation: "8002"}},
	{"expiration below range", map[string]string{injector.TokenExpirationSecondsAnnotation: "60"}},
	{"expiration above range", map[string]string{injector.TokenExpirationSecondsAnnotation: "86401"}},
	{"expiration negative", map[string]string{injector.TokenExpirationSecondsAnnotation: "-3600"}},
	{"audience empty", map[string]string{injector.TokenAudienceAnnotation: ""}},
	{"audience with spaces", map[string]string{injector.TokenAudienceAnnotation: " vault "}},
	{"containers with an empty entry", map[string]string{injector.ContainersAnnotation: "app,,sidecar"}},
	{"containers empty", map[string]string{injector.ContainersAnnotation: ""}},
	{"value quoted", map[string]string{injector.ReadOnlyAnnotation: `say "yes" \ now` + "\n\t"}},
	{"value not ASCII", map[string]string{injector.ReadOnlyAnnotation: "ja, natürlich ✓"}},
	{"every value wrong", map[string]string{
		injector.InjectAnnotation: "true", injector.ProxyPortAnnotation: "1", injector.TokenExpirationSecondsAnnotation: "1",
		injector.TokenAudienceAnnotation: "", injector.ReadOnlyAnnotation: "y", injector.IsolateTokenAnnotation: "n",
		injector.ContainersAnnotation: ",", injector.AllowExecAnnotation: "t", injector.AccessLogAnnotation: "on"}},
	{"unknown key", map[string]string{injector.InjectAnnotation: "true", "apiaccess.io/readonly": "true"}},
	{"unknown keys, sorted", map[string]string{"apiaccess.io/zz": "1", "apiaccess.io/Port": "1", "apiaccess.io/a": "1", "apiaccess.io/readonly": "true"}},
	{"read-only with isolate-token false", map[string]string{injector.ReadOnlyAnnotation: "true", injector.IsolateTokenAnnotation: "false"}},
	{"read-only with isolate-token false and a bad port", map[string]string{injector.ProxyPortAnnotation: "1",
		injector.ReadOnlyAnnotation: "true", injector.IsolateTokenAnnotation: "false", injector.ContainersAnnotation: ""}},
	{"transparent not a boolean", map[string]string{injector.TransparentAnnotation: "yes"}},
	{"transparent not a boolean, read-only with isolate-token false", map[string]string{injector.TransparentAnnotation: "yes",
		injector.ReadOnlyAnnotation: "true", injector.IsolateTokenAnnotation: "false"}},
	{"transparent with isolate-token false", map[string]string{injector.TransparentAnnotation: "true", injector.IsolateTokenAnnotation: "false"}},
	{"transparent and read-only with isolate-token false", map[string]string{injector.TransparentAnnotation: "true",
		injector.ReadOnlyAnnotation: "true", injector.IsolateTokenAnnotation: "false"}},
	{"allow-exec not a boolean", map[string]string{injector.InjectAnnotation: "true", injector.AllowExecAnnotation: "yes"}},
	{"allow-exec empty", map[string]string{injector.AllowExecAnnotation: ""}},
	{"allow-exec after containers and the port", map[string]string{injector.AllowExecAnnotation: "True",
		injector.ContainersAnnotation: "", injector.ProxyPortAnnotation: "1", injector.ReadOnlyAnnotation: "true"}},
	{"allow-exec misspelt", map[string]string{injector.InjectAnnotation: "true", "apiaccess.io/allowexec": "true"}},
	{"access-log not a boolean", map[string]string{injector.InjectAnnotation: "true", injector.AccessLogAnnotation: "yes"}},
	{"access-log after allow-exec", map[string]string{injector.AccessLogAnnotation: "TRUE", injector.AllowExecAnnotation: "1"}},
	{"access-log misspelt", map[string]string{injector.InjectAnnotation: "true", "apiaccess.io/accesslog": "true"}},
	{"unknown key and a bad value", map[string]string{"apiaccess.io/proxyport": "9000", injector.ProxyPortAnnotation: "0"}},
	{"cpu request not a quantity", map[string]string{injector.ProxyCPURequestAnnotation: "lots"}},
	{"memory limit zero", map[string]string{injector.ProxyMemoryLimitAnnotation: "0"}},
	{"cpu limit negative, memory request with a space", map[string]string{injector.ProxyCPULimitAnnotation: "-1", injector.ProxyMemoryRequestAnnotation: "64 Mi"}},
	{"memory request above the configured limit", map[string]string{injector.ProxyMemoryRequestAnnotation: "128Mi"}},
	{"memory request above the configured limit, spelt otherwise", map[string]string{injector.ProxyMemoryRequestAnnotation: "0.1Gi"}},
	{"cpu request above the pod's limit", map[string]string{injector.ProxyCPURequestAnnotation: "2", injector.ProxyCPULimitAnnotation: "500m"}},
	{"memory limit below the configured request", map[string]string{injector.ProxyMemoryLimitAnnotation: "16Mi"}},
	{"resources after the other values", map[string]string{injector.AllowExecAnnotation: "yes", injector.ProxyMemoryLimitAnnotation: "x",
		injector.ProxyCPURequestAnnotation: "1e3", injector.ProxyCPULimitAnnotation: "1", "apiaccess.io/proxy-cpu": "1"}},
}

// TestWorkloadRefusalsMatchTheWebhook: for each bad annotation set, the workload policy
// refuses a Deployment whose template carries it with exactly the message that the injector
// package returns for the pod (injector.Mutate: Decide, then ParseOptions and the rest), and
// that the running webhook gives when the pod itself is created. A valid set is admitted by
// all three. Any drift between the policy and the injector fails here.
func TestWorkloadRefusalsMatchTheWebhook(t *testing.T) {
	// Enforced: the webhook handles every pod, even one annotated inject "false".
	ns := newNamespace(t, injector.ModeEnforced)
	rows := append(slices.Clip(badAnnotations), struct {
		name        string
		annotations map[string]string
	}{"valid", map[string]string{
		injector.InjectAnnotation: "false", injector.ProxyPortAnnotation: "9000", injector.TokenExpirationSecondsAnnotation: "600",
		injector.TokenAudienceAnnotation: "vault", injector.ReadOnlyAnnotation: "true", injector.IsolateTokenAnnotation: "true",
		injector.ContainersAnnotation: "app", injector.TransparentAnnotation: "true", injector.AllowExecAnnotation: "true", injector.AccessLogAnnotation: "true", injector.StatusAnnotation: "{}", injector.KubeconfigAnnotation: "x",
		injector.ProxyCPURequestAnnotation: "250m", injector.ProxyCPULimitAnnotation: "1", injector.ProxyMemoryRequestAnnotation: "64Mi",
		injector.ProxyMemoryLimitAnnotation: "0.5Gi"}})
	for _, tt := range rows {
		t.Run(tt.name, func(t *testing.T) {
			pod := podFor("p", tt.annotations)
			pod.Namespace = ns
			var want string
			_, err := inj.Mutate(injector.Namespace{Name: ns, Mode: injector.ModeEnforced}, pod.DeepCopy())
			var refusal *injector.Refusal
			switch {
			case errors.As(err, &refusal):
				want = refusal.Error()
			case err != nil:
				t.Fatalf("injector: %v", err)
			}
			if tt.name != "valid" && want == "" {
				t.Errorf("the injector accepts %v; the policy refuses it (see the row's name)", tt.annotations)
			}

			_, err = admin.CoreV1().Pods(ns).Create(t.Context(), pod, dryRun)
			if diff := cmp.Diff(want, denial(err)); diff != "" {
				t.Errorf("webhook's refusal of the pod (-injector +webhook):\n%s", diff)
			}
			_, err = admin.AppsV1().Deployments(ns).Create(t.Context(), deployment("w", tt.annotations), dryRun)
			if diff := cmp.Diff(want, denial(err)); diff != "" {
				t.Errorf("policy's refusal of the Deployment (-injector +policy):\n%s", diff)
			}
		})
	}
}

// TestWorkloadRefusalsWithoutWebhook: with the webhook stopped, every workload kind whose
// template carries a bad annotation is refused at apply, a valid one is admitted, and an
// apiaccess.io annotation on the workload's own metadata gets a warning. Namespaces the
// injector never serves are left alone.
func TestWorkloadRefusalsWithoutWebhook(t *testing.T) {
	ns := newNamespace(t, injector.ModeOptIn)
	ensureNamespace(t, injectorNamespace)
	bad := map[string]string{injector.InjectAnnotation: "true", injector.ReadOnlyAnnotation: "yes"}
	const want = `api-access-injector: annotation apiaccess.io/read-only: invalid value "yes": must be "true" or "false"`
	withoutWebhook(t, func(t *testing.T) {
		for _, w := range workloads {
			t.Run(w.kind, func(t *testing.T) {
				err := w.create(t.Context(), admin, ns, w.object(bad), dryRun)
				if diff := cmp.Diff(want, denial(err)); diff != "" {
					t.Errorf("refusal (-want +got):\n%s", diff)
				}
				if err == nil || !strings.Contains(err.Error(), "ValidatingAdmissionPolicy 'api-access-injector-workload-annotations'") {
					t.Errorf("error = %v, want the workload policy's", err)
				}
				if err := w.create(t.Context(), admin, injectorNamespace, w.object(bad), dryRun); err != nil {
					t.Errorf("in the injector's own namespace: %v; want it left alone", err)
				}
				cs, rec := recording(t)
				if err := w.create(t.Context(), cs, ns, w.object(map[string]string{injector.InjectAnnotation: "true"}), dryRun); err != nil {
					t.Errorf("a valid %s: %v", w.kind, err)
				}
				if got := rec.Take(); len(got) != 0 {
					t.Errorf("warnings for a valid %s: %q", w.kind, got)
				}

				obj := w.object(nil)
				obj.(metav1.Object).SetAnnotations(map[string]string{injector.InjectAnnotation: "true", injector.ReadOnlyAnnotation: "true"})
				if err := w.create(t.Context(), cs, ns, obj, dryRun); err != nil {
					t.Fatal(err)
				}
				path := "spec.template"
				if w.kind == "CronJob" {
					path = "spec.jobTemplate.spec.template"
				}
				wantWarnings := []string{policyWarning("api-access-injector-workload-annotation-placement",
					"api-access-injector: annotations apiaccess.io/inject, apiaccess.io/read-only are on the "+w.kind+
						" itself, where they have no effect; put them in "+path+".metadata.annotations")}
				if diff := cmp.Diff(wantWarnings, rec.Take()); diff != "" {
					t.Errorf("warnings (-want +got):\n%s", diff)
				}
			})
		}
	})
}
