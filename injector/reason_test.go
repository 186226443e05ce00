package injector

import (
	"errors"
	"regexp"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
)

// TestReasonNames keeps the closed set well formed: every Reason has its own label value,
// in the lower-case, dash-separated shape of the others, and each is either injected,
// refused or neither.
func TestReasonNames(t *testing.T) {
	shape := regexp.MustCompile(`^[a-z]+(-[a-z]+)*$`)
	seen := map[string]Reason{}
	for r := range numReasons {
		name := r.String()
		if !shape.MatchString(name) {
			t.Errorf("Reason %d: label value %q is not lower-case words joined by dashes", r, name)
		}
		if o, dup := seen[name]; dup {
			t.Errorf("Reasons %d and %d share the label value %q", o, r, name)
		}
		seen[name] = r
		if r.Injects() && r.Refuses() {
			t.Errorf("Reason %s both injects and refuses", r)
		}
	}
	if got := numReasons.String(); got != "unknown" {
		t.Errorf("an out-of-range Reason is %q, want unknown", got)
	}
}

// TestRefusalCodes checks the class of each kind of refusal; the first problem found
// classifies a refusal with several.
func TestRefusalCodes(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*corev1.Pod)
		want   Reason
	}{
		{"invalid annotation", annotate(ProxyPortAnnotation, "80"), ReasonRefusedAnnotation},
		{"unknown key", annotate("apiaccess.io/readonly", "true"), ReasonRefusedAnnotation},
		{"inject not a bool", annotate(InjectAnnotation, "yes"), ReasonRefusedAnnotation},
		{"host network", func(p *corev1.Pod) { p.Spec.HostNetwork = true }, ReasonRefusedHostNetwork},
		{"windows", func(p *corev1.Pod) { p.Spec.OS = &corev1.PodOS{Name: corev1.Windows} }, ReasonRefusedWindows},
		{"reserved name", func(p *corev1.Pod) {
			p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: TokenVolumeName})
		}, ReasonRefusedName},
		{"port", func(p *corev1.Pod) {
			p.Spec.Containers[0].Ports = append(p.Spec.Containers[0].Ports, corev1.ContainerPort{ContainerPort: DefaultProxyPort})
		}, ReasonRefusedPort},
		{"mount", func(p *corev1.Pod) {
			p.Spec.Containers[0].VolumeMounts = append(p.Spec.Containers[0].VolumeMounts, corev1.VolumeMount{Name: "mine", MountPath: KubeconfigMountPath})
		}, ReasonRefusedMount},
		{"token", func(p *corev1.Pod) {
			annotate(IsolateTokenAnnotation, "true")(p)
			p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "own", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
				Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "t"}}},
			}}})
			p.Spec.Containers[0].VolumeMounts = append(p.Spec.Containers[0].VolumeMounts, corev1.VolumeMount{Name: "own", MountPath: "/own"})
		}, ReasonRefusedToken},
		{"conflict", func(p *corev1.Pod) {
			annotate(TransparentAnnotation, "true")(p)
			p.Spec.HostAliases = []corev1.HostAlias{{IP: "10.0.0.1", Hostnames: []string{"kubernetes.default.svc"}}}
		}, ReasonRefusedConflict},
		{"first problem classifies", func(p *corev1.Pod) {
			p.Spec.HostNetwork = true
			annotate(ReadOnlyAnnotation, "yes")(p)
		}, ReasonRefusedAnnotation},
	}
	inj := newInjector(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := simplePod(map[string]string{InjectAnnotation: "true"})
			tt.mutate(pod)
			_, err := inj.Mutate(Namespace{Name: "team-a"}, pod)
			var refusal *Refusal
			if !errors.As(err, &refusal) {
				t.Fatalf("Mutate error = %v, want a *Refusal", err)
			}
			if diff := cmp.Diff(tt.want.String(), refusal.Why().String()); diff != "" {
				t.Errorf("Why (-want +got):\n%s\nrefusal: %v", diff, refusal)
			}
		})
	}
}

// TestUpdatedIsReported tells a fresh injection from the update of an injected pod.
func TestUpdatedIsReported(t *testing.T) {
	inj := newInjector(t)
	pod := simplePod(map[string]string{InjectAnnotation: "true"})
	first, err := inj.Mutate(Namespace{Name: "team-a"}, pod)
	if err != nil {
		t.Fatal(err)
	}
	second, err := inj.Mutate(Namespace{Name: "team-a"}, pod)
	if err != nil {
		t.Fatal(err)
	}
	if first.Updated || !second.Updated {
		t.Errorf("Updated = %v then %v, want false then true", first.Updated, second.Updated)
	}
	if first.Code != ReasonOptedIn || second.Code != ReasonOptedIn {
		t.Errorf("Code = %v then %v, want %v both times", first.Code, second.Code, ReasonOptedIn)
	}
}
