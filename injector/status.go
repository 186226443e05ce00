package injector

import (
	"encoding/json"
	"slices"
)

// Status is the JSON value of StatusAnnotation: what the injector added to the pod. It also
// tells a later injection which sidecar, volumes and variables are its own, so that they are
// replaced rather than refused as collisions.
type Status struct {
	// Version of the injector that wrote it.
	Version string `json:"version"`
	// Sidecar is the name of the injected container.
	Sidecar string `json:"sidecar"`
	// InitContainers are the names of the injected init containers other than the sidecar
	// (KubeconfigInitName, in kubectl mode).
	InitContainers []string `json:"initContainers,omitempty"`
	// Volumes are the names of the injected volumes.
	Volumes []string `json:"volumes"`
	// Containers are the containers that got the environment and kubeconfig, in pod order.
	Containers []string `json:"containers"`
	// Port is the loopback port the proxy serves on.
	Port int32 `json:"port"`
	// ReadOnly is true when the proxy lets only reads through.
	ReadOnly bool `json:"readOnly,omitempty"`
	// IsolateToken is true when the app containers' own token mounts were removed.
	IsolateToken bool `json:"isolateToken,omitempty"`
	// TransparentPort is, in transparent mode, the port of the sidecar's TLS listener that the
	// containers' KUBERNETES_SERVICE_PORT names; 0 otherwise.
	TransparentPort int32 `json:"transparentPort,omitempty"`
}

// ParseStatus reads the status annotation of a pod; ok is false when there is none or it is
// not one the injector wrote.
func ParseStatus(annotations map[string]string) (s Status, ok bool) {
	v, found := annotations[StatusAnnotation]
	if !found || json.Unmarshal([]byte(v), &s) != nil || s.Sidecar != SidecarName {
		return Status{}, false
	}
	return s, true
}

func (s Status) String() string {
	b, _ := json.Marshal(s) // cannot fail: plain strings, ints and bools
	return string(b)
}

// owns reports whether an earlier injection recorded the volume or container name as its own.
func (s Status) owns(name string) bool {
	return name == s.Sidecar || slices.Contains(s.Volumes, name) || slices.Contains(s.InitContainers, name)
}
