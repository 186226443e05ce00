package e2e

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/api-access-injector/api-access-injector/injector"
)

// TestReadOnlyKeepsNoCredential: through the API server (whose ServiceAccount admission plugin
// adds the kube-api-access volume to every container), a read-only pod comes out with no
// service-account token in any container but the sidecar, without asking for isolate-token;
// asking for read-only with isolate-token "false" is refused, naming both annotations.
func TestReadOnlyKeepsNoCredential(t *testing.T) {
	ns := newNamespace(t, nil)
	p := appPod("read-only", map[string]string{injector.InjectAnnotation: "true", injector.ReadOnlyAnnotation: "true"})
	p.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "registry.example.com/init:1", SecurityContext: restrictedContainer()}}
	pod, _ := mustCreatePod(t, ns, p)
	assertInjected(t, pod)
	if got := tokenMounts(pod); len(got) != 0 {
		t.Errorf("a read-only pod's containers mount service-account tokens: %q", got)
	}
	status, ok := injector.ParseStatus(pod.Annotations)
	if !ok || !status.ReadOnly || !status.IsolateToken {
		t.Errorf("status annotation %q: want readOnly and isolateToken", pod.Annotations[injector.StatusAnnotation])
	}
	if !slices.Contains(pod.Spec.InitContainers[0].Args, "--read-only") {
		t.Errorf("sidecar args %q lack --read-only", pod.Spec.InitContainers[0].Args)
	}

	p = appPod("read-only-with-token", map[string]string{injector.InjectAnnotation: "true",
		injector.ReadOnlyAnnotation: "true", injector.IsolateTokenAnnotation: "false"})
	_, _, err := createPod(t, ns, p, metav1.CreateOptions{})
	var s apierrors.APIStatus
	if !apiStatus(err, &s) || s.Status().Code != http.StatusForbidden {
		t.Fatalf("create error = %v, want a 403 from the webhook", err)
	}
	want := `annotation apiaccess.io/isolate-token: invalid value "false": ` + injector.ReadOnlyIsolateTokenAdvice
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q\ndoes not contain %q", err, want)
	}
}

// tokenMounts lists "container/volume" for every mount, in a container other than the sidecar,
// of a projected volume holding a service-account token.
func tokenMounts(pod *corev1.Pod) []string {
	tokenVolumes := map[string]bool{}
	for _, v := range pod.Spec.Volumes {
		if v.Projected != nil && slices.ContainsFunc(v.Projected.Sources, func(s corev1.VolumeProjection) bool { return s.ServiceAccountToken != nil }) {
			tokenVolumes[v.Name] = true
		}
	}
	var out []string
	for _, c := range slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers) {
		for _, m := range c.VolumeMounts {
			if tokenVolumes[m.Name] && c.Name != injector.SidecarName {
				out = append(out, c.Name+"/"+m.Name)
			}
		}
	}
	return out
}
