package injector

import (
	"path"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/api-access-injector/api-access-injector/proxy/proxyargs"
)

// sidecar returns the api-proxy container. Every field the API server would default is set
// explicitly, so that the stored pod equals what the injector produced and a second
// injection changes nothing.
func (i *Injector) sidecar(opts Options) corev1.Container {
	s := i.cfg.Sidecar
	args := []string{
		proxyFlag(proxyargs.Port, strconv.Itoa(int(opts.ProxyPort))),
		proxyFlag(proxyargs.HealthPort, strconv.Itoa(int(s.HealthPort))),
	}
	if opts.ReadOnly {
		args = append(args, "--"+proxyargs.ReadOnly)
	} else if opts.AllowExec {
		args = append(args, proxyFlag(proxyargs.RejectPaths, allowExecRejectPaths))
	}
	if opts.AccessLog {
		args = append(args, "--"+proxyargs.AccessLog)
	}
	// Written before the startupProbe can pass, so before any app container starts.
	args = append(args, proxyFlag(proxyargs.KubeconfigOut, kubeconfigPath))
	mounts := []corev1.VolumeMount{
		{Name: TokenVolumeName, MountPath: TokenMountPath, ReadOnly: true},
		{Name: KubeconfigVolumeName, MountPath: KubeconfigMountPath},
	}
	if opts.Transparent {
		args = append(args,
			proxyFlag(proxyargs.TLSPort, strconv.Itoa(int(i.cfg.TransparentPort))),
			proxyFlag(proxyargs.ClusterDomain, i.cfg.ClusterDomain),
			proxyFlag(proxyargs.ServiceAccountOut, ServiceAccountOutPath),
			proxyFlag(proxyargs.CADir, CAMountPath))
		mounts = append(mounts, corev1.VolumeMount{Name: ServiceAccountVolumeName, MountPath: ServiceAccountOutPath},
			corev1.VolumeMount{Name: CAVolumeName, MountPath: CAMountPath})
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
		Resources:    *opts.Resources.DeepCopy(),
		VolumeMounts: mounts,
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
		SecurityContext:          restricted(s.RunAsUser),
		TerminationMessagePath:   corev1.TerminationMessagePathDefault,
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
	if s.Mode == SidecarKubectl {
		kubectlProxy(&c, opts)
	}
	return c
}

// proxyFlag is the argument --name=value of api-proxy, name being one of the flag names that
// package proxyargs defines.
func proxyFlag(name, value string) string { return "--" + name + "=" + value }

// restricted is the security context of the containers we add: Pod Security "restricted"
// (https://kubernetes.io/docs/concepts/security/pod-security-standards/#restricted).
func restricted(user int64) *corev1.SecurityContext {
	return &corev1.SecurityContext{
		RunAsNonRoot:             ptr.To(true),
		RunAsUser:                ptr.To(user),
		RunAsGroup:               ptr.To(user),
		AllowPrivilegeEscalation: ptr.To(false),
		ReadOnlyRootFilesystem:   ptr.To(true),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

// kubeconfigPath is the kubeconfig file, in the containers that mount its volume.
var kubeconfigPath = path.Join(KubeconfigMountPath, KubeconfigFileName)

// kubectlReadOnlyPaths are the paths --read-only refuses beyond writes: the subresources that
// run commands or open tunnels, even by GET.
const kubectlReadOnlyPaths = `^/api/.*/pods/.*/exec,^/api/.*/pods/.*/attach,^/api/.*/pods/.*/portforward,^/api/.*/proxy,^/api/.*/.*/proxy`

// allowExecRejectPaths replaces the default --reject-paths (exec and attach) of a pod with
// AllowExecAnnotation: it matches only the empty path, which no request has, so it rejects
// nothing, in api-proxy and in kubectl proxy alike (it is kubectl proxy's own --reject-methods
// default, https://kubernetes.io/docs/reference/kubectl/generated/kubectl_proxy/). Never
// passed with --read-only, which refuses exec and attach on its own and wins.
const allowExecRejectPaths = `^$`

// kubectlProxy turns the sidecar into `kubectl proxy` with the same port and filters. kubectl
// proxy listens on loopback only and has no health endpoint of its own, so the startup probe
// runs kubectl inside the container and asks the API server's /readyz through the proxy.
func kubectlProxy(c *corev1.Container, opts Options) {
	port := strconv.Itoa(int(opts.ProxyPort))
	c.Args = []string{"proxy", "--port=" + port, "--address=127.0.0.1"}
	if opts.ReadOnly {
		// kubectl proxy has no read-only mode; its filters approximate ours.
		c.Args = append(c.Args, "--reject-methods=^(POST|PUT|PATCH|DELETE)$", "--reject-paths="+kubectlReadOnlyPaths)
	} else if opts.AllowExec {
		c.Args = append(c.Args, "--reject-paths="+allowExecRejectPaths)
	}
	c.Ports = nil
	// The kubectl image cannot write the kubeconfig: the init container KubeconfigInitName does.
	c.VolumeMounts = c.VolumeMounts[:1]
	probe := corev1.ProbeHandler{Exec: &corev1.ExecAction{
		Command: []string{"kubectl", "--server=http://127.0.0.1:" + port, "get", "--raw=/readyz"},
	}}
	c.StartupProbe.ProbeHandler = probe
	c.StartupProbe.TimeoutSeconds = 5
	// No liveness probe: the only check kubectl can make goes to the API server, and an
	// outage there must not restart the sidecar in a loop.
	c.LivenessProbe = nil
}

// withKubeconfigInit returns the init containers with KubeconfigInitName in kubectl mode, and
// without it otherwise (an earlier injection in kubectl mode may have added it). It goes right
// after the sidecar, whose startupProbe holds it back until the proxy is up, and it holds back
// every later container until the file is written. One an earlier injection added is updated
// where it is, keeping what other admission plugins added to it, as the sidecar is.
func (i *Injector) withKubeconfigInit(cs []corev1.Container, opts Options) []corev1.Container {
	k := slices.IndexFunc(cs, func(c corev1.Container) bool { return c.Name == KubeconfigInitName })
	switch {
	case i.cfg.Sidecar.Mode != SidecarKubectl:
		return slices.DeleteFunc(cs, func(c corev1.Container) bool { return c.Name == KubeconfigInitName })
	case k >= 0:
		cs[k] = updateSidecar(cs[k], i.kubeconfigInit(opts))
		return cs
	}
	at := slices.IndexFunc(cs, func(c corev1.Container) bool { return c.Name == SidecarName }) + 1
	return slices.Insert(cs, at, i.kubeconfigInit(opts))
}

// kubeconfigInit is the init container that runs `api-proxy write-kubeconfig` from the
// api-proxy image (Config.Sidecar.InitImage) and exits. It gets the pod's namespace from the
// downward API's metadata.namespace, which cannot change after admission. Its requests and
// limits are all set, so that a LimitRange adds nothing (injection stays idempotent) and a
// ResourceQuota on limits accepts the pod.
func (i *Injector) kubeconfigInit(opts Options) corev1.Container {
	s := i.cfg.Sidecar
	return corev1.Container{
		Name:            KubeconfigInitName,
		Image:           s.InitImage,
		ImagePullPolicy: s.ImagePullPolicy,
		Args: []string{
			proxyargs.WriteKubeconfig,
			proxyFlag(proxyargs.KubeconfigOut, kubeconfigPath),
			proxyFlag(proxyargs.Port, strconv.Itoa(int(opts.ProxyPort))),
			proxyFlag(proxyargs.Namespace, "$("+namespaceEnvVar+")"),
		},
		Env: []corev1.EnvVar{{Name: namespaceEnvVar, ValueFrom: &corev1.EnvVarSource{FieldRef: fieldRef("metadata.namespace")}}},
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
		},
		VolumeMounts:             []corev1.VolumeMount{{Name: KubeconfigVolumeName, MountPath: KubeconfigMountPath}},
		SecurityContext:          restricted(s.RunAsUser),
		TerminationMessagePath:   corev1.TerminationMessagePathDefault,
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
}
