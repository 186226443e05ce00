package injector

import (
	"fmt"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
)

// Transparent mode (TransparentAnnotation) points the in-cluster configuration of the target
// containers at the sidecar, so that clients that never read KUBECONFIG (rest.InClusterConfig(),
// the other client libraries' in-cluster loaders, kubectl without a kubeconfig, a curl to
// https://kubernetes.default.svc; https://kubernetes.io/docs/tasks/run-application/access-api-from-pod/)
// go through its filters too. The sidecar serves the API over TLS on 127.0.0.1:TransparentPort
// with a CA it creates at start; the containers get, at TokenMountPath, that CA, the namespace
// and a token that is no credential (env.go wires them), the Service variables pointing at
// loopback, and hostAliases that resolve the API server's names to loopback. Their own token
// mount is gone (transparent implies isolate-token), so nothing they hold authenticates them.

// transparentHostnames are the API server's names that the pod's /etc/hosts maps to loopback:
// the Service kubernetes in the namespace default, in the forms the docs and client libraries
// use, and the cluster-domain form.
func (i *Injector) transparentHostnames() []string {
	return []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc." + i.cfg.ClusterDomain}
}

// transparentPodSpec adds to the pod what transparent mode needs beyond the containers: the
// hostAliases, and, for a TLS port below 1024, the sysctl that lets the non-root sidecar bind
// it. checkTransparent has refused what would conflict with either.
func (i *Injector) transparentPodSpec(spec *corev1.PodSpec) {
	alias := corev1.HostAlias{IP: loopbackIP, Hostnames: i.transparentHostnames()}
	if k := slices.IndexFunc(spec.HostAliases, func(a corev1.HostAlias) bool { return slices.Equal(a.Hostnames, alias.Hostnames) }); k >= 0 {
		spec.HostAliases[k] = alias
	} else {
		spec.HostAliases = append(spec.HostAliases, alias)
	}
	if i.cfg.TransparentPort >= 1024 {
		return
	}
	// 0, not the port: container runtimes set 0 themselves nowadays (containerd 2.0, Docker),
	// and raising it would take from the app containers the low ports they may bind there.
	if spec.SecurityContext == nil {
		spec.SecurityContext = &corev1.PodSecurityContext{}
	}
	sc := spec.SecurityContext
	if !slices.ContainsFunc(sc.Sysctls, func(s corev1.Sysctl) bool { return s.Name == unprivilegedPortSysctl }) {
		sc.Sysctls = append(sc.Sysctls, corev1.Sysctl{Name: unprivilegedPortSysctl, Value: "0"})
	}
}

// checkTransparent adds to r what transparent mode cannot coexist with.
func (i *Injector) checkTransparent(r *Refusal, spec *corev1.PodSpec, opts Options) {
	if opts.ProxyPort == i.cfg.TransparentPort {
		r.annotation(ProxyPortAnnotation, strconv.Itoa(int(opts.ProxyPort)), fmt.Sprintf(
			"port %d is the sidecar's TLS port in transparent mode, which the injector's configuration sets (transparentPort); choose another port", opts.ProxyPort))
	}
	if i.cfg.Sidecar.Mode == SidecarKubectl {
		r.because(ReasonRefusedAnnotation).add("annotation %s: \"true\" needs the %s sidecar to serve the API over TLS, which kubectl proxy cannot, "+
			"and this injector runs kubectl proxy (sidecar.mode %s); remove the annotation", TransparentAnnotation, SidecarName, SidecarKubectl)
	}
	ours := i.transparentHostnames()
	for _, a := range spec.HostAliases {
		if a.IP == loopbackIP {
			continue
		}
		for _, h := range a.Hostnames {
			if slices.Contains(ours, h) {
				r.add("spec.hostAliases: %s is mapped to %s; with %s: \"true\" it must reach the %s sidecar on %s: "+
					"remove the alias, or remove the annotation", h, a.IP, TransparentAnnotation, SidecarName, loopbackIP)
			}
		}
	}
	if i.cfg.TransparentPort >= 1024 || spec.SecurityContext == nil {
		return
	}
	for _, s := range spec.SecurityContext.Sysctls {
		if s.Name != unprivilegedPortSysctl {
			continue
		}
		if n, err := strconv.Atoi(s.Value); err != nil || n > int(i.cfg.TransparentPort) {
			r.add("spec.securityContext.sysctls: %s=%s keeps the non-root %s sidecar from binding port %d, its TLS port in transparent mode; "+
				"set it to %d or less, or remove the %s annotation", unprivilegedPortSysctl, s.Value, SidecarName, i.cfg.TransparentPort,
				i.cfg.TransparentPort, TransparentAnnotation)
		}
	}
}

// builtinTokenMount reports whether volume is the built-in kube-api-access volume, which
// isolate-token removes from the app containers.
func builtinTokenMount(spec *corev1.PodSpec, volume string) bool {
	return slices.ContainsFunc(spec.Volumes, func(v corev1.Volume) bool { return v.Name == volume && isBuiltinTokenVolume(v) })
}
