// Package proxyargs names api-proxy's command line: its subcommand and the flags that the
// injector writes into the sidecar's arguments (without the leading "--"). Package proxy
// registers its flags under these names and package injector builds the arguments from them,
// so that renaming a flag renames both; the injector's tests also parse the injected
// arguments with the proxy's own flag sets.
//
// It is a package of its own, with no imports, because package proxy's tests run the webhook
// (through the test environment, which imports the injector): the injector importing proxy
// itself would be an import cycle in those tests.
package proxyargs

// WriteKubeconfig is the subcommand (`api-proxy write-kubeconfig`) that writes the app
// containers' kubeconfig and exits, without serving.
const WriteKubeconfig = "write-kubeconfig"

// Flags of `api-proxy` and of `api-proxy write-kubeconfig`.
const (
	// Port is --port: the loopback port the API is served on (both commands).
	Port = "port"
	// HealthPort is --health-port: the port of /healthz, /readyz and /metrics.
	HealthPort = "health-port"
	// ReadOnly is --read-only: only reads go through.
	ReadOnly = "read-only"
	// RejectPaths is --reject-paths: regular expressions of the paths refused.
	RejectPaths = "reject-paths"
	// KubeconfigOut is --kubeconfig-out: the app containers' kubeconfig file (both commands).
	KubeconfigOut = "kubeconfig-out"
	// TLSPort is --tls-port: transparent mode's TLS listener.
	TLSPort = "tls-port"
	// ClusterDomain is --cluster-domain: the cluster's DNS domain, for the TLS certificate.
	ClusterDomain = "cluster-domain"
	// ServiceAccountOut is --serviceaccount-out: where transparent mode writes the app
	// containers' service-account files.
	ServiceAccountOut = "serviceaccount-out"
	// CADir is --ca-dir: where transparent mode keeps the CA of its TLS listener.
	CADir = "ca-dir"
	// AccessLog is --access-log: one JSON line per API request.
	AccessLog = "access-log"
	// Namespace is write-kubeconfig's --namespace: the pod's namespace.
	Namespace = "namespace"
)
