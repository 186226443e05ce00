package e2e

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/api-access-injector/api-access-injector/injector"
)

// TestTransparentPodPassesRestricted: a transparent pod in a namespace that enforces Pod
// Security restricted is admitted with no warning: the sysctl that lets the non-root sidecar
// bind port 443 is one the standard allows, and the sidecar keeps its hardening. The API
// server stores the hostAliases, the service-account mount in place of the app's own token,
// and the in-cluster variables pointing at loopback.
func TestTransparentPodPassesRestricted(t *testing.T) {
	ns := newNamespace(t, map[string]string{
		"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/warn": "restricted",
	})
	pod, warnings := mustCreatePod(t, ns, appPod("transparent", map[string]string{
		injector.InjectAnnotation: "true", injector.TransparentAnnotation: "true"}))
	assertInjected(t, pod)
	if len(warnings) != 0 {
		t.Errorf("warnings = %q, want none", warnings)
	}
	if got := tokenMounts(pod); len(got) != 0 {
		t.Errorf("a transparent pod's containers mount service-account tokens: %q", got)
	}
	app := pod.Spec.Containers[0]
	i := slices.IndexFunc(app.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == injector.TokenMountPath })
	if i < 0 || app.VolumeMounts[i].Name != injector.ServiceAccountVolumeName || !app.VolumeMounts[i].ReadOnly {
		t.Errorf("app mounts %+v; want %s read-only at %s", app.VolumeMounts, injector.ServiceAccountVolumeName, injector.TokenMountPath)
	}
	if h, p := envValue(app, injector.ServiceHostEnvVar), envValue(app, injector.ServicePortEnvVar); h != "127.0.0.1" || p != "443" {
		t.Errorf("app's %s:%s = %s:%s, want 127.0.0.1:443", injector.ServiceHostEnvVar, injector.ServicePortEnvVar, h, p)
	}
	if !slices.ContainsFunc(pod.Spec.HostAliases, func(a corev1.HostAlias) bool {
		return a.IP == "127.0.0.1" && slices.Contains(a.Hostnames, "kubernetes.default.svc")
	}) {
		t.Errorf("hostAliases %+v do not send kubernetes.default.svc to 127.0.0.1", pod.Spec.HostAliases)
	}
	if sc := pod.Spec.SecurityContext; sc == nil || !slices.Contains(sc.Sysctls, corev1.Sysctl{Name: "net.ipv4.ip_unprivileged_port_start", Value: "0"}) {
		t.Errorf("pod securityContext %+v lacks net.ipv4.ip_unprivileged_port_start=0", sc)
	}
}
