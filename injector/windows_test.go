package injector

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
)

func TestWindowsPods(t *testing.T) {
	const absent = "<absent>"
	tests := []struct {
		mode       NamespaceMode
		annotation string
		warning    string   // substring of the only warning, if any
		refusal    []string // substrings of the refusal, if refused
	}{
		{ModeEnabled, absent, "spec.os.name: windows: the api-proxy sidecar runs on Linux only, so a Windows pod cannot get it; " +
			"the pod was admitted without it (namespace team-a is labelled apiaccess.io/injection=enabled)", nil},
		{ModeEnabled, "false", "", nil},
		{ModeEnabled, "true", "", []string{"spec.os.name: windows: the api-proxy sidecar runs on Linux only",
			"remove the apiaccess.io/inject annotation, and the pod is admitted without the sidecar"}},
		{ModeOptIn, "true", "", []string{"spec.os.name: windows", "; remove the apiaccess.io/inject annotation"}},
		{ModeOptIn, absent, "", nil},
		{ModeEnforced, absent, "", []string{"spec.os.name: windows", "create the pod in a namespace that is not labelled apiaccess.io/injection=enforced"}},
		{ModeEnforced, "false", "", []string{"spec.os.name: windows", "not labelled apiaccess.io/injection=enforced"}},
		{ModeDisabled, "true", "", nil},
	}
	inj := newInjector(t)
	for _, tt := range tests {
		t.Run(string(tt.mode)+"/"+tt.annotation, func(t *testing.T) {
			pod := simplePod(nil)
			if tt.annotation != absent {
				pod.Annotations = map[string]string{InjectAnnotation: tt.annotation}
			}
			pod.Spec.OS = &corev1.PodOS{Name: corev1.Windows}
			before := pod.DeepCopy()
			res, err := inj.Mutate(Namespace{Name: "team-a", Mode: tt.mode}, pod)
			if diff := cmp.Diff(before, pod); diff != "" {
				t.Errorf("a Windows pod was changed (-before +after):\n%s", diff)
			}
			if tt.refusal != nil {
				assertRefusal(t, err, tt.refusal, nil)
				return
			}
			if err != nil {
				t.Fatalf("Mutate: %v", err)
			}
			if res.Inject {
				t.Error("a Windows pod was injected")
			}
			got := strings.Join(res.Warnings, "\n")
			if (tt.warning == "") != (got == "") || !strings.Contains(got, tt.warning) {
				t.Errorf("warnings = %q, want one containing %q", got, tt.warning)
			}
		})
	}
	// A pod that says it is a Linux pod is injected as before.
	pod := simplePod(nil)
	pod.Spec.OS = &corev1.PodOS{Name: corev1.Linux}
	if res, err := inj.Mutate(Namespace{Name: "team-a", Mode: ModeEnabled}, pod); err != nil || !res.Inject {
		t.Errorf("Linux pod: inject %v, error %v; want injected", res.Inject, err)
	}
}
