package injector

import (
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
)

// checkIsolated adds to r every projected service-account token for the API server that a
// container other than the sidecar mounts, in a pod that asked for isolate-token: removing the
// built-in kube-api-access mounts (isolateToken) is no isolation if the pod brings its own.
//
// Which audiences are the API server's: a token with no audience is issued for the API
// server's own (--api-audiences, https://kubernetes.io/docs/reference/access-authn-authz/service-accounts-admin/#serviceaccount-token-volume-projection);
// and the audience the sidecar's token uses (Config.TokenAudience, or the pod's
// TokenAudienceAnnotation) is one the API server accepts, or the sidecar could not
// authenticate with it. Every other audience is taken to be another service's (a vault, a
// cloud's token exchange): such tokens stay. The injector cannot know a cluster's other
// --api-audiences values.
func checkIsolated(r *Refusal, pod *corev1.Pod, opts Options, configured string) {
	apiServer := func(audience string) bool {
		return audience == "" || audience == configured || audience == opts.TokenAudience
	}
	for _, v := range pod.Spec.Volumes {
		if v.Projected == nil || isBuiltinTokenVolume(v) {
			continue // the built-in volume is removed from the app containers anyway
		}
		i := slices.IndexFunc(v.Projected.Sources, func(p corev1.VolumeProjection) bool {
			return p.ServiceAccountToken != nil && apiServer(p.ServiceAccountToken.Audience)
		})
		if i < 0 {
			continue
		}
		audience := "no audience, so the API server's own"
		if a := v.Projected.Sources[i].ServiceAccountToken.Audience; a != "" {
			audience = fmt.Sprintf("audience %q, the one the %s sidecar authenticates to the API server with", a, SidecarName)
		}
		for _, c := range containers(pod) {
			if c.Name == SidecarName || !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == v.Name }) {
				continue
			}
			r.because(ReasonRefusedToken).add(`volume %q: a service-account token for the API server (%s) is mounted in container %q, `+
				`but annotation %s: "true" means that no container but the %s sidecar holds a credential for the API server; `+
				`remove the mount, give the token another audience, or remove the %s annotation`,
				v.Name, audience, c.Name, IsolateTokenAnnotation, SidecarName, IsolateTokenAnnotation)
		}
	}
}
