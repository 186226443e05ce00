package rbac

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/client-go/util/exec"
	"k8s.io/streaming/pkg/httpstream"

	"github.com/api-access-injector/api-access-injector/injector"
	"github.com/api-access-injector/api-access-injector/internal/accessrecord"
)

// sidecarBinary is where the proxy image keeps api-proxy (the Dockerfile's ENTRYPOINT); the
// image is distroless, so there is no shell and no PATH lookup to rely on.
const sidecarBinary = "/api-proxy"

// Reader reads the records of pods' sidecars from a cluster.
type Reader struct {
	client kubernetes.Interface
	cfg    *rest.Config
}

// NewReader returns a Reader that uses cfg's credentials.
func NewReader(cfg *rest.Config) (*Reader, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &Reader{client: cs, cfg: cfg}, nil
}

// workloadKinds maps what a user may type to a kind whose pods are found by its selector.
var workloadKinds = []struct {
	kind  string
	names []string
}{
	{"Pod", []string{"pod", "pods", "po"}},
	{"Deployment", []string{"deployment", "deployments", "deploy"}},
	{"StatefulSet", []string{"statefulset", "statefulsets", "sts"}},
	{"DaemonSet", []string{"daemonset", "daemonsets", "ds"}},
	{"ReplicaSet", []string{"replicaset", "replicasets", "rs"}},
	{"Job", []string{"job", "jobs"}},
}

// Pods returns the pod ref names (NAME or pod/NAME), or the pods of the workload it names
// (TYPE/NAME), found by the workload's selector, in namespace.
func (r *Reader) Pods(ctx context.Context, namespace, ref string) ([]corev1.Pod, error) {
	typed, name, found := strings.Cut(ref, "/")
	if !found {
		typed, name = "pod", ref
	}
	if name == "" {
		return nil, fmt.Errorf("%q: a name is missing: give NAME or TYPE/NAME", ref)
	}
	kind := ""
	var allowed []string
	for _, k := range workloadKinds {
		allowed = append(allowed, k.names[0])
		if slices.Contains(k.names, strings.ToLower(typed)) || strings.EqualFold(typed, k.kind) {
			kind = k.kind
		}
	}
	if kind == "" {
		return nil, fmt.Errorf("resource type %q: must be one of %s", typed, strings.Join(allowed, ", "))
	}
	get := metav1.GetOptions{}
	var sel *metav1.LabelSelector
	switch kind {
	case "Pod":
		p, err := r.client.CoreV1().Pods(namespace).Get(ctx, name, get)
		if err != nil {
			return nil, err
		}
		return []corev1.Pod{*p}, nil
	case "Deployment":
		o, err := r.client.AppsV1().Deployments(namespace).Get(ctx, name, get)
		if err != nil {
			return nil, err
		}
		sel = o.Spec.Selector
	case "StatefulSet":
		o, err := r.client.AppsV1().StatefulSets(namespace).Get(ctx, name, get)
		if err != nil {
			return nil, err
		}
		sel = o.Spec.Selector
	case "DaemonSet":
		o, err := r.client.AppsV1().DaemonSets(namespace).Get(ctx, name, get)
		if err != nil {
			return nil, err
		}
		sel = o.Spec.Selector
	case "ReplicaSet":
		o, err := r.client.AppsV1().ReplicaSets(namespace).Get(ctx, name, get)
		if err != nil {
			return nil, err
		}
		sel = o.Spec.Selector
	case "Job":
		o, err := r.client.BatchV1().Jobs(namespace).Get(ctx, name, get)
		if err != nil {
			return nil, err
		}
		sel = o.Spec.Selector
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return nil, fmt.Errorf("%s %s/%s: selector: %w", kind, namespace, name, err)
	}
	if s.Empty() {
		return nil, fmt.Errorf("%s %s/%s has no selector to find its pods by", kind, namespace, name)
	}
	list, err := r.client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: s.String()})
	if err != nil {
		return nil, err
	}
	if len(list.Items) == 0 {
		return nil, fmt.Errorf("%s %s/%s has no pods (selector %s)", kind, namespace, name, s)
	}
	return list.Items, nil
}

// Readable returns nil when pod has an api-proxy sidecar that is running, else an error that
// says what is wrong and what to do.
func Readable(pod *corev1.Pod) error {
	ref := "pod " + pod.Namespace + "/" + pod.Name
	var sidecar *corev1.Container
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range cs {
			if cs[i].Name == injector.SidecarName {
				sidecar = &cs[i]
			}
		}
	}
	if sidecar == nil {
		return fmt.Errorf("%s has no %s sidecar: it was not injected (`kubectl apiaccess explain -n %s pod/%s` says why), so nothing recorded its requests",
			ref, injector.SidecarName, pod.Namespace, pod.Name)
	}
	if st, ok := injector.ParseStatus(pod.Annotations); ok && slices.Contains(st.InitContainers, injector.KubeconfigInitName) {
		return fmt.Errorf("%s runs kubectl proxy as its sidecar (the injector's sidecar mode kubectl), which records nothing: only the api-proxy sidecar records requests", ref)
	}
	var status *corev1.ContainerStatus
	for _, ss := range [][]corev1.ContainerStatus{pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses} {
		for i := range ss {
			if ss[i].Name == injector.SidecarName {
				status = &ss[i]
			}
		}
	}
	switch {
	case status == nil:
		return fmt.Errorf("%s: its %s sidecar is not running: it has no status yet (pod phase %q: not scheduled or not started)", ref, injector.SidecarName, pod.Status.Phase)
	case status.State.Running != nil:
		return nil
	case status.State.Waiting != nil:
		w := status.State.Waiting
		return fmt.Errorf("%s: its %s sidecar is not running: waiting (%s)%s", ref, injector.SidecarName, w.Reason, strings.TrimRight(" "+w.Message, " "))
	case status.State.Terminated != nil:
		t := status.State.Terminated
		return fmt.Errorf("%s: its %s sidecar is not running: terminated (%s, exit code %d); what it recorded went with it", ref, injector.SidecarName, t.Reason, t.ExitCode)
	}
	return fmt.Errorf("%s: its %s sidecar is not running", ref, injector.SidecarName)
}

// Record reads what pod's sidecar recorded, running `api-proxy access -o json` in it as
// `kubectl exec -c api-proxy` would (so the caller needs create on pods/exec).
func (r *Reader) Record(ctx context.Context, pod *corev1.Pod) (accessrecord.Record, error) {
	if err := Readable(pod); err != nil {
		return accessrecord.Record{}, err
	}
	cmd := []string{sidecarBinary, "access", "-o", "json"}
	for _, c := range pod.Spec.InitContainers {
		if c.Name == injector.SidecarName && len(c.Command) > 0 {
			cmd[0] = c.Command[0]
		}
	}
	out, errOut, err := r.exec(ctx, pod, cmd)
	ref := "pod " + pod.Namespace + "/" + pod.Name
	if err != nil {
		if s := strings.TrimSpace(errOut); s != "" {
			err = fmt.Errorf("%w: %s", err, s)
		}
		err = fmt.Errorf("%s: running %q in its %s sidecar: %w", ref, strings.Join(cmd, " "), injector.SidecarName, err)
		// The command ran and failed, or the runtime found no such binary.
		var exit utilexec.ExitError
		if errors.As(err, &exit) || strings.Contains(err.Error(), "not found") || strings.Contains(err.Error(), "no such file") {
			err = fmt.Errorf("%w (a sidecar older than the access record does not know that command: upgrade the injector and restart the pod)", err)
		}
		return accessrecord.Record{}, err
	}
	recs, err := accessrecord.Decode(strings.NewReader(out), ref)
	if err != nil {
		return accessrecord.Record{}, err
	}
	if len(recs) != 1 {
		return accessrecord.Record{}, fmt.Errorf("%s: the sidecar printed %d records, want 1", ref, len(recs))
	}
	if recs[0].Pod == "" { // the sidecar knows its pod's name only from a pod-bound token
		recs[0].Pod = pod.Name
	}
	return recs[0], nil
}

// exec runs cmd in pod's sidecar and returns its standard output and error, as kubectl exec
// does: WebSocket first, SPDY when the server or a proxy on the way cannot upgrade to it
// (https://github.com/kubernetes/kubernetes/blob/v1.37.2/staging/src/k8s.io/kubectl/pkg/cmd/exec/exec.go).
func (r *Reader) exec(ctx context.Context, pod *corev1.Pod, cmd []string) (stdout, stderr string, err error) {
	req := r.client.CoreV1().RESTClient().Post().Resource("pods").Namespace(pod.Namespace).Name(pod.Name).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: injector.SidecarName, Command: cmd, Stdout: true, Stderr: true}, clientgoscheme.ParameterCodec)
	spdy, err := remotecommand.NewSPDYExecutor(r.cfg, "POST", req.URL())
	if err != nil {
		return "", "", err
	}
	ws, err := remotecommand.NewWebSocketExecutor(r.cfg, "GET", req.URL().String())
	if err != nil {
		return "", "", err
	}
	ex, err := remotecommand.NewFallbackExecutor(ws, spdy, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})
	if err != nil {
		return "", "", err
	}
	var out, errOut bytes.Buffer
	err = ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &out, Stderr: &errOut})
	return out.String(), errOut.String(), err
}

// Records reads the records of pods, in order. A pod that cannot be read is skipped and its
// error kept in skipped; the error is non-nil only when no pod could be read.
func (r *Reader) Records(ctx context.Context, pods []corev1.Pod) (records []accessrecord.Record, skipped []error, err error) {
	for i := range pods {
		rec, err := r.Record(ctx, &pods[i])
		if err != nil {
			skipped = append(skipped, err)
			continue
		}
		records = append(records, rec)
	}
	if len(records) == 0 {
		if len(skipped) == 1 {
			return nil, nil, skipped[0]
		}
		return nil, nil, fmt.Errorf("none of the %d pods could be read:\n%w", len(pods), errors.Join(skipped...))
	}
	return records, skipped, nil
}
