package materialize

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestExpand(t *testing.T) {
	vars := map[string]string{"A": "a", "PATH_X": "/x", "EMPTY": ""}
	lookup := func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
	for in, want := range map[string]string{
		"plain":          "plain",
		"$(A)":           "a",
		"pre-$(A)-post":  "pre-a-post",
		"$(A)$(PATH_X)":  "a/x",
		"$(MISSING)":     "$(MISSING)",
		"$$(A)":          "$(A)",
		"$$":             "$",
		"$":              "$",
		"a$b":            "a$b",
		"$(EMPTY)x":      "x",
		"$()":            "$()",
		"$(A":            "$(A",
		"$(A) and $(A":   "a and $(A",
		"--flag=$(A)/$$": "--flag=a/$",
	} {
		if got := expand(in, lookup); got != want {
			t.Errorf("expand(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRemap(t *testing.T) {
	k := &Kubelet{Root: "/root"}
	c := &corev1.Container{VolumeMounts: []corev1.VolumeMount{
		{Name: "sa", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount"},
		{Name: "kc", MountPath: "/var/run/apiaccess/"},
		{Name: "nested", MountPath: "/var/run/apiaccess/deeper", SubPath: "sub"},
	}}
	rm, err := k.remapper(c, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]string{
		"/var/run/apiaccess/kubeconfig": "/root/volumes/kc/kubeconfig",
		"/var/run/apiaccess":            "/root/volumes/kc",
		"/var/run/apiaccess/deeper/x":   "/root/volumes/nested/sub/x",
		"/var/run/apiaccessory":         "/var/run/apiaccessory",
		"--serviceaccount-dir=/var/run/secrets/kubernetes.io/serviceaccount": "--serviceaccount-dir=/root/volumes/sa",
		"name=/var/run/apiaccess/kubeconfig":                                 "name=/var/run/apiaccess/kubeconfig",
		"http://127.0.0.1:8001":                                              "http://127.0.0.1:8001",
		"relative/var/run/apiaccess":                                         "relative/var/run/apiaccess",
	} {
		if got := rm.arg(in); got != want {
			t.Errorf("arg(%q) = %q, want %q", in, got, want)
		}
	}
	if _, err := k.remapper(&corev1.Container{VolumeMounts: []corev1.VolumeMount{{Name: "x", MountPath: "/x", SubPath: "../up"}}}, nil); err == nil {
		t.Error("a subPath leaving the volume was accepted")
	}
}

func TestSetsFlag(t *testing.T) {
	args := []string{"--port=1", "-read-only", "--serviceaccount-dirx=/a"}
	for name, want := range map[string]bool{"port": true, "read-only": true, "serviceaccount-dir": false, "health-port": false} {
		if got := setsFlag(args, name); got != want {
			t.Errorf("setsFlag(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestPodField(t *testing.T) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u",
			Labels:      map[string]string{"b": "2", "a": `say "hi"`},
			Annotations: map[string]string{"apiaccess.io/kubeconfig": "apiVersion: v1\n"}},
		Spec: corev1.PodSpec{ServiceAccountName: "sa"},
	}
	for _, tc := range []struct {
		path    string
		forEnv  bool
		want    string
		wantErr bool
	}{
		{path: "metadata.name", want: "p"},
		{path: "metadata.namespace", want: "ns"},
		{path: "metadata.uid", want: "u"},
		{path: "metadata.labels", want: "a=\"say \\\"hi\\\"\"\nb=\"2\""},
		{path: "metadata.labels['b']", want: "2"},
		{path: "metadata.labels['none']", want: ""},
		{path: "metadata.annotations['apiaccess.io/kubeconfig']", want: "apiVersion: v1\n"},
		{path: "spec.serviceAccountName", forEnv: true, want: "sa"},
		{path: "spec.serviceAccountName", wantErr: true},
		{path: "metadata.generateName", wantErr: true},
	} {
		got, err := podField(pod, tc.path, tc.forEnv)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("podField(%q, env=%v) = %q, %v; want %q, error %v", tc.path, tc.forEnv, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestServicePeer(t *testing.T) {
	for in, want := range map[string][2]string{
		"https://127.0.0.1:6443": {"127.0.0.1", "6443"},
		"127.0.0.1:6443":         {"127.0.0.1", "6443"},
		"https://[::1]:6443":     {"::1", "6443"},
		"https://api.example":    {"api.example", "443"},
	} {
		h, p, err := servicePeer(in)
		if err != nil || h != want[0] || p != want[1] {
			t.Errorf("servicePeer(%q) = %q, %q, %v; want %q", in, h, p, err, want)
		}
	}
}

func TestEnvOrder(t *testing.T) {
	k := &Kubelet{Pod: &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns"}}, serviceHost: "10.0.0.1", servicePort: "443"}
	env, err := k.env(t.Context(), &corev1.Container{Env: []corev1.EnvVar{
		{Name: "KUBERNETES_SERVICE_PORT", Value: "8443"}, // the container's own value wins
		{Name: "NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		{Name: "URL", Value: "https://$(KUBERNETES_SERVICE_HOST):$(KUBERNETES_SERVICE_PORT)/$(NAME)/$(LATER)"},
		{Name: "LATER", Value: "l"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, e := range env {
		got[e.Name] = e.Value
	}
	want := map[string]string{
		"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "8443",
		"KUBERNETES_SERVICE_PORT_HTTPS": "443", "KUBERNETES_PORT": "tcp://10.0.0.1:443",
		"NAME": "p", "URL": "https://10.0.0.1:8443/p/$(LATER)", "LATER": "l",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("env (-want +got):\n%s", d)
	}
}

// TestEmptyDir: an emptyDir is created once, world-writable as the kubelet makes it, and
// kept across WriteVolumes calls (it lives as long as the pod), unlike the volumes that are
// rewritten; a medium this package cannot stand in for is refused.
func TestEmptyDir(t *testing.T) {
	mem := corev1.Volume{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}}
	k := &Kubelet{Root: t.TempDir(), Pod: &corev1.Pod{Spec: corev1.PodSpec{
		Containers: []corev1.Container{{Name: "app", VolumeMounts: []corev1.VolumeMount{{Name: "scratch", MountPath: "/scratch"}}}},
		Volumes:    []corev1.Volume{mem},
	}}}
	if _, err := k.WriteVolumes(t.Context()); err != nil {
		t.Fatal(err)
	}
	dir := k.VolumeDir("scratch")
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o777 {
		t.Fatalf("emptyDir mode %v, %v; want 0777", fi.Mode().Perm(), err)
	}
	if err := os.WriteFile(filepath.Join(dir, "kubeconfig"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := k.WriteVolumes(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "kubeconfig")); err != nil {
		t.Errorf("a second WriteVolumes emptied the emptyDir: %v", err)
	}
	k.Pod.Spec.Volumes[0].EmptyDir.Medium = corev1.StorageMediumHugePages
	if _, err := k.WriteVolumes(t.Context()); err == nil || !strings.Contains(err.Error(), `emptyDir medium "HugePages"`) {
		t.Errorf("WriteVolumes with medium HugePages: %v, want a refusal naming it", err)
	}
}
