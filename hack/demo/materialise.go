package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/api-access-injector/api-access-injector/injector"
	"github.com/api-access-injector/api-access-injector/test/framework/materialize"
	"github.com/api-access-injector/api-access-injector/test/framework/testenv"
)

// materialise plays the kubelet's part for the injected pod (test/framework/materialize): it writes
// the pod's volumes, starts the api-proxy binary with the sidecar's args, and runs an app with
// the app container's environment that lists pods through the sidecar.
func materialise(ctx context.Context, cfg *rest.Config, _ *kubernetes.Clientset, pod *corev1.Pod, binDir, work string) error {
	step("Playing the kubelet's part for pod %s/%s: a local simulation, no container runtime", pod.Namespace, pod.Name)
	say("Volumes are written under a directory (the token from the TokenRequest API, with the volume's")
	say("audience and expiry, bound to the pod), and paths under the containers' mounts point there.")
	assets, err := testenv.AssetsDir()
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	res, err := materialize.Run(ctx, materialize.Options{
		Config: cfg, Pod: pod, Root: filepath.Join(work, "pod"),
		ProxyBinary: filepath.Join(binDir, "api-proxy"),
		App:         []string{self},
		Kubectl:     filepath.Join(assets, "kubectl"),
	})
	if res != nil && res.Sidecar != nil {
		say("api-proxy started as the sidecar's spec says: %s", strings.Join(append([]string{"api-proxy"}, res.Sidecar.Argv[1:]...), " "))
	}
	if err != nil {
		if res != nil && res.SidecarLog != "" {
			say("sidecar log:\n%s", res.SidecarLog)
		}
		return err
	}
	say("its startup probe passed; then the app ran with the env of container %q:", res.App.Container)
	for _, key := range []string{injector.KubeconfigEnvVar, injector.KubeAPIURLEnvVar} {
		v, _ := res.App.Getenv(key)
		say("  %s=%s", key, v)
	}
	if path, ok := res.App.Getenv(injector.KubeconfigEnvVar); ok {
		kc, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("reading the kubeconfig the sidecar wrote: %w", err)
		}
		say("the kubeconfig the sidecar wrote into the %s volume before it reported ready:", injector.KubeconfigVolumeName)
		for l := range strings.Lines(string(kc)) {
			say("  | %s", strings.TrimSuffix(l, "\n"))
		}
	}
	fmt.Println()
	say("The app listed the pods of namespace %s through the sidecar:", res.Report.Namespace)
	say("  with client-go, from $KUBECONFIG:     %s", strings.Join(res.Report.ClientGo, ", "))
	say("  with plain HTTP, on $KUBE_API_URL:    %s", strings.Join(res.Report.HTTP, ", "))
	say("  with kubectl get pods:                %s", strings.Join(res.Kubectl, ", "))
	for _, m := range appContainer(pod, res.App.Container).VolumeMounts {
		if strings.HasPrefix(m.Name, "kube-api-access-") || m.Name == injector.TokenVolumeName {
			return fmt.Errorf("the app container mounts the token volume %s", m.Name)
		}
	}
	say("The app itself holds no credential: its container mounts no service-account token.")
	say("api-proxy stopped on SIGTERM and exited 0.")
	fmt.Println()
	fmt.Println("Done. Everything above ran against a real kube-apiserver; only the kubelet's part was simulated.")
	return nil
}

func appContainer(pod *corev1.Pod, name string) corev1.Container {
	for _, c := range pod.Spec.Containers {
		if c.Name == name {
			return c
		}
	}
	return corev1.Container{}
}
