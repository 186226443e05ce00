package patch

import (
	"encoding/json"
	"maps"
	"reflect"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Snapshot is a pod as it was before a mutation that changes it in place, kept so that the
// patch can be derived from what the mutation did rather than from a diff of two whole pods.
//
// Taking it copies the pod's struct and clones only what a mutation writes in place: the
// annotations map, the init container, container, volume and hostAliases lists, the pod's
// securityContext (one level: its sysctls list is appended to), and each container's env
// and volumeMounts lists. Everything else is shared with the pod, so a part the mutation left
// alone is the very same memory before and after, and AppendPatch recognises it by identity,
// without looking inside; only the parts that differ are compared and encoded.
//
// The contract this relies on, which the injector keeps: a mutation writes in place only into
// the parts listed above, and replaces anything else by assigning a new value, never by writing
// through a pointer, slice or map it shares with the original (c.SecurityContext = new, never
// c.SecurityContext.RunAsUser = x). The tests check the result against Diff, the whole-
// document diff, on every golden file and fuzz input.
//
// The zero Snapshot is ready to use; one Snapshot serves one pod at a time and may be reused.
type Snapshot struct {
	pod         corev1.Pod
	annotations map[string]string
	containers  []corev1.Container
	volumes     []corev1.Volume
	hostAliases []corev1.HostAlias
	podSecurity corev1.PodSecurityContext
	env         []corev1.EnvVar
	mounts      []corev1.VolumeMount

	w      writer
	an, bn []string
	kept   [2][]int // by list depth: a pod's lists, then a container's
	keys   []string
}

// Take records pod as it is now.
func (s *Snapshot) Take(pod *corev1.Pod) {
	s.pod = *pod
	s.pod.Annotations = nil // no annotations and an empty map are the same JSON
	if len(pod.Annotations) > 0 {
		if s.annotations == nil {
			s.annotations = make(map[string]string, len(pod.Annotations))
		}
		clear(s.annotations)
		maps.Copy(s.annotations, pod.Annotations)
		s.pod.Annotations = s.annotations
	}

	spec := &s.pod.Spec
	s.containers = append(s.containers[:0], spec.InitContainers...)
	s.containers = append(s.containers, spec.Containers...)
	n := len(spec.InitContainers)
	spec.InitContainers = sub(spec.InitContainers, s.containers, 0, n)
	spec.Containers = sub(spec.Containers, s.containers, n, len(s.containers))
	s.volumes = append(s.volumes[:0], spec.Volumes...)
	spec.Volumes = sub(spec.Volumes, s.volumes, 0, len(s.volumes))
	s.hostAliases = append(s.hostAliases[:0], spec.HostAliases...)
	spec.HostAliases = sub(spec.HostAliases, s.hostAliases, 0, len(s.hostAliases))
	if spec.SecurityContext != nil {
		s.podSecurity = *spec.SecurityContext
		spec.SecurityContext = &s.podSecurity
	}

	// Each container's env and mounts, cloned into one buffer each: sized first, so that the
	// sub-slices stay valid.
	var envs, mounts int
	for i := range s.containers {
		envs += len(s.containers[i].Env)
		mounts += len(s.containers[i].VolumeMounts)
	}
	s.env = slices.Grow(s.env[:0], envs)
	s.mounts = slices.Grow(s.mounts[:0], mounts)
	for i := range s.containers {
		c := &s.containers[i]
		k := len(s.env)
		s.env = append(s.env, c.Env...)
		c.Env = sub(c.Env, s.env, k, len(s.env))
		k = len(s.mounts)
		s.mounts = append(s.mounts, c.VolumeMounts...)
		c.VolumeMounts = sub(c.VolumeMounts, s.mounts, k, len(s.mounts))
	}
}

// sub is buf[i:j] (capacity-limited, so that appending to it never writes into buf), or nil
// where the original was nil: nil and empty lists can differ in JSON.
func sub[T any](original, buf []T, i, j int) []T {
	if original == nil {
		return nil
	}
	return buf[i:j:j]
}

// Reset drops the references to the last pod, so that a pooled Snapshot does not keep it alive.
func (s *Snapshot) Reset() {
	s.pod = corev1.Pod{}
	clear(s.annotations)
	clear(s.containers)
	clear(s.volumes)
	clear(s.hostAliases)
	s.podSecurity = corev1.PodSecurityContext{}
	clear(s.env)
	clear(s.mounts)
	clear(s.an)
	clear(s.bn)
	clear(s.keys)
}

// AppendPatch appends to dst the JSON patch (an array of operations) that turns the pod as it
// was when Take was called into modified, which is that pod changed in place, and returns it
// with the number of operations. Applied to the same document, it gives the same result as
// Diff on the two pods' JSON.
func (s *Snapshot) AppendPatch(dst []byte, modified *corev1.Pod) ([]byte, int, error) {
	w := &s.w
	w.reset(append(dst, '['))
	defer func() { w.b = nil }()
	if err := s.diffPod(&s.pod, modified); err != nil {
		return dst, 0, err
	}
	return append(w.b, ']'), w.n, nil
}

// Fields that the comparisons of whole structs skip: the parts compared on their own.
var (
	metaSkip      = skip[metav1.ObjectMeta]("Annotations")
	specSkip      = skip[corev1.PodSpec]("InitContainers", "Containers", "Volumes", "HostAliases", "SecurityContext")
	containerSkip = skip[corev1.Container]("Env", "VolumeMounts")
)

func skip[T any](names ...string) []bool {
	t := reflect.TypeFor[T]()
	out := make([]bool, t.NumField())
	for _, n := range names {
		f, ok := t.FieldByName(n)
		if !ok {
			panic("patch: " + t.String() + " has no field " + n)
		}
		out[f.Index[0]] = true
	}
	return out
}

func (s *Snapshot) diffPod(a, b *corev1.Pod) error {
	if a.TypeMeta != b.TypeMeta || !equalExcept(&a.ObjectMeta, &b.ObjectMeta, metaSkip, func(m *metav1.ObjectMeta) { m.Annotations = nil }) {
		return s.whole(a, b)
	}
	if err := s.diffAnnotations(a.Annotations, b.Annotations); err != nil {
		return err
	}
	if err := s.diffSpecRest(&a.Spec, &b.Spec); err != nil {
		return err
	}
	if err := diffList(s, 0, "/spec/initContainers", a.Spec.InitContainers, b.Spec.InitContainers, &initContainers); err != nil {
		return err
	}
	if err := diffList(s, 0, "/spec/containers", a.Spec.Containers, b.Spec.Containers, &containers); err != nil {
		return err
	}
	if err := diffList(s, 0, "/spec/volumes", a.Spec.Volumes, b.Spec.Volumes, &volumes); err != nil {
		return err
	}
	if !same(reflect.ValueOf(&a.Status).Elem(), reflect.ValueOf(&b.Status).Elem()) && !reflect.DeepEqual(&a.Status, &b.Status) {
		return s.diffJSON("/status", &a.Status, &b.Status)
	}
	return nil
}

// diffSpecRest diffs the spec but for its container and volume lists. It is the same memory
// but for the securityContext and hostAliases, which the Snapshot copied, so those two are
// compared one level down: what transparent mode adds there (the hostAliases, the sysctl) is
// diffed on its own, a list or an object the pod did not have added whole from its Go value.
// Anything else changed, or removed, falls back to the diff of the rest of the spec as JSON.
func (s *Snapshot) diffSpecRest(a, b *corev1.PodSpec) error {
	aliases := sameElements(a.HostAliases, b.HostAliases)
	security := samePointee(a.SecurityContext, b.SecurityContext)
	rest := sameExcept(a, b, specSkip)
	if aliases && security && rest {
		return nil
	}
	if rest && (security || b.SecurityContext != nil) && (aliases || len(b.HostAliases) > 0) {
		if !aliases && !reflect.DeepEqual(a.HostAliases, b.HostAliases) {
			if len(a.HostAliases) == 0 {
				s.w.begin("add", "/spec/hostAliases")
				if err := s.w.value(b.HostAliases); err != nil {
					return err
				}
			} else if err := s.diffJSONField("/spec/hostAliases", a.HostAliases, b.HostAliases, false); err != nil {
				return err
			}
		}
		if !security && !reflect.DeepEqual(a.SecurityContext, b.SecurityContext) {
			if a.SecurityContext == nil {
				s.w.begin("add", "/spec/securityContext")
				return s.w.value(b.SecurityContext)
			}
			return s.diffJSON("/spec/securityContext", a.SecurityContext, b.SecurityContext)
		}
		return nil
	}
	clearLists := func(p *corev1.PodSpec) { p.InitContainers, p.Containers, p.Volumes = nil, nil, nil }
	sa, sb := *a, *b
	clearLists(&sa)
	clearLists(&sb)
	if reflect.DeepEqual(&sa, &sb) {
		return nil
	}
	return s.diffJSON("/spec", &sa, &sb)
}

// whole appends the whole-document diff of two pods: for changes outside the parts that
// AppendPatch compares on its own (type and object metadata other than annotations).
func (s *Snapshot) whole(a, b *corev1.Pod) error {
	ja, err := json.Marshal(a)
	if err != nil {
		return err
	}
	jb, err := json.Marshal(b)
	if err != nil {
		return err
	}
	ops, err := Diff(ja, jb)
	if err != nil {
		return err
	}
	return s.w.ops(ops)
}

// diffAnnotations diffs two string maps at /metadata/annotations, as diffObjects would on
// their JSON (an empty map is omitted from a pod's JSON).
func (s *Snapshot) diffAnnotations(a, b map[string]string) error {
	const path = "/metadata/annotations"
	w := &s.w
	switch {
	case len(a) == 0 && len(b) == 0:
		return nil
	case len(a) == 0:
		w.begin("add", path)
		return w.value(b)
	case len(b) == 0:
		w.begin("remove", path)
		w.noValue()
		return nil
	}
	// Operations in key order, as Diff writes them.
	s.keys = s.keys[:0]
	for k := range a {
		if _, ok := b[k]; !ok {
			s.keys = append(s.keys, k)
		}
	}
	slices.Sort(s.keys)
	for _, k := range s.keys {
		w.begin("remove", path)
		w.key(k)
		w.noValue()
	}
	s.keys = s.keys[:0]
	for k, v := range b {
		if av, ok := a[k]; !ok || av != v {
			s.keys = append(s.keys, k)
		}
	}
	slices.Sort(s.keys)
	for _, k := range s.keys {
		op := "replace"
		if _, ok := a[k]; !ok {
			op = "add"
		}
		w.begin(op, path)
		w.key(k)
		w.stringValue(b[k])
	}
	return nil
}

// listKind says how to key and compare the elements of one kind of named list.
type listKind[T any] struct {
	name func(*T) string
	// alwaysPresent lists are in the JSON even when empty (as null when nil); the others are
	// omitted when empty.
	alwaysPresent bool
	// diff diffs two elements of the same name; nil compares them whole.
	diff func(s *Snapshot, depth int, path string, a, b *T) error
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
func diffContainer(s *Snapshot, depth int, path string, a, b *corev1.Container) error {
	clearLists := func(c *corev1.Container) { c.Env, c.VolumeMounts = nil, nil }
	if !equalExcept(a, b, containerSkip, clearLists) {
		ca, cb := *a, *b
		clearLists(&ca)
		clearLists(&cb)
		if err := s.diffJSON(path, &ca, &cb); err != nil {
			return err
		}
	}
	if err := diffList(s, depth+1, path+"/env", a.Env, b.Env, &envVars); err != nil {
		return err
	}
	return diffList(s, depth+1, path+"/volumeMounts", a.VolumeMounts, b.VolumeMounts, &mounts)
}

// diffList diffs a named list as diffNamed would on its JSON, comparing kept elements as Go
// values first. Lists that are empty on either side, or whose names are not unique, are
// diffed as JSON.
func diffList[T any](s *Snapshot, depth int, path string, a, b []T, kind *listKind[T]) error {
	var okA, okB bool
	s.an, okA = names(s.an[:0], a, kind.name)
	s.bn, okB = names(s.bn[:0], b, kind.name)
	if len(a) == 0 && len(b) > 0 && !kind.alwaysPresent {
		// A list the pod did not have (its JSON omits an empty one), such as the init
		// containers of most pods: added whole, encoded from its elements, rather than through
		// the generic JSON values of both lists.
		s.w.begin("add", path)
		return s.w.value(b)
	}
	if len(a) == 0 || len(b) == 0 || !okA || !okB {
		if equalLists(a, b, kind.alwaysPresent) {
			return nil
		}
		return s.diffJSONField(path, a, b, kind.alwaysPresent)
	}
	kept := keep(s.an, s.bn, s.kept[depth])
	s.kept[depth] = kept
	w := &s.w
	j := len(kept) - 1
	for i := range slices.Backward(a) { // as forRemovals
		for j >= 0 && (kept[j] < 0 || kept[j] > i) {
			j--
		}
		if j >= 0 && kept[j] == i {
			j--
			continue
		}
		w.begin("remove", path)
		w.index(i)
		w.noValue()
	}
	for j, i := range kept {
		if i < 0 {
			w.begin("add", path)
			w.index(j)
			if err := w.value(&b[j]); err != nil {
				return err
			}
		}
	}
	for j, i := range kept {
		if i < 0 || same(reflect.ValueOf(&a[i]).Elem(), reflect.ValueOf(&b[j]).Elem()) {
			continue
		}
		p := path + "/" + strconv.Itoa(j)
		var err error
		switch {
		case kind.diff != nil:
			err = kind.diff(s, depth, p, &a[i], &b[j])
		case !reflect.DeepEqual(&a[i], &b[j]):
			err = s.diffJSON(p, &a[i], &b[j])
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// equalLists reports whether two lists have the same JSON, as far as it matters here.
func equalLists[T any](a, b []T, alwaysPresent bool) bool {
	if len(a) == 0 && len(b) == 0 {
		return !alwaysPresent || (a == nil) == (b == nil)
	}
	return reflect.DeepEqual(a, b)
}

// names appends the elements' names to dst; ok is false unless every element has a distinct,
// non-empty name (as diffNamed requires of JSON lists).
func names[T any](dst []string, xs []T, name func(*T) string) (_ []string, ok bool) {
	for i := range xs {
		n := name(&xs[i])
		if n == "" {
			return dst, false
		}
		dst = append(dst, n)
	}
	if len(dst) <= 16 {
		for i, n := range dst {
			if slices.Contains(dst[:i], n) {
				return dst, false
			}
		}
		return dst, true
	}
	seen := make(map[string]bool, len(dst))
	for _, n := range dst {
		if seen[n] {
			return dst, false
		}
		seen[n] = true
	}
	return dst, true
}

// diffJSONField diffs a list field as JSON. Unless alwaysPresent, the JSON omits the field
// when the list is empty.
func (s *Snapshot) diffJSONField(path string, a, b any, alwaysPresent bool) error {
	av, bv, err := toJSONValues(a, b)
	if err != nil {
		return err
	}
	w := &s.w
	if !alwaysPresent {
		switch aEmpty, bEmpty := isEmptyList(av), isEmptyList(bv); {
		case aEmpty && bEmpty:
			return nil
		case aEmpty:
			w.begin("add", path)
			return w.value(bv)
		case bEmpty:
			w.begin("remove", path)
			w.noValue()
			return nil
		}
	}
	return w.ops(diff(av, bv, path, nil))
}

func isEmptyList(v any) bool {
	l, ok := v.([]any)
	return v == nil || (ok && len(l) == 0)
}

// diffJSON diffs two values through their JSON.
func (s *Snapshot) diffJSON(path string, a, b any) error {
	av, bv, err := toJSONValues(a, b)
	if err != nil {
		return err
	}
	return s.w.ops(diff(av, bv, path, nil))
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

// equalExcept reports whether *a and *b are equal but for the skipped fields: at once when
// every other field is the same memory (what a Snapshot shares with the pod), else by
// reflect.DeepEqual of copies whose skipped fields clearSkipped empties.
func equalExcept[T any](a, b *T, skip []bool, clearSkipped func(*T)) bool {
	if sameExcept(a, b, skip) {
		return true
	}
	ca, cb := *a, *b
	clearSkipped(&ca)
	clearSkipped(&cb)
	return reflect.DeepEqual(&ca, &cb)
}

// sameExcept reports whether every field of *a and *b but the skipped ones is the same (see same).
func sameExcept[T any](a, b *T, skip []bool) bool {
	va, vb := reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem()
	for i := range skip {
		if !skip[i] && !same(va.Field(i), vb.Field(i)) {
			return false
		}
	}
	return true
}

// samePointee reports whether a and b are both nil, or point to structs that are the same
// field by field (see same): a struct the Snapshot copied.
func samePointee[T any](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return same(reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem())
}

// sameElements reports whether two lists are the same element by element (see same): a list
// the Snapshot cloned.
func sameElements[T any](a, b []T) bool {
	if len(a) != len(b) || (a == nil) != (b == nil) {
		return false
	}
	for i := range a {
		if !same(reflect.ValueOf(&a[i]).Elem(), reflect.ValueOf(&b[i]).Elem()) {
			return false
		}
	}
	return true
}

// same reports whether a and b are the same value by identity: equal scalars and strings,
// and pointers, slices and maps to the same memory. It is cheap and conservative: false
// means "compare more closely", not "different".
func same(a, b reflect.Value) bool {
	switch a.Kind() {
	case reflect.Struct:
		for i := range a.NumField() {
			if !same(a.Field(i), b.Field(i)) {
				return false
			}
		}
		return true
	case reflect.Array:
		for i := range a.Len() {
			if !same(a.Index(i), b.Index(i)) {
				return false
			}
		}
		return true
	case reflect.Pointer, reflect.Map, reflect.Chan, reflect.Func, reflect.UnsafePointer:
		return a.UnsafePointer() == b.UnsafePointer()
	case reflect.Slice:
		return a.Len() == b.Len() && a.UnsafePointer() == b.UnsafePointer()
	case reflect.String:
		return a.String() == b.String()
	case reflect.Bool:
		return a.Bool() == b.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return a.Int() == b.Int()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return a.Uint() == b.Uint()
	case reflect.Float32, reflect.Float64:
		return a.Float() == b.Float()
	case reflect.Interface:
		return a.IsNil() && b.IsNil()
	}
	return false
}
