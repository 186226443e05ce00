package policy

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/api-access-injector/api-access-injector/injector"
	"github.com/api-access-injector/api-access-injector/internal/server"
	"github.com/api-access-injector/api-access-injector/test/framework/testenv"
)

// defaultsNamespace creates a namespace labelled mode (none for ModeOptIn) whose annotations
// set the pods' defaults, in one create: the webhook's informer either holds it as created
// or does not hold it yet (and reads it from the API server).
func defaultsNamespace(t *testing.T, mode injector.NamespaceMode, defaults map[string]string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "defaults-", Annotations: defaults}}
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

// staleNamespaces plays a namespace cache that has not seen any annotation yet.
type staleNamespaces struct{}

func (staleNamespaces) Annotations(context.Context, string) map[string]string { return nil }

// withStaleWebhook runs f while the webhook runs with a namespace cache that knows no
// namespace's defaults, and restarts the ordinary webhook afterwards.
func withStaleWebhook(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	withoutWebhook(t, func(t *testing.T) {
		stop, err := testenv.StartWebhookWith(env, restCfg, server.Options{Injector: inj, Namespaces: staleNamespaces{}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer stop()
		f(t)
	})
}

// TestNamespaceDefaults: the read-only and isolate-token annotations of a Namespace are the
// defaults of its pods, which in an enforced namespace may tighten them but not loosen them.
// The webhook applies them from its namespace cache; the API server's policies hold them
// when the webhook is down and when its cache is stale.
func TestNamespaceDefaults(t *testing.T) {
	readOnly := map[string]string{injector.ReadOnlyAnnotation: "true"}
	enabled := defaultsNamespace(t, injector.ModeEnabled, readOnly)
	enforced := defaultsNamespace(t, injector.ModeEnforced, map[string]string{injector.ReadOnlyAnnotation: "true", injector.IsolateTokenAnnotation: "true"})
	optIn := defaultsNamespace(t, injector.ModeOptIn, map[string]string{injector.IsolateTokenAnnotation: "true"})
	looseningRefusal := "api-access-injector: " + injector.LooseningMessage(enforced, injector.ReadOnlyAnnotation)
	create := func(t *testing.T, ns string, annotations map[string]string) (*corev1.Pod, []string, error) {
		t.Helper()
		cs, rec := recording(t)
		pod, err := cs.CoreV1().Pods(ns).Create(t.Context(), podFor("p", annotations), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return pod, rec.Take(), err
	}
	status := func(t *testing.T, pod *corev1.Pod) injector.Status {
		t.Helper()
		s, ok := injector.ParseStatus(pod.Annotations)
		if !ok {
			t.Fatalf("pod not injected: annotations %v", pod.Annotations)
		}
		return s
	}

	t.Run("the webhook applies them", func(t *testing.T) {
		for _, tt := range []struct {
			name              string
			ns                string
			annotations       map[string]string
			readOnly, isolate bool
			warning           string
		}{
			{"read-only from an enabled namespace", enabled, nil, true, true, ""},
			{"isolate-token from an opt-in namespace", optIn, map[string]string{injector.InjectAnnotation: "true"}, false, true, ""},
			{"both from an enforced namespace", enforced, nil, true, true, ""},
			{"a pod loosens where it may, with a warning", enabled, map[string]string{injector.ReadOnlyAnnotation: "false"}, false, false,
				`annotation apiaccess.io/read-only: "false" overrides the default apiaccess.io/read-only: "true" of namespace ` + enabled},
		} {
			t.Run(tt.name, func(t *testing.T) {
				pod, warnings, err := create(t, tt.ns, tt.annotations)
				if err != nil {
					t.Fatal(err)
				}
				s := status(t, pod)
				if s.ReadOnly != tt.readOnly || s.IsolateToken != tt.isolate {
					t.Errorf("status %+v: want readOnly %v, isolateToken %v", s, tt.readOnly, tt.isolate)
				}
				if got := slices.Contains(pod.Spec.InitContainers[0].Args, "--read-only"); got != tt.readOnly {
					t.Errorf("sidecar args %v: --read-only %v, want %v", pod.Spec.InitContainers[0].Args, got, tt.readOnly)
				}
				if tt.warning != "" && !slices.Contains(warnings, tt.warning) {
					t.Errorf("warnings %q, want %q", warnings, tt.warning)
				}
			})
		}
		_, _, err := create(t, enforced, map[string]string{injector.ReadOnlyAnnotation: "false"})
		if diff := cmp.Diff(looseningRefusal, denial(err)); diff != "" {
			t.Errorf("loosening in an enforced namespace (-want +got):\n%s", diff)
		}
	})

	t.Run("the policy holds them without the webhook", func(t *testing.T) {
		withoutWebhook(t, func(t *testing.T) {
			_, _, err := create(t, enabled, nil)
			want := `api-access-injector: the pod asked for injection (namespace ` + enabled + ` is labelled apiaccess.io/injection=enabled) with ` +
				`apiaccess.io/read-only: "true" (the default of namespace ` + enabled + `), but it was not injected`
			if got := denial(err); !strings.HasPrefix(got, want) {
				t.Errorf("uninjected pod in a read-only namespace: %q, want a refusal starting %q", got, want)
			}
		})
	})

	t.Run("the policy holds them when the webhook's cache is stale", func(t *testing.T) {
		withStaleWebhook(t, func(t *testing.T) {
			_, _, err := create(t, enabled, nil)
			want := `api-access-injector: the pod was injected without apiaccess.io/read-only: "true" (the default of namespace ` + enabled + `) ` +
				`(see its apiaccess.io/status): the webhook did not know the setting yet, as happens for a moment after a namespace's annotations change. ` +
				`It is a security setting, so the pod is refused rather than run without it; create it again`
			if diff := cmp.Diff(want, denial(err)); diff != "" {
				t.Errorf("pod injected without its namespace's default (-want +got):\n%s", diff)
			}
			// The webhook, not knowing the default, injects the loosening pod: the policy
			// refuses it with the webhook's own message.
			_, _, err = create(t, enforced, map[string]string{injector.ReadOnlyAnnotation: "false", injector.IsolateTokenAnnotation: "true"})
			if diff := cmp.Diff(looseningRefusal, denial(err)); diff != "" {
				t.Errorf("loosening in an enforced namespace, stale webhook (-want +got):\n%s", diff)
			}
			// A pod that sets the settings itself is injected with them, stale cache or not.
			if _, _, err := create(t, enabled, map[string]string{injector.ReadOnlyAnnotation: "true"}); err != nil {
				t.Errorf("a pod with its own read-only: %v", err)
			}
		})
	})

	t.Run("a namespace default must be true or false", func(t *testing.T) {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "defaults-", Annotations: map[string]string{injector.ReadOnlyAnnotation: "yes"}}}
		_, err := admin.CoreV1().Namespaces().Create(t.Context(), ns, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		want := `api-access-injector: namespace annotation apiaccess.io/read-only: invalid value "yes": must be "true" or "false" (the default of the namespace's pods)`
		if diff := cmp.Diff(want, denial(err)); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
}
