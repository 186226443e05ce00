package explain

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/api-access-injector/api-access-injector/injector"
	"github.com/api-access-injector/api-access-injector/webhook"
)

// Options configure an Explainer.
type Options struct {
	// WebhookConfiguration names the MutatingWebhookConfiguration to read; empty finds the
	// one whose entries are named *.inject.apiaccess.io.
	WebhookConfiguration string
	// ExpiryWarning is how long before a certificate expires that it is reported; default 7 days.
	ExpiryWarning time.Duration
	// DialTimeout bounds the TLS handshake that reads the serving certificate; default 3s.
	DialTimeout time.Duration
	// Now returns the current time; default time.Now.
	Now func() time.Time
}

// Explainer explains the injection of pods in one cluster.
type Explainer struct {
	client kubernetes.Interface
	cfg    *rest.Config
	opts   Options
	// decider is an injector with the default configuration: the decision depends only on
	// the namespace mode, which the webhook configuration carries, and on the annotations.
	decider *injector.Injector
}

// New returns an Explainer for the cluster of cfg.
func New(cfg *rest.Config, o Options) (*Explainer, error) {
	if o.ExpiryWarning == 0 {
		o.ExpiryWarning = 7 * 24 * time.Hour
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = 3 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dc := injector.Config{Sidecar: injector.SidecarConfig{Image: "explain"}}
	dc.Default()
	decider, err := injector.New(dc)
	if err != nil {
		return nil, err
	}
	return &Explainer{client: client, cfg: rest.CopyConfig(cfg), opts: o, decider: decider}, nil
}

func (e *Explainer) now() time.Time { return e.opts.Now() }

// Target is a pod, or a workload's pod template, to explain.
type Target struct {
	Object Object
	// Pod is the pod, or a pod made of the workload's template (metadata and spec).
	Pod *corev1.Pod
	// Live is true for a pod that exists in the cluster.
	Live bool
}

// Explain explains one target.
func (e *Explainer) Explain(ctx context.Context, t Target) (*Report, error) {
	pod := t.Pod
	r := &Report{Object: t.Object, Namespace: Namespace{Name: pod.Namespace}, Webhooks: []Webhook{}}
	for k, v := range pod.Annotations {
		// The user's own keys (and typos of them); not what the injector writes.
		if strings.HasPrefix(k, injector.AnnotationPrefix) && k != injector.KubeconfigAnnotation && k != injector.StatusAnnotation {
			if r.Annotations == nil {
				r.Annotations = map[string]string{}
			}
			r.Annotations[k] = v
		}
	}

	ns, err := e.client.CoreV1().Namespaces().Get(ctx, pod.Namespace, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		ns = &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: pod.Namespace, Labels: map[string]string{namespaceNameLabel: pod.Namespace}}}
		r.Problems = append(r.Problems, fmt.Sprintf("namespace %s does not exist: the answer below is for a namespace without labels", pod.Namespace))
	case err != nil:
		return nil, fmt.Errorf("reading namespace %s: %w", pod.Namespace, err)
	default:
		r.Namespace.Exists = true
	}
	r.Namespace.Label = ns.Labels[injector.InjectionLabel]

	cfg, err := e.webhookConfiguration(ctx)
	if err != nil {
		return nil, err
	}
	r.WebhookConfiguration = cfg.Name
	r.Namespace.Excluded = excludedByName(cfg.Webhooks, ns.Name)
	var applies *admissionregistrationv1.MutatingWebhook
	for i, w := range cfg.Webhooks {
		ev := evaluate(w, ns, pod)
		r.Webhooks = append(r.Webhooks, ev)
		if ev.Applies && applies == nil && strings.HasSuffix(w.Name, entrySuffix) {
			applies = &cfg.Webhooks[i]
			r.Applies = w.Name
		}
	}

	// The injector's own decision: in the mode of the entry that applies, or, when none
	// does, in the mode the namespace label names (which gives the same reasons the webhook
	// would: excluded, disabled, opted out, not opted in).
	mode, modeErr := injector.ParseNamespaceMode(r.Namespace.Label)
	if applies != nil {
		if m, ok := webhook.Paths[entryPath(applies.ClientConfig)]; ok {
			mode, modeErr = m, nil
		}
	}
	r.Decision = e.decide(ns.Name, mode, modeErr, r.Namespace.Excluded, applies != nil, pod)

	if applies != nil {
		r.Health = e.health(ctx, applies.ClientConfig)
	} else if len(cfg.Webhooks) > 0 {
		r.Health = e.health(ctx, cfg.Webhooks[0].ClientConfig)
	}
	if r.Health != nil {
		r.Problems = append(r.Problems, r.Health.Problems...)
	}

	if r.Namespace.Exists {
		r.DryRun = e.dryRun(ctx, pod, t.Live)
	}
	if t.Live {
		r.Running = running(pod)
	}
	e.conclude(r, applies)
	return r, nil
}

// webhookConfiguration reads the injector's MutatingWebhookConfiguration.
func (e *Explainer) webhookConfiguration(ctx context.Context) (*admissionregistrationv1.MutatingWebhookConfiguration, error) {
	api := e.client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	if e.opts.WebhookConfiguration != "" {
		c, err := api.Get(ctx, e.opts.WebhookConfiguration, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("reading the webhook configuration: %w", err)
		}
		return c, nil
	}
	list, err := api.List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing mutating webhook configurations: %w", err)
	}
	var found []string
	var c *admissionregistrationv1.MutatingWebhookConfiguration
	for i := range list.Items {
		if isOurs(&list.Items[i]) {
			c = &list.Items[i]
			found = append(found, c.Name)
		}
	}
	switch len(found) {
	case 0:
		return nil, errors.New("no MutatingWebhookConfiguration has entries named *" + entrySuffix + ": is the injector installed? " +
			"(helm install api-access-injector charts/api-access-injector -n api-access-system --create-namespace)")
	case 1:
		return c, nil
	}
	return nil, fmt.Errorf("several MutatingWebhookConfigurations are the injector's (%s): choose one with --webhook-config", strings.Join(found, ", "))
}

// decide runs the injector's decision and option checks on a copy of the pod.
func (e *Explainer) decide(ns string, mode injector.NamespaceMode, modeErr error, excluded, called bool, pod *corev1.Pod) Decision {
	if excluded {
		return Decision{Reason: fmt.Sprintf("namespace %s is excluded from injection by the webhook configuration (kube-system, kube-node-lease, the injector's own, webhook.excludedNamespaces)", ns)}
	}
	if modeErr != nil {
		// The opt-in entry receives namespaces with any other label value.
		mode = injector.ModeOptIn
	}
	res, err := e.decider.Mutate(injector.Namespace{Name: ns, Mode: mode}, pod.DeepCopy())
	var refusal *injector.Refusal
	switch {
	case errors.As(err, &refusal):
		return Decision{Reason: "the webhook refuses the pod", Refused: refusal.Error()}
	case err != nil:
		return Decision{Reason: err.Error()}
	}
	d := Decision{Inject: res.Inject, Reason: res.Reason, Warnings: res.Warnings}
	if res.Inject && !called {
		// The webhook would inject it but the configuration does not call it: say why not.
		d.Inject = false
		d.Reason += ", but no entry of the webhook configuration calls the webhook for it (see webhooks)"
	}
	return d
}

// dryRun asks the API server to create the pod without storing it.
func (e *Explainer) dryRun(ctx context.Context, pod *corev1.Pod, live bool) *DryRun {
	sent := pod.DeepCopy()
	sent.ResourceVersion, sent.UID, sent.ManagedFields, sent.OwnerReferences = "", "", nil, nil
	sent.CreationTimestamp, sent.DeletionTimestamp, sent.Status = metav1.Time{}, nil, corev1.PodStatus{}
	// Always a generated name: the pod's own may exist (it does for a live pod), and a
	// dry-run stores nothing under the generated one.
	if sent.Name != "" {
		sent.GenerateName = sent.Name + "-"
	}
	if sent.GenerateName == "" {
		sent.GenerateName = "explain-"
	}
	sent.Name = ""
	if live {
		sent.Spec.NodeName = ""
	}
	warnings := &warningRecorder{}
	cfg := rest.CopyConfig(e.cfg)
	cfg.WarningHandler = warnings
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return &DryRun{Error: err.Error()}
	}
	got, err := client.CoreV1().Pods(sent.Namespace).Create(ctx, sent, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	d := &DryRun{Warnings: warnings.get()}
	if err != nil {
		d.Error = err.Error()
		return d
	}
	d.Admitted = true
	_, d.Injected = injector.ParseStatus(got.Annotations)
	d.Changes = changes(sent, got)
	return d
}

type warningRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warningRecorder) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, text)
}

func (w *warningRecorder) get() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.msgs)
}

// running describes a pod that exists.
func running(pod *corev1.Pod) *Running {
	r := &Running{Phase: string(pod.Status.Phase)}
	if s, ok := injector.ParseStatus(pod.Annotations); ok {
		r.Injected, r.Status = true, &s
	}
	for _, cs := range pod.Status.InitContainerStatuses {
		if cs.Name != injector.SidecarName {
			continue
		}
		sc := &Sidecar{Ready: cs.Ready, Started: cs.Started != nil && *cs.Started, Restarts: cs.RestartCount, Image: cs.Image}
		switch {
		case cs.State.Running != nil:
			sc.State = "running since " + cs.State.Running.StartedAt.UTC().Format(time.RFC3339)
		case cs.State.Waiting != nil:
			sc.State = "waiting: " + cs.State.Waiting.Reason
		case cs.State.Terminated != nil:
			sc.State = fmt.Sprintf("terminated: %s (exit code %d)", cs.State.Terminated.Reason, cs.State.Terminated.ExitCode)
		}
		r.Sidecar = sc
	}
	return r
}

// conclude writes the verdict and the problems that follow from comparing the parts.
func (e *Explainer) conclude(r *Report, applies *admissionregistrationv1.MutatingWebhook) {
	r.WouldInject = r.Decision.Inject
	if r.DryRun != nil {
		r.WouldInject = r.DryRun.Injected
	}
	var v string
	switch {
	case r.DryRun != nil && !r.DryRun.Admitted:
		v = "would be refused: " + r.DryRun.Error
	case r.DryRun == nil && r.Decision.Refused != "":
		v = "would be refused: " + r.Decision.Refused
	case r.WouldInject:
		v = "would be injected: " + r.Decision.Reason
	default:
		v = "would not be injected: " + r.Decision.Reason
	}
	r.Verdict = v
	if r.DryRun != nil && r.DryRun.Admitted && r.Decision.Inject && !r.DryRun.Injected && applies != nil {
		fp := "Ignore"
		if applies.FailurePolicy != nil {
			fp = string(*applies.FailurePolicy)
		}
		r.Problems = append(r.Problems, fmt.Sprintf("the webhook should inject this pod, but the API server admitted it without the sidecar: "+
			"its call to %s failed and failurePolicy %s let the pod through (see health)", applies.Name, fp))
		r.Verdict = "would NOT be injected, though it should be: the webhook call fails (failurePolicy " + fp + ")"
	}
	if r.Running != nil && r.Running.Injected && r.Running.Sidecar != nil && !r.Running.Sidecar.Ready && r.Running.Phase == string(corev1.PodRunning) {
		r.Problems = append(r.Problems, fmt.Sprintf("the %s sidecar is not ready (%s): kubectl logs -n %s %s -c %s",
			injector.SidecarName, r.Running.Sidecar.State, r.Object.Namespace, r.Object.Name, injector.SidecarName))
	}
	if r.Running != nil && !r.Running.Injected && r.WouldInject {
		r.Problems = append(r.Problems, "this pod has no sidecar but would get one now: it was created before it opted in, or while the webhook was unreachable; "+
			"re-create it (e.g. kubectl rollout restart of its workload)")
	}
}

// changes lists what admission changed in the pod, by the names of containers, volumes,
// variables and mounts.
func changes(sent, got *corev1.Pod) []Change {
	var out []Change
	ours := func(name string) bool {
		return name == injector.SidecarName || name == injector.TokenVolumeName || name == injector.KubeconfigVolumeName ||
			name == injector.KubeconfigEnvVar || name == injector.KubeAPIURLEnvVar ||
			strings.HasPrefix(name, injector.AnnotationPrefix)
	}
	for _, k := range slices.Sorted(maps.Keys(got.Annotations)) {
		if old, ok := sent.Annotations[k]; !ok || old != got.Annotations[k] {
			out = append(out, Change{Op: op(ok), Path: "metadata.annotations[" + k + "]", Value: short(got.Annotations[k]), Injector: ours(k)})
		}
	}
	if sent.Spec.ServiceAccountName != got.Spec.ServiceAccountName {
		out = append(out, Change{Op: "~", Path: "spec.serviceAccountName", Value: got.Spec.ServiceAccountName})
	}
	out = append(out, diffNamed("spec.volumes", sent.Spec.Volumes, got.Spec.Volumes, func(v corev1.Volume) string { return v.Name },
		func(corev1.Volume) string { return "" }, ours)...)
	for _, list := range []struct {
		path      string
		sent, got []corev1.Container
	}{{"spec.initContainers", sent.Spec.InitContainers, got.Spec.InitContainers}, {"spec.containers", sent.Spec.Containers, got.Spec.Containers}} {
		out = append(out, diffNamed(list.path, list.sent, list.got, func(c corev1.Container) string { return c.Name },
			func(c corev1.Container) string { return c.Image }, ours)...)
		for _, g := range list.got {
			i := slices.IndexFunc(list.sent, func(s corev1.Container) bool { return s.Name == g.Name })
			if i < 0 {
				continue
			}
			s := list.sent[i]
			at := list.path + "[" + g.Name + "]"
			out = append(out, diffNamed(at+".env", s.Env, g.Env, func(e corev1.EnvVar) string { return e.Name },
				func(e corev1.EnvVar) string { return e.Value }, ours)...)
			out = append(out, diffNamed(at+".volumeMounts", s.VolumeMounts, g.VolumeMounts, func(m corev1.VolumeMount) string { return m.Name },
				func(m corev1.VolumeMount) string { return m.MountPath }, ours)...)
		}
	}
	return out
}

func diffNamed[T any](path string, sent, got []T, name func(T) string, value func(T) string, ours func(string) bool) []Change {
	var out []Change
	has := func(list []T, n string) bool {
		return slices.ContainsFunc(list, func(x T) bool { return name(x) == n })
	}
	for _, g := range got {
		if !has(sent, name(g)) {
			out = append(out, Change{Op: "+", Path: path + "[" + name(g) + "]", Value: value(g), Injector: ours(name(g))})
		}
	}
	for _, s := range sent {
		if !has(got, name(s)) {
			out = append(out, Change{Op: "-", Path: path + "[" + name(s) + "]", Injector: ours(name(s)) || strings.HasPrefix(name(s), "kube-api-access-")})
		}
	}
	return out
}

func op(existed bool) string {
	if existed {
		return "~"
	}
	return "+"
}

// short keeps a long value (the status JSON) readable on one line.
func short(v string) string {
	v = strings.ReplaceAll(v, "\n", " ")
	if len(v) > 160 {
		return v[:157] + "..."
	}
	return v
}
