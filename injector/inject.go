package injector

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Injector mutates pods according to a validated Config. It is safe for concurrent use.
type Injector struct {
	cfg Config
}

// New defaults and validates cfg and returns an Injector for it.
func New(cfg Config) (*Injector, error) {
	cfg.Default()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid injector config: %w", err)
	}
	return &Injector{cfg: cfg}, nil
}

// Config returns the defaulted configuration the injector runs with.
func (i *Injector) Config() Config { return i.cfg }

// Result is the outcome of Mutate for a pod that was not refused.
type Result struct {
	Decision
	// Updated is true when the pod had been injected before (a reinvocation, a re-applied
	// injected manifest) and was brought up to date rather than injected afresh.
	Updated bool
}

// Mutate decides whether the pod is injected and, if so, injects it in place. A pod that
// cannot be injected gets a *Refusal and is left unchanged.
func (i *Injector) Mutate(ns Namespace, pod *corev1.Pod) (Result, error) {
	d, err := i.Decide(ns, pod)
	if err != nil || !d.Inject {
		return Result{Decision: d}, err
	}
	_, updated := pod.Annotations[StatusAnnotation]
	if updated {
		_, updated = ParseStatus(pod.Annotations)
	}
	warnings, err := i.inject(ns, pod)
	if err != nil {
		return Result{}, err
	}
	d.Warnings = append(d.Warnings, warnings...)
	return Result{Decision: d, Updated: updated}, nil
}

// Inject adds the sidecar, volumes, variables and annotations to a pod of the given
// namespace, whatever the decision table says. It checks everything before it changes
// anything: a refused pod is left as it was. A pod injected before (reinvocation, a re-applied
// manifest) keeps its sidecar where it is, updated in place (see updateSidecar).
func (i *Injector) Inject(namespace string, pod *corev1.Pod) (warnings []string, err error) {
	return i.inject(Namespace{Name: namespace}, pod)
}

// inject is Inject for a pod of a namespace whose mode is known, so that refusals can say
// how this pod can do without the sidecar.
func (i *Injector) inject(ns Namespace, pod *corev1.Pod) (warnings []string, err error) {
	var r Refusal
	annotations, warnings := withNamespaceDefaults(&r, ns, pod.Annotations)
	opts, err := ParseOptions(annotations, &i.cfg)
	if err != nil {
		refusal, ok := errors.AsType[*Refusal](err)
		if !ok {
			return nil, err
		}
		r.merge(refusal)
	}
	prev, injected := ParseStatus(pod.Annotations)
	targets := i.check(&r, ns, pod, opts, prev, injected)
	if err := r.orNil(); err != nil {
		return nil, err
	}

	spec := &pod.Spec
	if spec.ServiceAccountName == "" {
		// The API server refuses a projected token without a service account; the built-in
		// ServiceAccount admission plugin, when it runs, sets the same value.
		spec.ServiceAccountName = spec.DeprecatedServiceAccount
		if spec.ServiceAccountName == "" {
			spec.ServiceAccountName = defaultServiceAccount
		}
	}
	if opts.IsolateToken {
		isolateToken(spec)
	}
	spec.ImagePullSecrets = withPullSecrets(spec.ImagePullSecrets, i.cfg.Sidecar.ImagePullSecrets)
	spec.Volumes = upsertVolume(spec.Volumes, tokenVolume(opts))
	spec.Volumes = upsertVolume(spec.Volumes, kubeconfigVolume())
	volumes := []string{TokenVolumeName, KubeconfigVolumeName}
	var tlsPort int32
	if opts.Transparent {
		tlsPort = i.cfg.TransparentPort
		spec.Volumes = upsertVolume(spec.Volumes, serviceAccountVolume())
		spec.Volumes = upsertVolume(spec.Volumes, caVolume())
		volumes = append(volumes, ServiceAccountVolumeName, CAVolumeName)
		i.transparentPodSpec(spec)
	}
	// An earlier injection's sidecar is updated where it is, not removed and inserted again:
	// the API server re-runs its own admission plugins before it reinvokes this webhook, and
	// what they added to the sidecar must survive, or their validation half refuses the pod
	// (LimitRanger's default CPU limit, which a ResourceQuota on limits.cpu then requires;
	// https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/#reinvocation-policy).
	if k := slices.IndexFunc(spec.InitContainers, func(c corev1.Container) bool { return c.Name == SidecarName }); k >= 0 {
		spec.InitContainers[k] = updateSidecar(spec.InitContainers[k], i.sidecar(opts))
	} else {
		spec.InitContainers = slices.Insert(spec.InitContainers, 0, i.sidecar(opts))
	}
	spec.InitContainers = i.withKubeconfigInit(spec.InitContainers, opts)

	var names []string
	for _, c := range containers(pod) {
		if !targets[c.Name] {
			continue
		}
		names = append(names, c.Name)
		warnings = append(warnings, wire(c, opts.ProxyPort, tlsPort, prev, injected)...)
	}

	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	// Written by earlier versions and fed a live kubeconfig file; now it would only mislead.
	delete(pod.Annotations, KubeconfigAnnotation)
	status := Status{
		Version:         i.cfg.Version,
		Sidecar:         SidecarName,
		Volumes:         volumes,
		Containers:      names,
		Port:            opts.ProxyPort,
		ReadOnly:        opts.ReadOnly,
		IsolateToken:    opts.IsolateToken,
		TransparentPort: tlsPort,
	}
	if i.cfg.Sidecar.Mode == SidecarKubectl {
		status.InitContainers = []string{KubeconfigInitName}
	}
	pod.Annotations[StatusAnnotation] = status.String()
	return warnings, nil
}

// check adds to r what the sidecar cannot coexist with and returns the set of containers to
// wire. prev is the status of an earlier injection, if injected. Each reason ends with advice
// that fits this pod in this namespace.
func (i *Injector) check(r *Refusal, ns Namespace, pod *corev1.Pod, opts Options, prev Status, injected bool) map[string]bool {
	spec := &pod.Spec
	if spec.HostNetwork {
		// On the host network, 127.0.0.1 is the node's loopback: the proxy would serve this
		// pod's credentials to every process on the node, and collide with other such pods.
		r.because(ReasonRefusedHostNetwork).add("spec.hostNetwork: true: pods on the host network cannot get the %s sidecar, "+
			"because it would serve the API with the pod's credentials on the node's loopback; "+
			"remove hostNetwork, or %s", SidecarName, withoutSidecar(ns))
	}
	for _, c := range spec.Containers {
		if c.Name == SidecarName {
			r.because(ReasonRefusedName).add("container %q: the name is reserved for the injected sidecar; rename the container", c.Name)
		}
		if c.Name == KubeconfigInitName {
			r.because(ReasonRefusedName).add("container %q: the name is reserved for the injected init container; rename the container", c.Name)
		}
	}
	for _, c := range spec.InitContainers {
		if c.Name == SidecarName && !injected {
			r.because(ReasonRefusedName).add("init container %q: the name is reserved for the injected sidecar; rename the container", c.Name)
		}
		if c.Name == KubeconfigInitName && !(injected && prev.owns(c.Name)) {
			r.because(ReasonRefusedName).add("init container %q: the name is reserved for the injected init container; rename the container", c.Name)
		}
	}
	for _, v := range spec.Volumes {
		if reservedVolume(v.Name) && !(injected && prev.owns(v.Name)) {
			r.because(ReasonRefusedName).add("volume %q: the name is reserved for the injected volumes; rename the volume", v.Name)
		}
	}
	targets := map[string]bool{}
	for _, c := range containers(pod) {
		if ours(c.Name) {
			continue
		}
		for _, p := range c.Ports {
			switch {
			case p.ContainerPort == opts.ProxyPort:
				r.because(ReasonRefusedPort).add("container %q: port %d is used by the %s sidecar (proxy port %d, health port %d); "+
					"choose another port, or set %s to move the proxy", c.Name, p.ContainerPort, SidecarName,
					opts.ProxyPort, i.cfg.Sidecar.HealthPort, ProxyPortAnnotation)
			case opts.Transparent && p.ContainerPort == i.cfg.TransparentPort:
				// Like the health port, the injector's configuration sets it for every pod.
				r.because(ReasonRefusedPort).add("container %q: port %d is used by the %s sidecar as its TLS port in transparent mode, which the injector's configuration sets for every pod (transparentPort); "+
					"choose another port for the container, or remove the %s annotation", c.Name, p.ContainerPort, SidecarName, TransparentAnnotation)
			case i.cfg.Sidecar.Mode == SidecarAPIProxy && p.ContainerPort == i.cfg.Sidecar.HealthPort:
				// The health port is the injector's configuration, not the pod's: no
				// annotation moves it, so do not suggest one.
				r.because(ReasonRefusedPort).add("container %q: port %d is used by the %s sidecar as its health port, which the injector's configuration sets for every pod (sidecar.healthPort); "+
					"choose another port for the container, or %s", c.Name, p.ContainerPort, SidecarName, withoutSidecar(ns))
			}
		}
		targets[c.Name] = opts.Containers == nil
	}
	for _, name := range opts.Containers {
		if _, ok := targets[name]; !ok {
			r.annotation(ContainersAnnotation, pod.Annotations[ContainersAnnotation],
				fmt.Sprintf("the pod has no container %q; it has %s", name, containerNames(pod)))
			continue
		}
		targets[name] = true
	}
	for _, c := range containers(pod) {
		if !targets[c.Name] {
			continue
		}
		for _, m := range c.VolumeMounts {
			if m.MountPath == KubeconfigMountPath && m.Name != KubeconfigVolumeName {
				r.because(ReasonRefusedMount).add("container %q: mount path %s is used by volume %q; the injected kubeconfig is mounted there: "+
					"mount the volume elsewhere, or leave the container out of %s", c.Name, KubeconfigMountPath, m.Name, ContainersAnnotation)
			}
			if opts.Transparent && path.Clean(m.MountPath) == TokenMountPath && m.Name != ServiceAccountVolumeName && !builtinTokenMount(spec, m.Name) {
				r.because(ReasonRefusedMount).add("container %q: mount path %s is used by volume %q; with %s: \"true\" the sidecar's service-account files are mounted there: "+
					"mount the volume elsewhere, or leave the container out of %s", c.Name, TokenMountPath, m.Name, TransparentAnnotation, ContainersAnnotation)
			}
		}
	}
	if opts.IsolateToken {
		checkIsolated(r, pod, opts, i.cfg.TokenAudience)
	}
	if opts.Transparent {
		i.checkTransparent(r, spec, opts)
	}
	return targets
}

// containers returns pointers to the pod's init and regular containers, in pod order.
func containers(pod *corev1.Pod) []*corev1.Container {
	out := make([]*corev1.Container, 0, len(pod.Spec.InitContainers)+len(pod.Spec.Containers))
	for i := range pod.Spec.InitContainers {
		out = append(out, &pod.Spec.InitContainers[i])
	}
	for i := range pod.Spec.Containers {
		out = append(out, &pod.Spec.Containers[i])
	}
	return out
}

// ours reports whether a container name is one the injector adds. One the user named so is
// refused by check, unless an earlier injection recorded it as its own.
func ours(name string) bool { return name == SidecarName || name == KubeconfigInitName }

func containerNames(pod *corev1.Pod) string {
	var names []string
	for _, c := range containers(pod) {
		if !ours(c.Name) {
			names = append(names, strconv.Quote(c.Name))
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// withPullSecrets returns the pod's image pull secrets with each of ours it lacks appended,
// in order; the pod's own are kept, so injecting twice changes nothing. The pod's list is
// never written in place: patch.Snapshot does not clone it (see its contract), so a new list
// is made when one is added.
func withPullSecrets(pod, ours []corev1.LocalObjectReference) []corev1.LocalObjectReference {
	for _, ref := range ours {
		if !slices.Contains(pod, ref) {
			pod = append(slices.Clip(pod), ref)
		}
	}
	return pod
}
