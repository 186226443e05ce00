// Package webhook is the admission plumbing of api-access-injector, and nothing more: it
// decodes the pod, takes the namespace's injection mode from the path the API server called,
// runs the injector, and answers with a JSON patch and warnings, or a 403 refusal.
//
// It is on the path of every pod creation that opts in, so it is written to cost little more
// than decoding the pod: one parse of the body, the patch derived from what the injector
// changed (package patch), the answer encoded into one pooled buffer (see Handler).
//
// The namespace mode comes from the MutatingWebhookConfiguration: it has one entry per mode,
// each selecting its namespaces by label and calling its own path. The API server evaluates
// those selectors on every admission, so the decision never depends on a cache that could lag
// behind a label change. The namespace defaults (annotations on the Namespace) do come from a
// cache (NamespaceCache); the chart's policies check them again through the API server's own
// view of the namespace, so a stale cache fails closed.
//
// Each admission is logged once at info (decisionLog) and counted in
// apiaccess_injections_total by result, reason (a closed set, injector.Reason and the
// handler's own) and mode.
package webhook
