//go:build realcluster

package realcluster

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"

	"github.com/api-access-injector/api-access-injector/injector"
	"github.com/api-access-injector/api-access-injector/internal/accessrecord"
	"github.com/api-access-injector/api-access-injector/proxy"
)

// TestAccessRecord reads a running pod's access record as users do,
// `kubectl exec -c api-proxy POD -- /api-proxy access`, with no flag: in the real sidecar
// container (distroless, non-root, no capabilities, read-only root) the command must find the
// server through /proc by itself. The pod asked for the access log, which must show the app's
// requests.
func TestAccessRecord(t *testing.T) {
	ns := newNamespace(t, "e2e-access", nil)
	pod := appPod("app", optIn(injector.AccessLogAnnotation, "true"), "list", "-serve")
	pod.Spec.RestartPolicy = corev1.RestartPolicyAlways
	createPod(t, ns, pod)
	waitPodReady(t, ns, "app")
	checkListed(t, ns, "app") // one list by client-go, one by plain HTTP

	out := execIn(t, ns, "app", injector.SidecarName, "/api-proxy", proxy.AccessCommand, "-o", "json")
	var rec accessrecord.Record
	if err := json.Unmarshal([]byte(out), &rec); err != nil {
		t.Fatalf("api-proxy access -o json printed no record (%v):\n%s", err, out)
	}
	if rec.Namespace != ns || rec.ServiceAccount != "default" || rec.Pod != "app" {
		t.Errorf("record of namespace %q, service account %q, pod %q; want %s, default, app", rec.Namespace, rec.ServiceAccount, rec.Pod, ns)
	}
	var lists int64
	for _, r := range rec.Requests {
		if r.Verb == "list" && r.APIGroup == "" && r.Resource == "pods" && r.Namespace == ns && r.Outcome == accessrecord.Allowed {
			lists = r.Count
		}
	}
	if lists != 2 {
		t.Errorf("the record counts %d allowed lists of pods in %s, want 2:\n%s", lists, ns, out)
	}
	table := execIn(t, ns, "app", injector.SidecarName, "/api-proxy", proxy.AccessCommand)
	if !strings.Contains(table, "allowed") || !strings.Contains(table, "pods") {
		t.Errorf("api-proxy access printed no allowed pods line:\n%s", table)
	}
	t.Logf("kubectl exec -c api-proxy app -- /api-proxy access:\n%s", table)

	var logged int
	for l := range strings.SplitSeq(logs(t, ns, "app", injector.SidecarName), "\n") {
		var v struct{ Msg, Verb, Resource, Namespace, Outcome string }
		if json.Unmarshal([]byte(l), &v) == nil && v.Msg == "request" && v.Verb == "list" && v.Resource == "pods" && v.Outcome == "allowed" {
			logged++
		}
	}
	if logged != 2 {
		t.Errorf("%d access-log lines for the app's lists, want 2; the sidecar's log:\n%s", logged, logs(t, ns, "app", injector.SidecarName))
	}
}

// execIn runs a command in a container, as kubectl exec does, and returns its standard output.
func execIn(t *testing.T, ns, pod, container string, command ...string) string {
	t.Helper()
	req := clientset.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: container, Command: command, Stdout: true, Stderr: true}, clientgoscheme.ParameterCodec)
	exec, err := remotecommand.NewSPDYExecutor(restCfg, http.MethodPost, req.URL())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	if err := exec.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &stdout, Stderr: &stderr}); err != nil {
		t.Fatalf("exec %q in %s/%s -c %s: %v\nstderr: %s", command, ns, pod, container, err, stderr.String())
	}
	return stdout.String()
}
