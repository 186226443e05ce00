package patch

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"gomodules.xyz/jsonpatch/v2"
)

// Diff returns the operations that turn the JSON document original into modified, named
// lists matched by name. It is the whole-document reference that the patches of a [Snapshot]
// are checked against in tests and fuzzing, and the fallback a Snapshot uses for the parts of
// a pod it does not compare on its own; pods are patched through a Snapshot.
func Diff(original, modified []byte) ([]jsonpatch.Operation, error) {
	var a, b any
	if err := json.Unmarshal(original, &a); err != nil {
		return nil, fmt.Errorf("decoding original: %w", err)
	}
	if err := json.Unmarshal(modified, &b); err != nil {
		return nil, fmt.Errorf("decoding modified: %w", err)
	}
	return diff(a, b, "", nil), nil
}

func diff(a, b any, path string, ops []jsonpatch.Operation) []jsonpatch.Operation {
	switch av := a.(type) {
	case map[string]any:
		if bv, ok := b.(map[string]any); ok {
			return diffObjects(av, bv, path, ops)
		}
	case []any:
		if bv, ok := b.([]any); ok {
			if named(av) && named(bv) {
				return diffNamed(av, bv, path, ops)
			}
			return diffArrays(av, bv, path, ops)
		}
	default:
		if a == b { // strings, float64s, bools and nil compare by value
			return ops
		}
	}
	return append(ops, jsonpatch.NewOperation("replace", path, b))
}

func diffObjects(a, b map[string]any, path string, ops []jsonpatch.Operation) []jsonpatch.Operation {
	for _, k := range slices.Sorted(maps.Keys(a)) {
		if _, ok := b[k]; !ok {
			ops = append(ops, jsonpatch.NewOperation("remove", path+"/"+escape(k), nil))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(b)) {
		if av, ok := a[k]; ok {
			ops = diff(av, b[k], path+"/"+escape(k), ops)
		} else {
			ops = append(ops, jsonpatch.NewOperation("add", path+"/"+escape(k), b[k]))
		}
	}
	return ops
}

// diffArrays compares unnamed arrays index by index.
func diffArrays(a, b []any, path string, ops []jsonpatch.Operation) []jsonpatch.Operation {
	n := min(len(a), len(b))
	for i := len(a) - 1; i >= n; i-- {
		ops = append(ops, jsonpatch.NewOperation("remove", path+"/"+strconv.Itoa(i), nil))
	}
	for i := range n {
		ops = diff(a[i], b[i], path+"/"+strconv.Itoa(i), ops)
	}
	for i := n; i < len(b); i++ {
		ops = append(ops, jsonpatch.NewOperation("add", path+"/"+strconv.Itoa(i), b[i]))
	}
	return ops
}

// diffNamed compares arrays of objects keyed by their unique "name". The elements present in
// both, in the same relative order, are kept in place and diffed; the others are removed and
// added (see keep).
func diffNamed(a, b []any, path string, ops []jsonpatch.Operation) []jsonpatch.Operation {
	an, bn := make([]string, len(a)), make([]string, len(b))
	for i, x := range a {
		an[i] = name(x)
	}
	for j, y := range b {
		bn[j] = name(y)
	}
	kept := keep(an, bn, nil)
	forRemovals(kept, len(a), func(i int) {
		ops = append(ops, jsonpatch.NewOperation("remove", path+"/"+strconv.Itoa(i), nil))
	})
	for j, i := range kept {
		if i < 0 {
			ops = append(ops, jsonpatch.NewOperation("add", path+"/"+strconv.Itoa(j), b[j]))
		}
	}
	for j, i := range kept {
		if i >= 0 {
			ops = diff(a[i], b[j], path+"/"+strconv.Itoa(j), ops)
		}
	}
	return ops
}

// keep pairs the equal names of a and b (each list's names unique) that keep their relative
// order: the longest increasing run of a-indices taken in b's order. It returns, for each index
// of b, the index in a of the element kept there, or -1 for an element to add, in out (reused).
//
// Applying the patch of a named list is then: remove every element of a that is not kept
// (from the end, so that indices stay valid: forRemovals), add every new element at its final
// index, in increasing order, and diff each kept pair in place.
func keep(a, b []string, out []int) []int {
	out = slices.Grow(out[:0], len(b))[:len(b)]
	var index map[string]int
	if len(a) > 16 { // beyond a few elements, a map beats scanning
		index = make(map[string]int, len(a))
		for i, n := range a {
			index[n] = i
		}
	}
	increasing, last := true, -1
	for j, n := range b {
		i := -1
		if index != nil {
			if k, ok := index[n]; ok {
				i = k
			}
		} else {
			i = slices.Index(a, n)
		}
		out[j] = i
		if i >= 0 {
			increasing = increasing && i > last
			last = i
		}
	}
	if increasing { // the usual case: elements only added or removed, none moved
		return out
	}
	// Longest increasing subsequence of the a-indices, O(n^2): lists here are short.
	var pairs [][2]int // (a-index, b-index) of common names in b order
	for j, i := range out {
		if i >= 0 {
			pairs = append(pairs, [2]int{i, j})
		}
	}
	length := make([]int, len(pairs))
	prev := make([]int, len(pairs))
	best := -1
	for k := range pairs {
		length[k], prev[k] = 1, -1
		for m := range k {
			if pairs[m][0] < pairs[k][0] && length[m]+1 > length[k] {
				length[k], prev[k] = length[m]+1, m
			}
		}
		if best < 0 || length[k] > length[best] {
			best = k
		}
	}
	for j := range out {
		out[j] = -1
	}
	for k := best; k >= 0; k = prev[k] {
		out[pairs[k][1]] = pairs[k][0]
	}
	return out
}

// forRemovals calls remove with each index of the old list (of length n) that kept does not
// keep, from the last to the first.
func forRemovals(kept []int, n int, remove func(i int)) {
	j := len(kept) - 1
	for i := n - 1; i >= 0; i-- {
		// Kept a-indices increase with the b-index: find the largest one not above i.
		for j >= 0 && (kept[j] < 0 || kept[j] > i) {
			j--
		}
		if j >= 0 && kept[j] == i {
			j--
			continue
		}
		remove(i)
	}
}

// named reports whether every element is an object with a string "name", all distinct.
func named(xs []any) bool {
	if len(xs) == 0 {
		return false
	}
	seen := make(map[string]bool, len(xs))
	for _, x := range xs {
		m, ok := x.(map[string]any)
		if !ok {
			return false
		}
		n, ok := m["name"].(string)
		if !ok || seen[n] {
			return false
		}
		seen[n] = true
	}
	return true
}

func name(x any) string {
	n, _ := x.(map[string]any)["name"].(string)
	return n
}

var pointerEscaper = strings.NewReplacer("~", "~0", "/", "~1")

// escape encodes a key as a JSON pointer token (RFC 6901).
func escape(k string) string {
	if !strings.ContainsAny(k, "~/") {
		return k
	}
	return pointerEscaper.Replace(k)
}
