package injector

import (
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// sidecar returns the api-proxy container. Every field the API server would default is set
// explicitly, so that the stored pod equals what the injector produced and a second
// injection changes nothing.
func (i *Injector) sidecar(opts Options) corev1.Container {
	s := i.cfg.Sidecar
	args := []string{
		"--port=" + strconv.Itoa(int(opts.ProxyPort)),
		"--health-port=" + strconv.Itoa(int(s.HealthPort)),
	}
	if opts.ReadOnly {
		args = append(args, "--read-only")
	}
	health := intstr.FromInt32(s.HealthPort)
	c := corev1.Container{
		Name:            SidecarName,
		Image:           s.Image,
		ImagePullPolicy: s.ImagePullPolicy,
		Args:            args,
		Ports: []corev1.ContainerPort{{
			Name: HealthPortName, ContainerPort: s.HealthPort, Protocol: corev1.ProtocolTCP,
		}},
		Resources: *s.Resources.DeepCopy(),
		VolumeMounts: []corev1.VolumeMount{{
			Name: TokenVolumeName, MountPath: TokenMountPath, ReadOnly: true,
		}},
		// A native sidecar: started before the other init containers, kept running, and
		// stopped after the app, so that Jobs complete
		// (https://kubernetes.io/docs/concepts/workloads/pods/sidecar-containers/).
		RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways),
		// The kubelet starts the next container only once this succeeds: the app never sees
		// a proxy that cannot reach the API server yet. Two minutes of tries, then a restart.
		StartupProbe: &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: "/readyz", Port: health, Scheme: corev1.URISchemeHTTP,
			}},
			PeriodSeconds: 1, FailureThreshold: 120, TimeoutSeconds: 1, SuccessThreshold: 1,
		},
		// No readiness probe: a sidecar's readiness counts towards the pod's, and an API
		// server hiccup must not take the app out of its Service.
		LivenessProbe: &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: "/healthz", Port: health, Scheme: corev1.URISchemeHTTP,
			}},
			PeriodSeconds: 10, FailureThreshold: 3, TimeoutSeconds: 1, SuccessThreshold: 1,
		},
		// Pod Security "restricted" (https://kubernetes.io/docs/concepts/security/pod-security-standards/#restricted).
		SecurityContext: &corev1.SecurityContext{
			RunAsNonRoot:             ptr.To(true),
			RunAsUser:                ptr.To(s.RunAsUser),
			RunAsGroup:               ptr.To(s.RunAsUser),
			AllowPrivilegeEscalation: ptr.To(false),
			ReadOnlyRootFilesystem:   ptr.To(true),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		TerminationMessagePath:   corev1.TerminationMessagePathDefault,
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
	if s.Mode == SidecarKubectl {
		kubectlProxy(&c, opts)
	}
	return c
}

// kubectlReadOnlyPaths are the paths --read-only refuses beyond writes: the subresources that
// run commands or open tunnels, even by GET.
const kubectlReadOnlyPaths = `^/api/.*/pods/.*/exec,^/api/.*/pods/.*/attach,^/api/.*/pods/.*/portforward,^/api/.*/proxy,^/api/.*/.*/proxy`

// kubectlProxy turns the sidecar into `kubectl proxy` with the same port and filters. kubectl
// proxy listens on loopback only and has no health endpoint of its own, so the startup probe
// runs kubectl inside the container and asks the API server's /readyz through the proxy.
func kubectlProxy(c *corev1.Container, opts Options) {
	port := strconv.Itoa(int(opts.ProxyPort))
	c.Args = []string{"proxy", "--port=" + port, "--address=127.0.0.1"}
	if opts.ReadOnly {
		// kubectl proxy has no read-only mode; its filters approximate ours.
		c.Args = append(c.Args, "--reject-methods=^(POST|PUT|PATCH|DELETE)$", "--reject-paths="+kubectlReadOnlyPaths)
	}
	c.Ports = nil
	probe := corev1.ProbeHandler{Exec: &corev1.ExecAction{
		Command: []string{"kubectl", "--server=http://127.0.0.1:" + port, "get", "--raw=/readyz"},
	}}
	c.StartupProbe.ProbeHandler = probe
	c.StartupProbe.TimeoutSeconds = 5
	// No liveness probe: the only check kubectl can make goes to the API server, and an
	// outage there must not restart the sidecar in a loop.
	c.LivenessProbe = nil
}
