package injector

import (
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
)

// updateSidecar returns ours, the sidecar as the injector builds it now, merged into the
// sidecar an earlier injection left in the pod (existing), which other admission plugins may
// have added to since. The fields the injector sets are ours and win; what others added under
// keys or names the injector does not set stays:
//   - resources: requests, limits and claims of other names (LimitRanger's defaults, which its
//     own validation and a ResourceQuota then rely on);
//   - env and volume mounts of other names (proxy settings, CA bundles), unless a mount
//     would sit on one of our paths;
//   - security context fields the injector leaves unset (seLinuxOptions, appArmorProfile);
//   - an imagePullPolicy of Always: the AlwaysPullImages plugin sets it on every container and
//     refuses any other (https://kubernetes.io/docs/reference/access-authn-authz/admission-controllers/#alwayspullimages).
//
// Merging ours into its own output changes nothing, so a second injection is a no-op. Keys
// an older configuration set and the current one does not are indistinguishable from keys
// others added, and stay too.
func updateSidecar(existing, ours corev1.Container) corev1.Container {
	if existing.ImagePullPolicy == corev1.PullAlways {
		ours.ImagePullPolicy = corev1.PullAlways
	}
	ours.Resources = corev1.ResourceRequirements{
		Limits:   mergeResources(existing.Resources.Limits, ours.Resources.Limits),
		Requests: mergeResources(existing.Resources.Requests, ours.Resources.Requests),
		Claims:   upsertByName(existing.Resources.Claims, ours.Resources.Claims, func(c corev1.ResourceClaim) string { return c.Name }),
	}
	ours.Env = upsertByName(existing.Env, ours.Env, func(e corev1.EnvVar) string { return e.Name })
	others := slices.DeleteFunc(slices.Clone(existing.VolumeMounts), func(m corev1.VolumeMount) bool {
		return slices.ContainsFunc(ours.VolumeMounts, func(o corev1.VolumeMount) bool { return o.MountPath == m.MountPath && o.Name != m.Name })
	})
	ours.VolumeMounts = upsertByName(others, ours.VolumeMounts, func(m corev1.VolumeMount) string { return m.Name })
	ours.SecurityContext = mergeSecurityContext(existing.SecurityContext, ours.SecurityContext)
	return ours
}

// mergeResources returns existing with ours laid over it, or nil when both are empty.
func mergeResources(existing, ours corev1.ResourceList) corev1.ResourceList {
	if len(existing) == 0 && len(ours) == 0 {
		return ours
	}
	out := make(corev1.ResourceList, len(existing)+len(ours))
	maps.Copy(out, existing)
	for name, q := range ours {
		out[name] = q.DeepCopy()
	}
	return out
}

// upsertByName returns existing with each of ours replacing the entry of the same name, in
// place, or appended: others' entries keep their order, ours theirs.
func upsertByName[T any](existing, ours []T, name func(T) string) []T {
	if len(existing) == 0 {
		return ours
	}
	out := slices.Clone(existing)
	for _, o := range ours {
		if k := slices.IndexFunc(out, func(e T) bool { return name(e) == name(o) }); k >= 0 {
			out[k] = o
		} else {
			out = append(out, o)
		}
	}
	return out
}

// mergeSecurityContext returns ours with the fields it leaves unset taken from existing.
func mergeSecurityContext(existing, ours *corev1.SecurityContext) *corev1.SecurityContext {
	if existing == nil || ours == nil {
		return ours
	}
	out := existing.DeepCopy()
	setIfSet(&out.Privileged, ours.Privileged)
	setIfSet(&out.RunAsNonRoot, ours.RunAsNonRoot)
	setIfSet(&out.ReadOnlyRootFilesystem, ours.ReadOnlyRootFilesystem)
	setIfSet(&out.AllowPrivilegeEscalation, ours.AllowPrivilegeEscalation)
	setIfSet(&out.RunAsUser, ours.RunAsUser)
	setIfSet(&out.RunAsGroup, ours.RunAsGroup)
	setIfSet(&out.Capabilities, ours.Capabilities)
	setIfSet(&out.SeccompProfile, ours.SeccompProfile)
	setIfSet(&out.SELinuxOptions, ours.SELinuxOptions)
	setIfSet(&out.WindowsOptions, ours.WindowsOptions)
	setIfSet(&out.ProcMount, ours.ProcMount)
	setIfSet(&out.AppArmorProfile, ours.AppArmorProfile)
	return out
}

// setIfSet sets *dst to src when src is set: a field we set wins, one we leave unset keeps
// what is there.
func setIfSet[T any](dst **T, src *T) {
	if src != nil {
		*dst = src
	}
}
