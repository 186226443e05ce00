package injector

// This file is the one place for the keys, names and bounds of the user-facing contract
// (docs: interface.md). Change one only together with that document.

// Pod annotations that users set, on a Pod or on a workload's pod template.
const (
	// InjectAnnotation opts a pod in ("true") or out ("false"). In a namespace labelled
	// enforced an opt-out is overridden, with an admission warning.
	InjectAnnotation = "apiaccess.io/inject"
	// ProxyPortAnnotation is the loopback port the proxy serves the API on,
	// from MinProxyPort to MaxProxyPort; default Config.ProxyPort.
	ProxyPortAnnotation = "apiaccess.io/proxy-port"
	// TokenAudienceAnnotation is the audience of the sidecar's projected token; default
	// Config.TokenAudience, and when that is empty the API server's own audience.
	TokenAudienceAnnotation = "apiaccess.io/token-audience"
	// TokenExpirationSecondsAnnotation is the lifetime of the sidecar's projected token, from
	// MinTokenExpirationSeconds to MaxTokenExpirationSeconds; default Config.TokenExpirationSeconds.
	TokenExpirationSecondsAnnotation = "apiaccess.io/token-expiration-seconds"
	// ReadOnlyAnnotation ("true") makes the proxy let only reads through (--read-only).
	ReadOnlyAnnotation = "apiaccess.io/read-only"
	// IsolateTokenAnnotation ("true") removes the service-account token mounts the built-in
	// ServiceAccount admission plugin added to the app containers, so that only the sidecar
	// holds a credential.
	IsolateTokenAnnotation = "apiaccess.io/isolate-token"
	// ContainersAnnotation is a comma-separated list of the containers (init or regular) that
	// get the environment and kubeconfig; default all but the sidecar.
	ContainersAnnotation = "apiaccess.io/containers"
	// TransparentAnnotation ("true") points the target containers' in-cluster configuration
	// at the sidecar: it also serves the API over TLS on loopback (Config.TransparentPort),
	// and the containers get its CA, the namespace and a token that is no credential at
	// TokenMountPath, KUBERNETES_SERVICE_HOST=127.0.0.1 and hostAliases for the API server's
	// names, so that unmodified in-cluster clients go through the proxy. Implies
	// IsolateTokenAnnotation.
	TransparentAnnotation = "apiaccess.io/transparent"
	// AllowExecAnnotation ("true") lets exec and attach through the proxy, which by default
	// refuses them as kubectl proxy does (its --reject-paths guards against a browser on the
	// same host running commands in pods). ReadOnlyAnnotation wins: a read-only pod still
	// refuses them.
	AllowExecAnnotation = "apiaccess.io/allow-exec"
	// AccessLogAnnotation ("true") makes the sidecar log one JSON line per API request
	// (--access-log): verb, resource, status code, outcome, latency and user agent, never a
	// credential. Only the api-proxy sidecar has it; kubectl proxy has no access log.
	AccessLogAnnotation = "apiaccess.io/access-log"
	// ProxyCPURequestAnnotation, ProxyCPULimitAnnotation, ProxyMemoryRequestAnnotation and
	// ProxyMemoryLimitAnnotation override the sidecar's CPU and memory request and limit
	// (Config.Sidecar.Resources) for one pod, e.g. a controller whose informers cache more
	// than the default memory limit holds. Each is a positive Kubernetes quantity ("250m",
	// "128Mi"); a request above its limit (the pod's or the configuration's) is refused.
	ProxyCPURequestAnnotation    = "apiaccess.io/proxy-cpu-request"
	ProxyCPULimitAnnotation      = "apiaccess.io/proxy-cpu-limit"
	ProxyMemoryRequestAnnotation = "apiaccess.io/proxy-memory-request"
	ProxyMemoryLimitAnnotation   = "apiaccess.io/proxy-memory-limit"
)

// Pod annotations that the injector writes, or wrote.
const (
	// StatusAnnotation records, as JSON, what was injected (see Status).
	StatusAnnotation = "apiaccess.io/status"
	// KubeconfigAnnotation held, in earlier versions, the kubeconfig that a downward-API
	// volume projected into the app containers. That file stayed live: whoever could patch
	// the pod could rewrite what kubectl and client-go load in the app (another server, a
	// users[].exec plugin they would run). The injector no longer writes it and removes it
	// from a pod it injects (one copied from an older pod, say); it is not an unknown key,
	// since pods injected by those versions still carry it; policies refuse UPDATEs that
	// change it on them.
	KubeconfigAnnotation = "apiaccess.io/kubeconfig"
)

// InjectionLabel is the namespace label that platform teams set to one of the
// NamespaceMode values enabled, enforced or disabled.
const InjectionLabel = "apiaccess.io/injection"

// Names of what gets injected. They are fixed: users, dashboards and policies rely on them.
const (
	// SidecarName is the name of the injected native sidecar.
	SidecarName = "api-proxy"
	// TokenVolumeName is the projected service-account volume mounted into the sidecar only.
	TokenVolumeName = "apiaccess-token"
	// KubeconfigVolumeName is the memory-backed emptyDir volume holding the kubeconfig
	// file, written by the api-proxy sidecar (or, in kubectl mode, by the init container
	// KubeconfigInitName) and mounted read-only into the app containers. No pod field feeds
	// it, so no update of the pod can change what the app loads.
	KubeconfigVolumeName = "apiaccess-kubeconfig"
	// KubeconfigInitName is the init container that writes the kubeconfig in kubectl mode,
	// where the sidecar's image cannot (`api-proxy write-kubeconfig`), placed right after
	// the sidecar.
	KubeconfigInitName = "apiaccess-kubeconfig"
	// ServiceAccountVolumeName is transparent mode's memory-backed emptyDir, written by the
	// sidecar (--serviceaccount-out) with the CA of its TLS listener, the namespace and a token
	// that is no credential, and mounted read-only at TokenMountPath in the target containers.
	ServiceAccountVolumeName = "apiaccess-serviceaccount"
	// ServiceAccountOutPath is where the sidecar mounts ServiceAccountVolumeName to write it
	// (its own TokenMountPath holds its real credentials).
	ServiceAccountOutPath = "/var/run/apiaccess-serviceaccount"
	// CAVolumeName is transparent mode's memory-backed emptyDir where the sidecar keeps the CA
	// of its TLS listener and the CA's private key (--ca-dir), so that a restarted sidecar
	// serves under the CA the app containers loaded. Only the sidecar mounts it.
	CAVolumeName = "apiaccess-ca"
	// CAMountPath is where the sidecar mounts CAVolumeName.
	CAMountPath = "/var/run/apiaccess-ca"
	// HealthPortName names the sidecar's health port (a port name has at most 15 characters).
	HealthPortName = "apiproxy-health"

	// TokenMountPath is where the sidecar reads token, ca.crt and namespace: the path of the
	// built-in service-account mount, so that `kubectl proxy` in the official kubectl image
	// works unchanged as the sidecar too.
	TokenMountPath = "/var/run/secrets/kubernetes.io/serviceaccount" //nolint:gosec // a path, no credential
	// KubeconfigMountPath is the directory of the kubeconfig in the app containers (and in
	// the container that writes it). The volume's directory is mounted, never a subPath: a
	// subPath mount would not see the file the sidecar writes after the mount.
	KubeconfigMountPath = "/var/run/apiaccess"
	// KubeconfigFileName is the kubeconfig's file name inside KubeconfigMountPath.
	KubeconfigFileName = "kubeconfig"

	// KubeconfigEnvVar points kubectl and every client library at the kubeconfig file.
	KubeconfigEnvVar = "KUBECONFIG"
	// KubeAPIURLEnvVar is the proxy's URL, for clients that speak plain HTTP.
	KubeAPIURLEnvVar = "KUBE_API_URL"

	// ServiceHostEnvVar, ServicePortEnvVar and ServicePortHTTPSEnvVar are what the kubelet
	// sets for the API server's Service, and what in-cluster clients read; in transparent mode
	// they point at the sidecar's TLS listener.
	ServiceHostEnvVar      = "KUBERNETES_SERVICE_HOST"
	ServicePortEnvVar      = "KUBERNETES_SERVICE_PORT"
	ServicePortHTTPSEnvVar = "KUBERNETES_SERVICE_PORT_HTTPS"

	// unprivilegedPortSysctl is the namespaced sysctl below which binding a port needs
	// privileges (default 1024); a "safe" sysctl that Pod Security restricted allows
	// (https://kubernetes.io/docs/tasks/administer-cluster/sysctl-cluster/#safe-and-unsafe-sysctls).
	unprivilegedPortSysctl = "net.ipv4.ip_unprivileged_port_start"
	// loopbackIP is where transparent mode's hostAliases send the API server's names.
	loopbackIP = "127.0.0.1"

	// builtinTokenVolumePrefix starts the name of the volume that the built-in
	// ServiceAccount admission plugin adds (kube-api-access-<random>).
	builtinTokenVolumePrefix = "kube-api-access-"
	// rootCAConfigMap is the ConfigMap every namespace gets with the cluster's CA bundle.
	rootCAConfigMap = "kube-root-ca.crt"
	// defaultServiceAccount is what the ServiceAccount admission plugin would set.
	defaultServiceAccount = "default"
	// namespaceEnvVar gives the kubeconfig init container the pod's namespace (downward API).
	namespaceEnvVar = "POD_NAMESPACE"
)

// Defaults and bounds.
const (
	// DefaultProxyPort is kubectl proxy's port, so existing scripts keep working.
	DefaultProxyPort = 8001
	// DefaultHealthPort serves the sidecar's probes and metrics on all interfaces: the
	// kubelet probes the pod IP, which a loopback-only listener would not answer.
	DefaultHealthPort = 8002
	// MinProxyPort keeps the proxy off privileged ports (the sidecar runs as non-root).
	MinProxyPort = 1024
	// MaxProxyPort is the largest TCP port.
	MaxProxyPort = 65535

	// DefaultTokenExpirationSeconds is an hour: the token really expires and is rotated by
	// the kubelet at 80% of its life. We do not ask for 3607 s, the marker that the API
	// server silently extends to a year for legacy clients
	// (https://kubernetes.io/docs/reference/access-authn-authz/service-accounts-admin/#bound-service-account-token-volume).
	DefaultTokenExpirationSeconds = 3600
	// MinTokenExpirationSeconds is the API server's own minimum for a projected token.
	MinTokenExpirationSeconds = 600
	// MaxTokenExpirationSeconds is a day; longer-lived credentials defeat rotation.
	MaxTokenExpirationSeconds = 86400

	// DefaultTransparentPort is the port of the sidecar's TLS listener in transparent mode:
	// that of the API server's Service, so that https://kubernetes.default.svc with no port
	// (the docs' curl recipe) reaches it too. The pod's net.ipv4.ip_unprivileged_port_start
	// is lowered so that the non-root sidecar may bind it.
	DefaultTransparentPort = 443
	// DefaultClusterDomain is the kubelet's default cluster domain, for the name
	// kubernetes.default.svc.<domain>.
	DefaultClusterDomain = "cluster.local"

	// DefaultSidecarUser is the distroless "nonroot" user the proxy image runs as.
	DefaultSidecarUser = 65532
)

// Keys that decide which pod annotations the injector reads.
const (
	// AnnotationPrefix starts every pod annotation key of the injector. A key under it that
	// is neither one users set nor one the injector writes is refused as a likely typo.
	AnnotationPrefix = "apiaccess.io/"
)
