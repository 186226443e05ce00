// Package injector is the pure mutation at the heart of api-access-injector.
//
// Given a pod, the injection mode of its namespace and the process configuration, it decides
// whether the pod is injected and, if so, adds the api-proxy native sidecar, the projected
// service-account volume mounted into that sidecar only, the memory-backed kubeconfig volume
// that the sidecar fills when it starts (in kubectl mode, an init container after it), and
// the KUBECONFIG and KUBE_API_URL variables in the app containers. It does no I/O and
// keeps no state: the admission webhook, the offline `inject` command and the tests all call
// the same [Injector.Mutate].
//
// Injection is idempotent: everything is found and replaced by name, so a pod that goes
// through the injector twice (webhook reinvocation, a re-applied manifest) is identical to
// one that went through once.
package injector
