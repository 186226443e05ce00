package injector

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"
)

// TestReinjectionUpdatesSidecarInPlace plays the API server's reinvocation: after a first
// injection, other admission plugins add to the sidecar (LimitRanger a CPU limit,
// AlwaysPullImages the pull policy, a webhook an env var, a mount and an init container
// before it) and change some of our fields; injecting again must keep the sidecar where it
// is, keep what the others added, and restore what is ours.
func TestReinjectionUpdatesSidecarInPlace(t *testing.T) {
	inj := newInjector(t)
	pod := simplePod(map[string]string{InjectAnnotation: "true"})
	if _, err := inj.Inject("team-a", pod); err != nil {
		t.Fatal(err)
	}
	ours := pod.Spec.InitContainers[0].DeepCopy()

	sc := &pod.Spec.InitContainers[0]
	sc.Resources.Limits[corev1.ResourceCPU] = resource.MustParse("500m")               // LimitRanger's default
	sc.Resources.Limits[corev1.ResourceMemory] = resource.MustParse("1Gi")             // ours: restored
	sc.Resources.Requests[corev1.ResourceEphemeralStorage] = resource.MustParse("1Mi") // another default
	sc.ImagePullPolicy = corev1.PullAlways                                             // AlwaysPullImages
	sc.Env = append(sc.Env, corev1.EnvVar{Name: "HTTPS_PROXY", Value: "http://proxy:3128"})
	sc.VolumeMounts = append(sc.VolumeMounts, corev1.VolumeMount{Name: "ca", MountPath: "/ca"})
	sc.VolumeMounts = append(sc.VolumeMounts, corev1.VolumeMount{Name: "squat", MountPath: TokenMountPath}) // on our path: dropped
	sc.SecurityContext.SELinuxOptions = &corev1.SELinuxOptions{Level: "s0:c1,c2"}
	sc.SecurityContext.RunAsUser = ptr.To[int64](0) // ours: restored
	sc.Args = []string{"--evil"}                    // ours: restored
	pod.Spec.InitContainers = append([]corev1.Container{{Name: "first", Image: "first:1"}}, pod.Spec.InitContainers...)

	if _, err := inj.Mutate(Namespace{Name: "team-a"}, pod); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"first", SidecarName}, containerNamesOf(pod.Spec.InitContainers)); diff != "" {
		t.Fatalf("init containers (-want +got); the sidecar must stay in place:\n%s", diff)
	}
	want := ours
	want.Resources.Limits[corev1.ResourceCPU] = resource.MustParse("500m")
	want.Resources.Requests[corev1.ResourceEphemeralStorage] = resource.MustParse("1Mi")
	want.ImagePullPolicy = corev1.PullAlways
	want.Env = []corev1.EnvVar{{Name: "HTTPS_PROXY", Value: "http://proxy:3128"}}
	want.VolumeMounts = append(want.VolumeMounts, corev1.VolumeMount{Name: "ca", MountPath: "/ca"})
	want.SecurityContext.SELinuxOptions = &corev1.SELinuxOptions{Level: "s0:c1,c2"}
	if diff := cmp.Diff(*want, pod.Spec.InitContainers[1]); diff != "" {
		t.Errorf("sidecar after reinvocation (-want +got):\n%s", diff)
	}

	again := pod.DeepCopy()
	if _, err := inj.Mutate(Namespace{Name: "team-a"}, again); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(pod, again); diff != "" {
		t.Errorf("a third injection changed the pod (-second +third):\n%s", diff)
	}
}

func containerNamesOf(cs []corev1.Container) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}
