package materialize

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// podField resolves a downward-API field path against pod as the kubelet does. forEnv allows
// the fields that only environment variables may use (spec.* and status.*).
func podField(pod *corev1.Pod, path string, forEnv bool) (string, error) {
	if base, key, ok := subscript(path); ok {
		switch base {
		case "metadata.labels":
			return pod.Labels[key], nil
		case "metadata.annotations":
			return pod.Annotations[key], nil
		}
		return "", fmt.Errorf("field path %q is not supported", path)
	}
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "metadata.labels":
		return formatMap(pod.Labels), nil
	case "metadata.annotations":
		return formatMap(pod.Annotations), nil
	}
	if forEnv {
		switch path {
		case "spec.nodeName":
			return pod.Spec.NodeName, nil
		case "spec.serviceAccountName":
			return pod.Spec.ServiceAccountName, nil
		case "status.podIP", "status.podIPs", "status.hostIP", "status.hostIPs":
			// No node runs the pod: its network is this machine's loopback.
			return "127.0.0.1", nil
		}
	}
	return "", fmt.Errorf("field path %q is not supported", path)
}

// subscript splits "metadata.annotations['key']" into its base and key.
func subscript(path string) (base, key string, ok bool) {
	open := strings.Index(path, "['")
	if open < 0 || !strings.HasSuffix(path, "']") {
		return "", "", false
	}
	return path[:open], path[open+2 : len(path)-2], true
}

// formatMap renders labels or annotations as the kubelet does: sorted key="value" lines.
func formatMap(m map[string]string) string {
	keys := sortedKeys(m)
	lines := make([]string, len(keys))
	for i, k := range keys {
		lines[i] = fmt.Sprintf("%v=%q", k, m[k])
	}
	return strings.Join(lines, "\n")
}
