package injector

import (
	"fmt"
	"net"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
)

// proxyURL is the proxy's address as the app containers see it.
func proxyURL(port int32) string {
	return "http://127.0.0.1:" + strconv.Itoa(int(port))
}

// wire gives a container the kubeconfig mount and the two variables, and in transparent mode
// (tlsPort not 0) the service-account mount and the in-cluster variables that point at the
// sidecar's TLS listener. A variable the user set is kept, with a warning; one an earlier
// injection set (prev) is updated.
func wire(c *corev1.Container, port, tlsPort int32, prev Status, injected bool) (warnings []string) {
	mounts := []corev1.VolumeMount{{Name: KubeconfigVolumeName, MountPath: KubeconfigMountPath, ReadOnly: true}}
	if tlsPort != 0 {
		mounts = append(mounts, corev1.VolumeMount{Name: ServiceAccountVolumeName, MountPath: TokenMountPath, ReadOnly: true})
	}
	for _, mount := range mounts {
		if i := slices.IndexFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == mount.Name }); i >= 0 {
			c.VolumeMounts[i] = mount
		} else {
			c.VolumeMounts = append(c.VolumeMounts, mount)
		}
	}
	ours := injected && slices.Contains(prev.Containers, c.Name)
	vars := []struct{ name, value, previous string }{
		{KubeconfigEnvVar, kubeconfigPath, kubeconfigPath},
		{KubeAPIURLEnvVar, proxyURL(port), proxyURL(prev.Port)},
	}
	if tlsPort != 0 {
		for _, v := range transparentEnv(tlsPort) {
			previous := ""
			if prev.TransparentPort != 0 {
				previous = envValue(transparentEnv(prev.TransparentPort), v.Name)
			}
			vars = append(vars, struct{ name, value, previous string }{v.Name, v.Value, previous})
		}
	}
	for _, v := range vars {
		i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == v.name })
		switch {
		case i < 0:
			c.Env = append(c.Env, corev1.EnvVar{Name: v.name, Value: v.value})
		case c.Env[i].ValueFrom == nil && c.Env[i].Value == v.value:
		case ours && v.previous != "" && c.Env[i].ValueFrom == nil && c.Env[i].Value == v.previous:
			c.Env[i].Value = v.value
		case tlsPort != 0 && (v.name == KubeconfigEnvVar || v.name == KubeAPIURLEnvVar):
			// The in-cluster variables point at the sidecar all the same: only a client that
			// reads this variable may miss it.
			warnings = append(warnings, fmt.Sprintf("container %q sets %s itself; it was kept, so a client that reads it may not use the %s sidecar (in-cluster configuration still goes through the sidecar: transparent mode)",
				c.Name, v.name, SidecarName))
		default:
			warnings = append(warnings, fmt.Sprintf("container %q sets %s itself; it was kept, so this container may not use the %s sidecar",
				c.Name, v.name, SidecarName))
		}
	}
	return warnings
}

// transparentEnv is what the kubelet sets for the API server's Service, pointed at the
// sidecar's TLS listener on loopback: the KUBERNETES_SERVICE_* variables that client libraries
// read, and the Docker-link style KUBERNETES_PORT* ones, so that no variable of the app's
// names the API server itself. The Service's port is 443 in every cluster, hence the names
// KUBERNETES_PORT_443_TCP*.
func transparentEnv(tlsPort int32) []corev1.EnvVar {
	port := strconv.Itoa(int(tlsPort))
	addr := "tcp://" + net.JoinHostPort(loopbackIP, port)
	return []corev1.EnvVar{
		{Name: ServiceHostEnvVar, Value: loopbackIP},
		{Name: ServicePortEnvVar, Value: port},
		{Name: ServicePortHTTPSEnvVar, Value: port},
		{Name: "KUBERNETES_PORT", Value: addr},
		{Name: "KUBERNETES_PORT_443_TCP", Value: addr},
		{Name: "KUBERNETES_PORT_443_TCP_PROTO", Value: "tcp"},
		{Name: "KUBERNETES_PORT_443_TCP_PORT", Value: port},
		{Name: "KUBERNETES_PORT_443_TCP_ADDR", Value: loopbackIP},
	}
}

// envValue returns the value of the variable name in env, "" if absent.
func envValue(env []corev1.EnvVar, name string) string {
	for _, e := range env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}
