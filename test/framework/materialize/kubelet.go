package materialize

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Kubelet plays the kubelet's part for one pod. Build it with New.
type Kubelet struct {
	// Pod is the pod as the API server stored it.
	Pod *corev1.Pod
	// Root is the directory under which volumes and the containers' home directories live.
	Root string

	client      kubernetes.Interface
	serviceHost string
	servicePort string
}

// New returns a Kubelet for pod, talking to the API server of cfg (an identity allowed to
// request tokens for the pod's ServiceAccount and to read the ConfigMaps and Secrets it uses,
// as a node is) and writing under root, which must be an absolute path.
func New(cfg *rest.Config, pod *corev1.Pod, root string) (*Kubelet, error) {
	if pod == nil || pod.Name == "" || pod.Namespace == "" || pod.UID == "" {
		return nil, errors.New("materialize: want a pod as stored by the API server (name, namespace and uid set)")
	}
	if !filepath.IsAbs(root) {
		return nil, fmt.Errorf("materialize: root %q is not an absolute path", root)
	}
	host, port, err := servicePeer(cfg.Host)
	if err != nil {
		return nil, err
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("materialize: building a client: %w", err)
	}
	return &Kubelet{Pod: pod, Root: root, client: client, serviceHost: host, servicePort: port}, nil
}

// servicePeer splits a rest.Config host (a URL or host:port) into what the kubelet sets as
// KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT.
func servicePeer(h string) (host, port string, err error) {
	u, err := url.Parse(h)
	if err != nil || u.Host == "" {
		u, err = url.Parse("https://" + h)
	}
	if err != nil || u.Host == "" {
		return "", "", fmt.Errorf("materialize: API server host %q is not a URL or host:port", h)
	}
	host, port = u.Hostname(), u.Port()
	if port == "" {
		port = "443"
		if u.Scheme == "http" {
			port = "80"
		}
	}
	return host, port, nil
}

// serviceEnv is what the kubelet gives every container for the default namespace's
// kubernetes Service.
func (k *Kubelet) serviceEnv() []corev1.EnvVar {
	return []corev1.EnvVar{
		{Name: "KUBERNETES_SERVICE_HOST", Value: k.serviceHost},
		{Name: "KUBERNETES_SERVICE_PORT", Value: k.servicePort},
		{Name: "KUBERNETES_SERVICE_PORT_HTTPS", Value: k.servicePort},
		{Name: "KUBERNETES_PORT", Value: "tcp://" + net.JoinHostPort(k.serviceHost, k.servicePort)},
	}
}

// VolumeDir is the directory standing in for the volume name.
func (k *Kubelet) VolumeDir(name string) string {
	return filepath.Join(k.Root, "volumes", name)
}

// homeDir is the container's writable home directory (HOME), under root.
func (k *Kubelet) homeDir(container string) string {
	return filepath.Join(k.Root, "home", container)
}

// container finds a container (init or regular) by name.
func (k *Kubelet) container(name string) (*corev1.Container, error) {
	for _, cs := range [][]corev1.Container{k.Pod.Spec.InitContainers, k.Pod.Spec.Containers} {
		for i := range cs {
			if cs[i].Name == name {
				return &cs[i], nil
			}
		}
	}
	return nil, fmt.Errorf("materialize: pod %s/%s has no container %q", k.Pod.Namespace, k.Pod.Name, name)
}
