package injector

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestNamespaceDefaults: the read-only and isolate-token annotations of a Namespace apply to
// its pods that do not set their own; in an enforced namespace a pod may tighten them but
// not loosen them; elsewhere its own value wins, with a warning.
func TestNamespaceDefaults(t *testing.T) {
	type want struct{ readOnly, isolate bool }
	tests := []struct {
		name     string
		mode     NamespaceMode
		ns, pod  map[string]string
		want     want
		warning  string
		refusals []string
	}{
		{"no defaults", ModeEnabled, nil, nil, want{}, "", nil},
		{"read-only from the namespace", ModeEnabled, map[string]string{ReadOnlyAnnotation: "true"}, nil, want{true, true}, "", nil},
		{"isolate-token from the namespace", ModeOptIn, map[string]string{IsolateTokenAnnotation: "true"}, map[string]string{InjectAnnotation: "true"}, want{false, true}, "", nil},
		{"the pod tightens", ModeEnforced, map[string]string{ReadOnlyAnnotation: "false"}, map[string]string{ReadOnlyAnnotation: "true"}, want{true, true}, "", nil},
		{"the pod repeats", ModeEnforced, map[string]string{ReadOnlyAnnotation: "true"}, map[string]string{ReadOnlyAnnotation: "true"}, want{true, true}, "", nil},
		{"the pod loosens, enabled", ModeEnabled, map[string]string{IsolateTokenAnnotation: "true"}, map[string]string{IsolateTokenAnnotation: "false"}, want{},
			`annotation apiaccess.io/isolate-token: "false" overrides the default apiaccess.io/isolate-token: "true" of namespace team-a`, nil},
		{"the pod loosens, enforced", ModeEnforced, map[string]string{ReadOnlyAnnotation: "true", IsolateTokenAnnotation: "true"},
			map[string]string{ReadOnlyAnnotation: "false", IsolateTokenAnnotation: "false"}, want{}, "", []string{
				`annotation apiaccess.io/read-only: invalid value "false": namespace team-a sets apiaccess.io/read-only: "true" and is labelled apiaccess.io/injection=enforced, so its pods may tighten this setting but not loosen it; remove the annotation`,
				`annotation apiaccess.io/isolate-token: invalid value "false": namespace team-a sets apiaccess.io/isolate-token: "true" and is labelled apiaccess.io/injection=enforced, so its pods may tighten this setting but not loosen it; remove the annotation`,
			}},
		{"an invalid namespace default", ModeEnabled, map[string]string{ReadOnlyAnnotation: "yes"}, nil, want{}, "", []string{
			`namespace team-a: annotation apiaccess.io/read-only: invalid value "yes": must be "true" or "false"; the namespace's owners must correct it before its pods can be injected`,
		}},
		{"read-only from the namespace, isolate-token false on the pod", ModeEnabled, map[string]string{ReadOnlyAnnotation: "true"},
			map[string]string{IsolateTokenAnnotation: "false"}, want{}, "", []string{
				`annotation apiaccess.io/isolate-token: invalid value "false": ` + ReadOnlyIsolateTokenAdvice,
			}},
		{"other namespace annotations are not read", ModeEnabled, map[string]string{ProxyPortAnnotation: "9000", "apiaccess.io/whatever": "x"}, nil, want{}, "", nil},
	}
	inj := newInjector(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := simplePod(tt.pod)
			before := pod.DeepCopy()
			res, err := inj.Mutate(Namespace{Name: "team-a", Mode: tt.mode, Annotations: tt.ns}, pod)
			if tt.refusals != nil {
				var r *Refusal
				if !errors.As(err, &r) {
					t.Fatalf("Mutate error = %v, want a refusal", err)
				}
				if diff := cmp.Diff(tt.refusals, r.Reasons); diff != "" {
					t.Errorf("reasons (-want +got):\n%s", diff)
				}
				want := ReasonRefusedNamespaceDefault
				if tt.mode != ModeEnforced && tt.pod[IsolateTokenAnnotation] == "false" {
					want = ReasonRefusedAnnotation // the pod's own combination, read with the default
				}
				if r.Why() != want {
					t.Errorf("Why = %s, want %s", r.Why(), want)
				}
				return
			}
			if err != nil || !res.Inject {
				t.Fatalf("Mutate = %+v, %v", res, err)
			}
			status, _ := ParseStatus(pod.Annotations)
			if got := (want{status.ReadOnly, status.IsolateToken}); got != tt.want {
				t.Errorf("read-only, isolate-token = %+v, want %+v", got, tt.want)
			}
			var warning string
			for _, w := range res.Warnings {
				if w == tt.warning {
					warning = w
				}
			}
			if warning != tt.warning {
				t.Errorf("warnings %q, want one %q", res.Warnings, tt.warning)
			}
			// The defaults are not written into the pod's annotations.
			for _, key := range NamespaceDefaultAnnotations {
				if pod.Annotations[key] != before.Annotations[key] {
					t.Errorf("annotation %s = %q, was %q", key, pod.Annotations[key], before.Annotations[key])
				}
			}
		})
	}
}
