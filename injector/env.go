package injector

import (
	"fmt"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
)

// proxyURL is the proxy's address as the app containers see it.
func proxyURL(port int32) string {
	return "http://127.0.0.1:" + strconv.Itoa(int(port))
}

// wire gives a container the kubeconfig mount and the two variables. A variable the user set
// is kept, with a warning; one an earlier injection set (prev) is updated.
func wire(c *corev1.Container, port int32, prev Status, injected bool) (warnings []string) {
	mount := corev1.VolumeMount{Name: KubeconfigVolumeName, MountPath: KubeconfigMountPath, ReadOnly: true}
	if i := slices.IndexFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == KubeconfigVolumeName }); i >= 0 {
		c.VolumeMounts[i] = mount
	} else {
		c.VolumeMounts = append(c.VolumeMounts, mount)
	}
	ours := injected && slices.Contains(prev.Containers, c.Name)
	for _, v := range []struct{ name, value, previous string }{
		{KubeconfigEnvVar, kubeconfigPath, kubeconfigPath},
		{KubeAPIURLEnvVar, proxyURL(port), proxyURL(prev.Port)},
	} {
		i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == v.name })
		switch {
		case i < 0:
			c.Env = append(c.Env, corev1.EnvVar{Name: v.name, Value: v.value})
		case c.Env[i].ValueFrom == nil && c.Env[i].Value == v.value:
		case ours && c.Env[i].ValueFrom == nil && c.Env[i].Value == v.previous:
			c.Env[i].Value = v.value
		default:
			warnings = append(warnings, fmt.Sprintf("container %q sets %s itself; it was kept, so this container may not use the %s sidecar",
				c.Name, v.name, SidecarName))
		}
	}
	return warnings
}
