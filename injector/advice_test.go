package injector

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// TestRefusalAdvice: the advice on how to do without the sidecar fits why the pod gets it.
func TestRefusalAdvice(t *testing.T) {
	const absent = "<absent>"
	tests := []struct {
		mode       NamespaceMode
		annotation string
		want       string
		notWant    []string
	}{
		{ModeOptIn, "true", "remove hostNetwork, or remove the apiaccess.io/inject annotation", nil},
		{ModeEnabled, absent, `remove hostNetwork, or opt the pod out with the annotation apiaccess.io/inject: "false" (this namespace is labelled apiaccess.io/injection=enabled)`,
			[]string{"remove the apiaccess.io/inject annotation"}},
		{ModeEnabled, "true", `opt the pod out with the annotation apiaccess.io/inject: "false"`, []string{"remove the apiaccess.io/inject annotation"}},
		{ModeEnforced, absent, "remove hostNetwork, or create the pod in a namespace that is not labelled apiaccess.io/injection=enforced " +
			"(in this one every pod gets the sidecar and none can opt out), or have the namespace relabelled",
			[]string{"remove the apiaccess.io/inject annotation", `"false"`}},
		{ModeEnforced, "false", "not labelled apiaccess.io/injection=enforced", []string{"remove the apiaccess.io/inject annotation"}},
	}
	inj := newInjector(t)
	for _, tt := range tests {
		t.Run(string(tt.mode)+"/"+tt.annotation, func(t *testing.T) {
			pod := simplePod(nil)
			if tt.annotation != absent {
				pod.Annotations = map[string]string{InjectAnnotation: tt.annotation}
			}
			pod.Spec.HostNetwork = true
			_, err := inj.Mutate(Namespace{Name: "team-a", Mode: tt.mode}, pod)
			assertRefusal(t, err, []string{"spec.hostNetwork: true", tt.want}, tt.notWant)
		})
	}

	// The health port is the injector's configuration: no annotation moves it, so none is
	// suggested for it.
	pod := simplePod(map[string]string{InjectAnnotation: "true"})
	pod.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: DefaultHealthPort}}
	_, err := inj.Mutate(Namespace{Name: "team-a"}, pod)
	assertRefusal(t, err, []string{`container "app": port 8002 is used by the api-proxy sidecar as its health port`, "sidecar.healthPort"},
		[]string{ProxyPortAnnotation})
}
