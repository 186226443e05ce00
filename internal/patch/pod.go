package patch

import (
	"encoding/json"
	"maps"
	"reflect"
	"slices"
	"strconv"

	"gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"
)

// ForPod returns the operations that turn original into modified: the same patch as Create
// on the two pods' JSON (applied to the same document, it gives the same result), but
// computed by comparing the Go values part by part and marshalling only the parts that
// differ. An admission that changes a few lists of a large pod then costs a fraction of
// decoding both pods into maps and walking them.
func ForPod(original, modified *corev1.Pod) ([]jsonpatch.Operation, error) {
	ma, mb := original.ObjectMeta, modified.ObjectMeta
	ma.Annotations, mb.Annotations = nil, nil
	if original.TypeMeta != modified.TypeMeta || !reflect.DeepEqual(ma, mb) {
		return nil, errFallback
	}
	ops := diffAnnotations(original.Annotations, modified.Annotations, nil)

	// The spec without its named lists as a whole, then each list element by element.
	sa, sb := original.Spec, modified.Spec
	sa.InitContainers, sa.Containers, sa.Volumes = nil, nil, nil
	sb.InitContainers, sb.Containers, sb.Volumes = nil, nil, nil
	var err error
	if !reflect.DeepEqual(sa, sb) {
		if ops, err = diffJSON("/spec", &sa, &sb, ops); err != nil {
			return nil, err
		}
	}
	if ops, err = diffList("/spec/initContainers", original.Spec.InitContainers, modified.Spec.InitContainers, initContainers, ops); err != nil {
		return nil, err
	}
	if ops, err = diffList("/spec/containers", original.Spec.Containers, modified.Spec.Containers, containers, ops); err != nil {
		return nil, err
	}
	if ops, err = diffList("/spec/volumes", original.Spec.Volumes, modified.Spec.Volumes, volumes, ops); err != nil {
		return nil, err
	}
	if !reflect.DeepEqual(original.Status, modified.Status) {
		return diffJSON("/status", &original.Status, &modified.Status, ops)
	}
	return ops, nil
}

// errFallback tells PodPatch to use the whole-document diff.
var errFallback = errFallbackT{}

type errFallbackT struct{}

func (errFallbackT) Error() string { return "patch: pod changed outside the parts ForPod compares" }

// PodPatch is ForPod, falling back to Create on the marshalled pods when a change lies
// outside the parts ForPod compares (type or object metadata other than annotations).
func PodPatch(original, modified *corev1.Pod) ([]jsonpatch.Operation, error) {
	ops, err := ForPod(original, modified)
	if err != errFallback {
		return ops, err
	}
	a, err := json.Marshal(original)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(modified)
	if err != nil {
		return nil, err
	}
	return Create(a, b)
}

// listKind says how to key and compare the elements of one kind of named list.
type listKind[T any] struct {
	name func(*T) string
	// alwaysPresent lists are in the JSON even when empty (as null when nil); the others are
	// omitted when empty.
	alwaysPresent bool
	// diff diffs two elements of the same name; nil diffs them as JSON.
	diff func(path string, a, b *T, ops []jsonpatch.Operation) ([]jsonpatch.Operation, error)
}

var (
	initContainers = listKind[corev1.Container]{name: containerName, diff: diffContainer}
	containers     = listKind[corev1.Container]{name: containerName, diff: diffContainer, alwaysPresent: true}
	volumes        = listKind[corev1.Volume]{name: func(v *corev1.Volume) string { return v.Name }}
	envVars        = listKind[corev1.EnvVar]{name: func(e *corev1.EnvVar) string { return e.Name }}
	mounts         = listKind[corev1.VolumeMount]{name: func(m *corev1.VolumeMount) string { return m.Name }}
)

func containerName(c *corev1.Container) string { return c.Name }

// diffContainer diffs two containers: their env and volumeMounts element by element, the rest
// as a whole.
func diffContainer(path string, a, b *corev1.Container, ops []jsonpatch.Operation) ([]jsonpatch.Operation, error) {
	ca, cb := *a, *b
	ca.Env, ca.VolumeMounts, cb.Env, cb.VolumeMounts = nil, nil, nil, nil
	var err error
	if !reflect.DeepEqual(ca, cb) {
		if ops, err = diffJSON(path, &ca, &cb, ops); err != nil {
			return nil, err
		}
	}
	if ops, err = diffList(path+"/env", a.Env, b.Env, envVars, ops); err != nil {
		return nil, err
	}
	return diffList(path+"/volumeMounts", a.VolumeMounts, b.VolumeMounts, mounts, ops)
}

// diffAnnotations diffs two string maps at /metadata/annotations, as diffObjects would on
// their JSON (an empty map is omitted from a pod's JSON).
func diffAnnotations(a, b map[string]string, ops []jsonpatch.Operation) []jsonpatch.Operation {
	const path = "/metadata/annotations"
	switch {
	case len(a) == 0 && len(b) == 0:
		return ops
	case len(a) == 0:
		return append(ops, jsonpatch.NewOperation("add", path, b))
	case len(b) == 0:
		return append(ops, jsonpatch.NewOperation("remove", path, nil))
	}
	for _, k := range slices.Sorted(maps.Keys(a)) {
		if _, ok := b[k]; !ok {
			ops = append(ops, jsonpatch.NewOperation("remove", path+"/"+escape(k), nil))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(b)) {
		if av, ok := a[k]; !ok {
			ops = append(ops, jsonpatch.NewOperation("add", path+"/"+escape(k), b[k]))
		} else if av != b[k] {
			ops = append(ops, jsonpatch.NewOperation("replace", path+"/"+escape(k), b[k]))
		}
	}
	return ops
}

// diffList diffs a named list as diffNamed would on its JSON, comparing kept elements as Go
// values first. Lists that are empty on either side, or whose names are not unique, are
// diffed as JSON.
func diffList[T any](path string, a, b []T, kind listKind[T], ops []jsonpatch.Operation) ([]jsonpatch.Operation, error) {
	an, bn := names(a, kind.name), names(b, kind.name)
	if len(a) == 0 || len(b) == 0 || an == nil || bn == nil {
		if reflect.DeepEqual(a, b) {
			return ops, nil
		}
		return diffJSONField(path, a, b, kind.alwaysPresent, ops)
	}
	ops, kept, err := reshape(path, an, bn, func(j int) (any, error) {
		raw, err := json.Marshal(&b[j])
		return json.RawMessage(raw), err
	}, ops)
	if err != nil {
		return nil, err
	}
	for j := range b {
		ai, ok := kept[j]
		if !ok || reflect.DeepEqual(a[ai], b[j]) {
			continue
		}
		if kind.diff != nil {
			ops, err = kind.diff(path+"/"+strconv.Itoa(j), &a[ai], &b[j], ops)
		} else {
			ops, err = diffJSON(path+"/"+strconv.Itoa(j), &a[ai], &b[j], ops)
		}
		if err != nil {
			return nil, err
		}
	}
	return ops, nil
}

// diffJSONField diffs a list field as JSON. Unless alwaysPresent, the JSON omits the field
// when the list is empty.
func diffJSONField[T any](path string, a, b []T, alwaysPresent bool, ops []jsonpatch.Operation) ([]jsonpatch.Operation, error) {
	av, bv, err := toJSONValues(a, b)
	if err != nil {
		return nil, err
	}
	if !alwaysPresent {
		switch aEmpty, bEmpty := isEmptyList(av), isEmptyList(bv); {
		case aEmpty && bEmpty:
			return ops, nil
		case aEmpty:
			return append(ops, jsonpatch.NewOperation("add", path, bv)), nil
		case bEmpty:
			return append(ops, jsonpatch.NewOperation("remove", path, nil)), nil
		}
	}
	return diff(av, bv, path, ops), nil
}

func isEmptyList(v any) bool {
	l, ok := v.([]any)
	return v == nil || (ok && len(l) == 0)
}

// diffJSON diffs two values through their JSON.
func diffJSON(path string, a, b any, ops []jsonpatch.Operation) ([]jsonpatch.Operation, error) {
	av, bv, err := toJSONValues(a, b)
	if err != nil {
		return nil, err
	}
	return diff(av, bv, path, ops), nil
}

// toJSONValues turns two Go values into the maps, slices and scalars of their JSON.
func toJSONValues(a, b any) (av, bv any, err error) {
	for _, v := range []struct {
		in  any
		out *any
	}{{a, &av}, {b, &bv}} {
		raw, err := json.Marshal(v.in)
		if err != nil {
			return nil, nil, err
		}
		if err := json.Unmarshal(raw, v.out); err != nil {
			return nil, nil, err
		}
	}
	return av, bv, nil
}

// names returns the elements' names, or nil unless every element has a distinct,
// non-empty name (as diffNamed requires of JSON lists).
func names[T any](xs []T, name func(*T) string) []string {
	out := make([]string, len(xs))
	seen := make(map[string]bool, len(xs))
	for i := range xs {
		n := name(&xs[i])
		if n == "" || seen[n] {
			return nil
		}
		seen[n] = true
		out[i] = n
	}
	return out
}
