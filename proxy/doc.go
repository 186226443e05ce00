// Package proxy is the api-proxy sidecar: a reverse proxy that serves the Kubernetes API
// unauthenticated on the pod's loopback and speaks to the API server with the pod's projected
// service-account token.
//
// It is flag-compatible with kubectl proxy where their features overlap (same flags, defaults
// and filter order: --reject-paths, --reject-methods, then --accept-paths and --accept-hosts),
// and differs where kubectl proxy falls short as a sidecar:
//
//   - the token file is re-read when the kubelet rotates it, and once more when the API server
//     answers 401, so a rotated token never reaches the app as a 401; the CA bundle is
//     re-read when it changes, so a cluster CA rotation needs no restart;
//   - a rejection is a 403 with a Kubernetes Status body naming the rule;
//   - a client's own Authorization and Impersonate-* headers are dropped;
//   - an IPv6 Host such as [::1]:8001 is matched against --accept-hosts with its brackets,
//     and a Host that is not a well-formed host[:port] is refused;
//   - request bodies kept for a retry after a 401 share a bounded budget
//     (--replay-buffer-size), and the Go runtime's soft memory limit follows the container's
//     memory limit, so that a burst of large writes stays within the sidecar's limit;
//   - --read-only lets only GET, HEAD and OPTIONS through, and refuses exec, attach,
//     portforward, the proxy subresources and every protocol upgrade even by GET;
//   - a separate health port serves /healthz, /readyz and /metrics (Prometheus text) and
//     never the API;
//   - ordinary requests go to the API server over a small pool of HTTP/1.1 connections, each
//     written and read by the request's own goroutine (--upstream-http1-conns), watches and
//     the rest over one HTTP/2 connection: the hop costs a fraction of kubectl proxy's;
//   - SIGTERM drains in-flight requests, ending watches cleanly;
//   - --kubeconfig-out writes, before the proxy serves, the kubeconfig that the app
//     containers load, so that nothing a pod update can change feeds it (see Kubeconfig);
//     `api-proxy write-kubeconfig` writes it and exits, for pods whose sidecar is kubectl;
//   - every request is accounted for by its RBAC verb, resource tuple and outcome (access.go):
//     the access record on /.apiaccess/record (loopback only, never forwarded, printed by
//     `api-proxy access`), the per-resource metrics, the RBAC rule logged for a 403, and the
//     opt-in access log (--access-log).
//
// The package uses only the standard library and three small packages of this module (the
// version stamp, the access record's type, the flag names), so that the binary stays under
// 8 MB. The kubeconfig is written as text for that reason: client-go's kubeconfig types would
// link apimachinery's runtime (+1.6 MB of binary, +2 MiB of memory in every pod); the tests
// load it with clientcmd.Load and compare it with one built from those types.
package proxy
