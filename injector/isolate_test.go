package injector

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// userTokenVolume is a user's own projected volume with a service-account token.
func userTokenVolume(name, audience string) corev1.Volume {
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		Sources: []corev1.VolumeProjection{
			{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "settings"}}},
			{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", Audience: audience}},
		},
	}}}
}

func mountVolume(c *corev1.Container, volume string) {
	c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: volume, MountPath: "/var/run/" + volume})
}

func TestIsolateTokenRefusesAPIServerTokens(t *testing.T) {
	tests := []struct {
		name       string
		configured string // Config.TokenAudience
		mutate     func(*corev1.Pod)
		refusal    []string // nil: admitted, the user's volume and mount kept
	}{
		{"no audience, app container", "", func(p *corev1.Pod) {
			p.Spec.Volumes = append(p.Spec.Volumes, userTokenVolume("my-token", ""))
			mountVolume(&p.Spec.Containers[0], "my-token")
		}, []string{`volume "my-token": a service-account token for the API server (no audience, so the API server's own) is mounted in container "app", ` +
			`but annotation apiaccess.io/isolate-token: "true" means that no container but the api-proxy sidecar holds a credential for the API server; ` +
			`remove the mount, give the token another audience, or remove the apiaccess.io/isolate-token annotation`}},
		{"no audience, init container", "", func(p *corev1.Pod) {
			p.Spec.Volumes = append(p.Spec.Volumes, userTokenVolume("my-token", ""))
			p.Spec.InitContainers = []corev1.Container{{Name: "setup", Image: "setup:1"}}
			mountVolume(&p.Spec.InitContainers[0], "my-token")
		}, []string{`volume "my-token"`, `mounted in container "setup"`}},
		{"the sidecar's audience from the annotation", "", func(p *corev1.Pod) {
			p.Annotations[TokenAudienceAnnotation] = "https://api.example.com"
			p.Spec.Volumes = append(p.Spec.Volumes, userTokenVolume("my-token", "https://api.example.com"))
			mountVolume(&p.Spec.Containers[0], "my-token")
		}, []string{`volume "my-token": a service-account token for the API server (audience "https://api.example.com", the one the api-proxy sidecar authenticates to the API server with)`}},
		{"the configured audience", "https://api.example.com", func(p *corev1.Pod) {
			p.Spec.Volumes = append(p.Spec.Volumes, userTokenVolume("my-token", "https://api.example.com"))
			mountVolume(&p.Spec.Containers[0], "my-token")
		}, []string{`volume "my-token"`, `audience "https://api.example.com"`}},
		{"another audience stays", "", func(p *corev1.Pod) {
			p.Spec.Volumes = append(p.Spec.Volumes, userTokenVolume("vault-token", "vault"))
			mountVolume(&p.Spec.Containers[0], "vault-token")
		}, nil},
		{"an API server token nobody mounts stays", "", func(p *corev1.Pod) {
			p.Spec.Volumes = append(p.Spec.Volumes, userTokenVolume("spare", ""))
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.TokenAudience = tt.configured
			inj, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			pod := simplePod(map[string]string{InjectAnnotation: "true", IsolateTokenAnnotation: "true"})
			tt.mutate(pod)
			user := pod.Spec.Volumes[len(pod.Spec.Volumes)-1]
			_, err = inj.Mutate(Namespace{Name: "team-a"}, pod)
			if tt.refusal != nil {
				assertRefusal(t, err, tt.refusal, nil)
				return
			}
			if err != nil {
				t.Fatalf("Mutate: %v", err)
			}
			if len(pod.Spec.Volumes) != 3 || pod.Spec.Volumes[0].Name != user.Name {
				t.Errorf("volumes = %v, want the user's %s, then the two injected ones", pod.Spec.Volumes, user.Name)
			}
		})
	}

	// A re-applied injected pod whose app container was given the sidecar's own token.
	inj := newInjector(t)
	pod := simplePod(map[string]string{InjectAnnotation: "true"})
	if _, err := inj.Inject("team-a", pod); err != nil {
		t.Fatal(err)
	}
	pod.Annotations[IsolateTokenAnnotation] = "true"
	pod.Spec.Containers[0].VolumeMounts = append(pod.Spec.Containers[0].VolumeMounts, corev1.VolumeMount{Name: TokenVolumeName, MountPath: "/steal"})
	_, err := inj.Mutate(Namespace{Name: "team-a"}, pod)
	assertRefusal(t, err, []string{`volume "apiaccess-token"`, `mounted in container "app"`}, nil)

	// Without isolate-token, a pod keeps the tokens it asks for.
	pod = simplePod(map[string]string{InjectAnnotation: "true"})
	pod.Spec.Volumes = append(pod.Spec.Volumes, userTokenVolume("my-token", ""))
	mountVolume(&pod.Spec.Containers[0], "my-token")
	if _, err := inj.Mutate(Namespace{Name: "team-a"}, pod); err != nil {
		t.Errorf("without isolate-token: %v", err)
	}
}
