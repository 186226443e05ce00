package explain

import (
	"time"

	"github.com/api-access-injector/api-access-injector/injector"
)

// Report is the answer for one pod or workload. Its JSON form is the `-o json` output.
type Report struct {
	// Object is what was explained.
	Object Object `json:"object"`
	// Verdict is the answer in one sentence.
	Verdict string `json:"verdict"`
	// WouldInject is true when a pod created now gets the sidecar: the dry-run's answer when
	// there is one, else what the configuration says.
	WouldInject bool `json:"wouldInject"`
	// Namespace is the pod's namespace as the webhook configuration sees it.
	Namespace Namespace `json:"namespace"`
	// Annotations are the pod's (or pod template's) annotations under apiaccess.io/.
	Annotations map[string]string `json:"annotations,omitempty"`
	// WebhookConfiguration names the MutatingWebhookConfiguration that was read.
	WebhookConfiguration string `json:"webhookConfiguration,omitempty"`
	// Webhooks are its entries, each evaluated against the pod.
	Webhooks []Webhook `json:"webhooks"`
	// Applies is the name of the entry that calls the webhook for this pod; empty if none.
	Applies string `json:"applies,omitempty"`
	// Decision is what the injector decides once called by that entry (or, when no entry
	// applies, what it would say about the namespace and annotations).
	Decision Decision `json:"decision"`
	// DryRun is the API server's answer to a server-side dry-run create of the pod.
	DryRun *DryRun `json:"dryRun,omitempty"`
	// Health is whether the API server can call the webhook of the entry that applies (or
	// of the first entry).
	Health *Health `json:"health,omitempty"`
	// Running describes a pod that exists: whether it was injected, and its sidecar.
	Running *Running `json:"running,omitempty"`
	// Problems lists what needs attention, each a sentence saying what to do.
	Problems []string `json:"problems,omitempty"`
}

// Object identifies what was explained.
type Object struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Source is "cluster" for an object read from the API server, else the file name.
	Source string `json:"source"`
}

// Namespace is the pod's namespace and its injection label.
type Namespace struct {
	Name string `json:"name"`
	// Label is the value of the apiaccess.io/injection label; empty when absent.
	Label string `json:"label,omitempty"`
	// Exists is false when the namespace was not found.
	Exists bool `json:"exists"`
	// Excluded is true when every entry of the webhook configuration leaves the namespace
	// out by name (kube-system, kube-node-lease, the injector's own, configured extras).
	Excluded bool `json:"excluded"`
}

// Webhook is one entry of the webhook configuration, evaluated against the pod.
type Webhook struct {
	Name string `json:"name"`
	// Path is the path the entry calls, which tells the webhook the namespace's mode.
	Path string `json:"path,omitempty"`
	// Mode is the namespace mode the path stands for ("" is opt-in).
	Mode string `json:"mode"`
	// FailurePolicy is what the API server does when the call fails: Ignore admits the pod
	// without the sidecar, Fail refuses it.
	FailurePolicy string `json:"failurePolicy"`
	// Rules is true when the entry's rules cover pod creation.
	Rules bool `json:"rules"`
	// NamespaceSelector is true when the namespace's labels match.
	NamespaceSelector bool `json:"namespaceSelector"`
	// ObjectSelector is true when the pod's labels match.
	ObjectSelector bool `json:"objectSelector"`
	// MatchConditions are the entry's CEL conditions and their values for this pod.
	MatchConditions []Condition `json:"matchConditions,omitempty"`
	// Applies is true when the API server calls this entry for the pod.
	Applies bool `json:"applies"`
	// Why says, when it does not apply, the first clause that leaves the pod out.
	Why string `json:"why,omitempty"`
}

// Condition is one matchCondition and its value.
type Condition struct {
	Name       string `json:"name"`
	Expression string `json:"expression"`
	// Value is the result; nil when it could not be evaluated (see Error).
	Value *bool  `json:"value,omitempty"`
	Error string `json:"error,omitempty"`
}

// Decision is the injector's own decision, from the namespace mode and the annotations.
type Decision struct {
	Inject bool `json:"inject"`
	// Reason says why.
	Reason string `json:"reason"`
	// Refused is the admission error the pod gets, when it is refused.
	Refused string `json:"refused,omitempty"`
	// Warnings are the admission warnings the pod gets.
	Warnings []string `json:"warnings,omitempty"`
}

// DryRun is the API server's answer to a server-side dry-run create.
type DryRun struct {
	// Admitted is false when the API server refused the pod (see Error).
	Admitted bool `json:"admitted"`
	// Injected is true when the pod came back with the sidecar.
	Injected bool `json:"injected"`
	// Error is the API server's refusal or failure.
	Error string `json:"error,omitempty"`
	// Warnings are the admission warnings it sent back.
	Warnings []string `json:"warnings,omitempty"`
	// Changes are what admission changed in the pod, container by container.
	Changes []Change `json:"changes,omitempty"`
}

// Change is one difference between the pod sent and the pod the dry-run returned.
type Change struct {
	// Op is "+" (added), "-" (removed) or "~" (changed).
	Op string `json:"op"`
	// Path says where, e.g. "initContainers[api-proxy]" or "containers[app].env[KUBECONFIG]".
	Path string `json:"path"`
	// Value is the new value, in short.
	Value string `json:"value,omitempty"`
	// Injector is true when the injector made the change (by the names it owns); false for
	// other admission, such as the ServiceAccount plugin's token volume.
	Injector bool `json:"injector"`
}

// Health is whether the API server can call the webhook.
type Health struct {
	// Service is namespace/name:port of the webhook's Service, or URL its URL.
	Service string `json:"service,omitempty"`
	URL     string `json:"url,omitempty"`
	// ReadyEndpoints and NotReadyEndpoints count the Service's endpoints; nil for a URL.
	ReadyEndpoints    *int `json:"readyEndpoints,omitempty"`
	NotReadyEndpoints *int `json:"notReadyEndpoints,omitempty"`
	// CABundle describes the entry's caBundle.
	CABundle Certificate `json:"caBundle"`
	// ServingCertificate is the certificate the webhook serves, and whether the caBundle
	// verifies it for the name the API server calls.
	ServingCertificate *Certificate `json:"servingCertificate,omitempty"`
	// CABundleVerifies is true when the serving certificate chains to the caBundle for the
	// name the API server calls.
	CABundleVerifies bool `json:"caBundleVerifies"`
	// Healthy is true when nothing below is wrong.
	Healthy bool `json:"healthy"`
	// Problems says what is wrong.
	Problems []string `json:"problems,omitempty"`
}

// Certificate is what matters of a certificate here.
type Certificate struct {
	// Source says where it was read: "caBundle", "tls://host:port", "secret ns/name".
	Source   string    `json:"source,omitempty"`
	Subject  string    `json:"subject,omitempty"`
	DNSNames []string  `json:"dnsNames,omitempty"`
	NotAfter time.Time `json:"notAfter,omitzero"`
	Error    string    `json:"error,omitempty"`
}

// Running describes a pod that exists.
type Running struct {
	// Injected is true when the pod carries the injector's status annotation.
	Injected bool `json:"injected"`
	// Status is that annotation: the injector version, sidecar, volumes, containers, port.
	Status *injector.Status `json:"status,omitempty"`
	// Phase is the pod's phase.
	Phase string `json:"phase,omitempty"`
	// Sidecar is the sidecar's state; nil when the pod has no sidecar status yet.
	Sidecar *Sidecar `json:"sidecar,omitempty"`
}

// Sidecar is the state of the api-proxy container of a running pod.
type Sidecar struct {
	Ready    bool   `json:"ready"`
	Started  bool   `json:"started"`
	Restarts int32  `json:"restarts"`
	State    string `json:"state,omitempty"`
	Image    string `json:"image,omitempty"`
}
