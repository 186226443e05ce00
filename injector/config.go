package injector

import (
	"errors"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// Config is the injector's process configuration: the cluster-wide defaults that pod
// annotations may override. It is read from the file given by --config (YAML, unknown keys
// refused), completed by Default and checked by Validate.
type Config struct {
	// Version of the injector, recorded in the status annotation. Set by the binary, not the file.
	Version string `json:"-"`

	// Sidecar describes the injected api-proxy container.
	Sidecar SidecarConfig `json:"sidecar"`
	// ProxyPort is the loopback port the proxy serves the API on, unless a pod sets
	// ProxyPortAnnotation. Default DefaultProxyPort.
	ProxyPort int32 `json:"proxyPort,omitempty"`
	// TokenExpirationSeconds is the lifetime of the sidecar's projected token, unless a pod sets
	// TokenExpirationSecondsAnnotation. Default DefaultTokenExpirationSeconds.
	TokenExpirationSeconds int64 `json:"tokenExpirationSeconds,omitempty"`
	// TokenAudience is the audience of the sidecar's projected token, unless a pod sets
	// TokenAudienceAnnotation. Empty means the API server's own audience.
	TokenAudience string `json:"tokenAudience,omitempty"`
	// TransparentPort is the port of the sidecar's TLS listener in pods with
	// TransparentAnnotation, and what their KUBERNETES_SERVICE_PORT says. Default
	// DefaultTransparentPort.
	TransparentPort int32 `json:"transparentPort,omitempty"`
	// ClusterDomain is the cluster's DNS domain, for the name kubernetes.default.svc.<domain>
	// that transparent mode's certificate and hostAliases carry. Default DefaultClusterDomain.
	ClusterDomain string `json:"clusterDomain,omitempty"`
	// ExcludedNamespaces are never injected, whatever their labels, in addition to
	// kube-system, kube-node-lease and the injector's own namespace (AlwaysExcludedNamespaces).
	ExcludedNamespaces []string `json:"excludedNamespaces,omitempty"`
}

// SidecarMode selects the program the sidecar runs.
type SidecarMode string

const (
	// SidecarAPIProxy runs api-proxy, the project's own proxy: the default.
	SidecarAPIProxy SidecarMode = "api-proxy"
	// SidecarKubectl runs `kubectl proxy` from the official kubectl image, with the same
	// port and filters, for teams that only trust upstream binaries. It has no separate
	// health port: its probes run kubectl inside the container, through the proxy.
	SidecarKubectl SidecarMode = "kubectl"
)

// SidecarConfig describes the injected api-proxy container.
type SidecarConfig struct {
	// Mode is the program the sidecar runs. Default SidecarAPIProxy.
	Mode SidecarMode `json:"mode,omitempty"`
	// Image of the proxy (in kubectl mode, an image whose entrypoint is kubectl). Required.
	Image string `json:"image"`
	// InitImage is the api-proxy image, run in kubectl mode as the init container
	// KubeconfigInitName (`api-proxy write-kubeconfig`) that writes the app containers'
	// kubeconfig, since the kubectl image cannot. Required in kubectl mode; unused otherwise.
	InitImage string `json:"initImage,omitempty"`
	// ImagePullPolicy of the proxy image (and of InitImage). Default IfNotPresent.
	ImagePullPolicy corev1.PullPolicy `json:"imagePullPolicy,omitempty"`
	// HealthPort serves /healthz, /readyz and /metrics on all interfaces. Default DefaultHealthPort.
	HealthPort int32 `json:"healthPort,omitempty"`
	// RunAsUser is the sidecar's numeric user. Default DefaultSidecarUser.
	RunAsUser int64 `json:"runAsUser,omitempty"`
	// Resources of the sidecar. Default: requests 10m CPU and 32Mi memory, limit 64Mi memory,
	// so that ResourceQuota and LimitRange accept the pod. Pods may override each by
	// annotation (ResourceAnnotations).
	Resources corev1.ResourceRequirements `json:"resources"`
	// ImagePullSecrets are added to injected pods' spec.imagePullSecrets, for a sidecar image
	// in a private registry: those the pod lacks are appended, none of the pod's is removed.
	// Each must exist in the pod's namespace for the kubelet to use it.
	ImagePullSecrets []corev1.LocalObjectReference `json:"imagePullSecrets,omitempty"`
}

// AlwaysExcludedNamespaces are never injected: the cluster's own components must not depend
// on the webhook to start (a webhook that fails closed would otherwise deadlock them).
var AlwaysExcludedNamespaces = []string{"kube-system", "kube-node-lease"}

// LoadConfig parses a configuration file's content, refusing unknown keys so that a typo
// is an error rather than a silently ignored setting. It does not default or validate.
func LoadConfig(data []byte) (Config, error) {
	var cfg Config
	if err := yaml.UnmarshalStrict(data, &cfg); err != nil {
		return Config{}, fmt.Errorf("parsing injector config: %w", err)
	}
	return cfg, nil
}

// Default fills every unset field with its default.
func (c *Config) Default() {
	if c.ProxyPort == 0 {
		c.ProxyPort = DefaultProxyPort
	}
	if c.TokenExpirationSeconds == 0 {
		c.TokenExpirationSeconds = DefaultTokenExpirationSeconds
	}
	if c.TransparentPort == 0 {
		c.TransparentPort = DefaultTransparentPort
	}
	if c.ClusterDomain == "" {
		c.ClusterDomain = DefaultClusterDomain
	}
	s := &c.Sidecar
	if s.Mode == "" {
		s.Mode = SidecarAPIProxy
	}
	if s.ImagePullPolicy == "" {
		s.ImagePullPolicy = corev1.PullIfNotPresent
	}
	if s.HealthPort == 0 {
		s.HealthPort = DefaultHealthPort
	}
	if s.RunAsUser == 0 {
		s.RunAsUser = DefaultSidecarUser
	}
	if s.Resources.Requests == nil && s.Resources.Limits == nil {
		s.Resources = corev1.ResourceRequirements{
			Requests: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse("10m"),
				corev1.ResourceMemory: resource.MustParse("32Mi"),
			},
			Limits: corev1.ResourceList{
				corev1.ResourceMemory: resource.MustParse("64Mi"),
			},
		}
	}
}

// Validate reports every problem of a defaulted configuration at once.
func (c *Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if m := c.Sidecar.Mode; m != SidecarAPIProxy && m != SidecarKubectl {
		add("sidecar.mode: %q is not one of %s, %s", m, SidecarAPIProxy, SidecarKubectl)
	}
	if c.Sidecar.Image == "" {
		add("sidecar.image: required: the api-proxy image to inject")
	}
	if c.Sidecar.Mode == SidecarKubectl && c.Sidecar.InitImage == "" {
		add("sidecar.initImage: required when sidecar.mode is %s: the api-proxy image, whose write-kubeconfig command "+
			"writes the app containers' kubeconfig in the init container %s", SidecarKubectl, KubeconfigInitName)
	}
	switch c.Sidecar.ImagePullPolicy {
	case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		add("sidecar.imagePullPolicy: %q is not one of Always, IfNotPresent, Never", c.Sidecar.ImagePullPolicy)
	}
	if c.ProxyPort < MinProxyPort || c.ProxyPort > MaxProxyPort {
		add("proxyPort: %d is out of range %d-%d", c.ProxyPort, MinProxyPort, MaxProxyPort)
	}
	if c.Sidecar.HealthPort < 1 || c.Sidecar.HealthPort > MaxProxyPort {
		add("sidecar.healthPort: %d is out of range 1-%d", c.Sidecar.HealthPort, MaxProxyPort)
	}
	if c.Sidecar.HealthPort == c.ProxyPort {
		add("sidecar.healthPort: %d is also the proxyPort; the two must differ", c.Sidecar.HealthPort)
	}
	if c.TransparentPort < 1 || c.TransparentPort > MaxProxyPort {
		add("transparentPort: %d is out of range 1-%d", c.TransparentPort, MaxProxyPort)
	}
	if c.TransparentPort == c.ProxyPort || c.TransparentPort == c.Sidecar.HealthPort {
		add("transparentPort: %d is also the proxyPort or sidecar.healthPort; the three must differ", c.TransparentPort)
	}
	for _, msg := range validation.IsDNS1123Subdomain(c.ClusterDomain) {
		add("clusterDomain: %q is not a DNS domain: %s", c.ClusterDomain, msg)
	}
	if c.Sidecar.RunAsUser < 1 {
		add("sidecar.runAsUser: %d is not allowed: the sidecar must run as a non-root user", c.Sidecar.RunAsUser)
	}
	if c.TokenExpirationSeconds < MinTokenExpirationSeconds || c.TokenExpirationSeconds > MaxTokenExpirationSeconds {
		add("tokenExpirationSeconds: %d is out of range %d-%d", c.TokenExpirationSeconds, MinTokenExpirationSeconds, MaxTokenExpirationSeconds)
	}
	r := c.Sidecar.Resources
	if _, ok := r.Limits[corev1.ResourceMemory]; !ok {
		add("sidecar.resources.limits.memory: required, so that a LimitRange or ResourceQuota accepts the pod")
	}
	for name, req := range r.Requests {
		if lim, ok := r.Limits[name]; ok && req.Cmp(lim) > 0 {
			add("sidecar.resources: request %s=%s exceeds its limit %s", name, req.String(), lim.String())
		}
	}
	for i, ref := range c.Sidecar.ImagePullSecrets {
		for _, msg := range validation.IsDNS1123Subdomain(ref.Name) {
			add("sidecar.imagePullSecrets[%d].name: %q is not a Secret name: %s", i, ref.Name, msg)
		}
	}
	for i, ns := range c.ExcludedNamespaces {
		for _, msg := range validation.IsDNS1123Label(ns) {
			add("excludedNamespaces[%d]: %q is not a namespace name: %s", i, ns, msg)
		}
	}
	return errors.Join(errs...)
}

// excluded reports whether a namespace is never injected.
func (c *Config) excluded(namespace string) bool {
	return slices.Contains(AlwaysExcludedNamespaces, namespace) || slices.Contains(c.ExcludedNamespaces, namespace)
}
