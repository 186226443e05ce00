// Package explain answers "why was this pod (not) injected, and would it be now?" against a
// live cluster: the `api-access-injector explain` command and the `kubectl apiaccess explain`
// plugin.
//
// It reads what the API server itself uses to decide, never a copy: the namespace's labels,
// the live MutatingWebhookConfiguration (namespaceSelector, objectSelector, rules,
// matchConditions evaluated with CEL, failurePolicy), and then asks the API server for a
// server-side dry-run create of the pod, whose answer is the truth that the rest explains.
// It also checks that the webhook can be called: ready endpoints behind its Service, a
// caBundle that verifies the serving certificate, and how long that certificate has left.
// For a pod that exists, it adds what happened to it: the status annotation (injected, by
// which version) and whether its sidecar is ready.
package explain
