package injector

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// resourceKeys are the annotations that override the sidecar's resources, in the order they
// are read and reported (the order of userAnnotations), each with the request or limit it sets.
var resourceKeys = []struct {
	key     string
	name    corev1.ResourceName
	limit   bool
	example string
}{
	{ProxyCPURequestAnnotation, corev1.ResourceCPU, false, "100m"},
	{ProxyCPULimitAnnotation, corev1.ResourceCPU, true, "100m"},
	{ProxyMemoryRequestAnnotation, corev1.ResourceMemory, false, "64Mi"},
	{ProxyMemoryLimitAnnotation, corev1.ResourceMemory, true, "64Mi"},
}

// parseResources returns the sidecar's resources: the configuration's, with what the pod's
// annotations override. Each value is parsed as the API server parses quantities
// (resource.ParseQuantity) and must be positive; a request above its limit, whichever of the
// two comes from the pod, is refused too, since the API server would refuse the pod with a
// message about a container the user never wrote. The configuration's maps are shared, not
// copied, when the pod overrides nothing.
func parseResources(r *Refusal, annotations map[string]string, cfg *Config) corev1.ResourceRequirements {
	res := cfg.Sidecar.Resources
	var set [4]*resource.Quantity
	copied := false
	for i, k := range resourceKeys {
		v, ok := annotations[k.key]
		if !ok {
			continue
		}
		q, err := resource.ParseQuantity(v)
		if err != nil || q.Sign() <= 0 {
			r.annotation(k.key, v, fmt.Sprintf("must be a positive quantity, e.g. %q", k.example))
			continue
		}
		set[i] = &q
		if !copied {
			res, copied = *res.DeepCopy(), true
		}
		list := &res.Requests
		if k.limit {
			list = &res.Limits
		}
		if *list == nil {
			*list = corev1.ResourceList{}
		}
		(*list)[k.name] = q
	}
	for i := 0; i < len(resourceKeys); i += 2 {
		reqKey, limKey, name := resourceKeys[i].key, resourceKeys[i+1].key, resourceKeys[i].name
		_, reqAnnotated := annotations[reqKey]
		_, limAnnotated := annotations[limKey]
		//nolint:gosec // set has one entry per resourceKeys entry (4), i+1 < len(resourceKeys)
		if (reqAnnotated && set[i] == nil) || (limAnnotated && set[i+1] == nil) || (!reqAnnotated && !limAnnotated) {
			continue // already refused, or nothing of the pod's to compare
		}
		req, hasReq := res.Requests[name]
		lim, hasLim := res.Limits[name]
		if !hasReq || !hasLim || req.Cmp(lim) <= 0 {
			continue
		}
		if reqAnnotated {
			from := "the injector's configuration"
			if limAnnotated {
				from = limKey
			}
			r.annotation(reqKey, annotations[reqKey], fmt.Sprintf("exceeds the sidecar's %s limit %s (%s); lower the request or raise the limit",
				name, quantityString(annotations, limKey, lim), from))
		} else {
			r.annotation(limKey, annotations[limKey], fmt.Sprintf("is below the sidecar's %s request %s (the injector's configuration); set %s too",
				name, req.String(), reqKey))
		}
	}
	return res
}

// quantityString is a quantity as the user wrote it: the annotation's value when the pod set
// it, else the configuration's, in canonical form.
func quantityString(annotations map[string]string, key string, q resource.Quantity) string {
	if v, ok := annotations[key]; ok {
		return v
	}
	return q.String()
}
