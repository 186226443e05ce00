package injector

import (
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"
)

// tokenVolume is the projected service-account volume of the sidecar: the shape of the
// built-in kube-api-access volume, with our own expiry and audience. Being ours, it works
// with automountServiceAccountToken: false too.
func tokenVolume(opts Options) corev1.Volume {
	return corev1.Volume{
		Name: TokenVolumeName,
		VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			DefaultMode: ptr.To[int32](corev1.ProjectedVolumeSourceDefaultMode),
			Sources: []corev1.VolumeProjection{
				{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
					Path:              "token",
					ExpirationSeconds: ptr.To(opts.TokenExpirationSeconds),
					Audience:          opts.TokenAudience,
				}},
				{ConfigMap: &corev1.ConfigMapProjection{
					LocalObjectReference: corev1.LocalObjectReference{Name: rootCAConfigMap},
					Items:                []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}},
				}},
				{DownwardAPI: &corev1.DownwardAPIProjection{
					Items: []corev1.DownwardAPIVolumeFile{{Path: "namespace", FieldRef: fieldRef("metadata.namespace")}},
				}},
			},
		}},
	}
}

// kubeconfigVolume is the volume of the kubeconfig: an emptyDir that the sidecar fills when
// it starts, so that nothing in the pod's spec or metadata, which patch rights can change,
// feeds what the app loads (a downward-API file of an annotation would stay live). In memory,
// because it is small and needs no node disk; the size limit, which also sizes the tmpfs,
// keeps anyone with the mount from filling the pod's memory through it.
func kubeconfigVolume() corev1.Volume {
	return corev1.Volume{
		Name: KubeconfigVolumeName,
		VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{
			Medium:    corev1.StorageMediumMemory,
			SizeLimit: ptr.To(resource.MustParse(kubeconfigVolumeSize)),
		}},
	}
}

// serviceAccountVolume is transparent mode's volume of the app's service-account files, an
// emptyDir that the sidecar fills when it starts, for the reasons kubeconfigVolume gives.
func serviceAccountVolume() corev1.Volume {
	v := kubeconfigVolume()
	v.Name = ServiceAccountVolumeName
	return v
}

// caVolume is transparent mode's volume of the sidecar's CA and its key, which only the sidecar
// mounts: in memory, so that the key never reaches the node's disk, and it outlives a restart
// of the sidecar, not the pod
// (https://kubernetes.io/docs/concepts/storage/volumes/#emptydir).
func caVolume() corev1.Volume {
	v := kubeconfigVolume()
	v.Name = CAVolumeName
	return v
}

// reservedVolume reports whether a volume name is one the injector adds.
func reservedVolume(name string) bool {
	return name == TokenVolumeName || name == KubeconfigVolumeName || name == ServiceAccountVolumeName || name == CAVolumeName
}

// kubeconfigVolumeSize is far more than a kubeconfig of a few hundred bytes needs.
const kubeconfigVolumeSize = "1Mi"

func fieldRef(path string) *corev1.ObjectFieldSelector {
	return &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: path}
}

// upsertVolume replaces the volume of the same name, in place, or appends it.
func upsertVolume(volumes []corev1.Volume, v corev1.Volume) []corev1.Volume {
	if i := slices.IndexFunc(volumes, func(x corev1.Volume) bool { return x.Name == v.Name }); i >= 0 {
		volumes[i] = v
		return volumes
	}
	return append(volumes, v)
}

// isolateToken removes the built-in service-account token mounts from every container but
// the sidecar, then the volume itself once nothing mounts it.
func isolateToken(spec *corev1.PodSpec) {
	builtin := map[string]bool{}
	for _, v := range spec.Volumes {
		if isBuiltinTokenVolume(v) {
			builtin[v.Name] = true
		}
	}
	if len(builtin) == 0 {
		return
	}
	strip := func(cs []corev1.Container) {
		for i := range cs {
			if cs[i].Name == SidecarName {
				continue
			}
			cs[i].VolumeMounts = slices.DeleteFunc(cs[i].VolumeMounts, func(m corev1.VolumeMount) bool { return builtin[m.Name] })
		}
	}
	strip(spec.InitContainers)
	strip(spec.Containers)
	spec.Volumes = slices.DeleteFunc(spec.Volumes, func(v corev1.Volume) bool { return builtin[v.Name] && !mounted(spec, v.Name) })
}

// isBuiltinTokenVolume recognises the volume that the ServiceAccount admission plugin adds:
// named kube-api-access-<suffix> and projecting a service-account token.
func isBuiltinTokenVolume(v corev1.Volume) bool {
	if !strings.HasPrefix(v.Name, builtinTokenVolumePrefix) || v.Projected == nil {
		return false
	}
	return slices.ContainsFunc(v.Projected.Sources, func(p corev1.VolumeProjection) bool { return p.ServiceAccountToken != nil })
}

func mounted(spec *corev1.PodSpec, volume string) bool {
	uses := func(c corev1.Container) bool {
		return slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == volume })
	}
	return slices.ContainsFunc(spec.InitContainers, uses) || slices.ContainsFunc(spec.Containers, uses) ||
		slices.ContainsFunc(spec.EphemeralContainers, func(e corev1.EphemeralContainer) bool {
			return slices.ContainsFunc(e.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == volume })
		})
}
