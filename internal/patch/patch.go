// Package patch computes the JSON patch (RFC 6902) between two JSON documents, matching the
// elements of Kubernetes "named lists" (containers, volumes, env, volumeMounts, ...) by name.
//
// A diff that compares arrays index by index, as general-purpose JSON diffs do, turns the
// insertion of an element at the front of a list into a field-by-field rewrite of every
// element after it. The API server applies the patch to its own copy of the object, which may
// hold fields this binary's types do not know: those fields would then stay at the old index
// and end up in the wrong container. Matching by name yields one "add" at the right index and
// leaves every other element, with whatever fields it has, where it was.
// (https://github.com/Azure/azure-workload-identity/issues/1312 is the same class of bug.)
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

// Create returns the operations that turn original into modified.
func Create(original, modified []byte) ([]jsonpatch.Operation, error) {
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
// added (see reshape).
func diffNamed(a, b []any, path string, ops []jsonpatch.Operation) []jsonpatch.Operation {
	an, bn := make([]string, len(a)), make([]string, len(b))
	for i, x := range a {
		an[i] = name(x)
	}
	for j, y := range b {
		bn[j] = name(y)
	}
	ops, kept, _ := reshape(path, an, bn, func(j int) (any, error) { return b[j], nil }, ops)
	for j := range b {
		if ai, ok := kept[j]; ok {
			ops = diff(a[ai], b[j], path+"/"+strconv.Itoa(j), ops)
		}
	}
	return ops
}

// reshape emits the operations that turn a named list whose names are an into one whose
// names are bn: the removal of every element not kept (from the end, so that indices stay
// valid), then the addition of every new element at its final index, value(j) giving new
// element j. It returns, by index in the new list, the old index of each kept element: once
// the operations are applied, new element j is that old element, to be diffed in place.
func reshape(path string, an, bn []string, value func(j int) (any, error), ops []jsonpatch.Operation) ([]jsonpatch.Operation, map[int]int, error) {
	kept := keptNames(an, bn) // old index -> new index
	for i := len(an) - 1; i >= 0; i-- {
		if _, ok := kept[i]; !ok {
			ops = append(ops, jsonpatch.NewOperation("remove", path+"/"+strconv.Itoa(i), nil))
		}
	}
	byNew := make(map[int]int, len(kept))
	for i, j := range kept {
		byNew[j] = i
	}
	for j := range bn {
		if _, ok := byNew[j]; ok {
			continue
		}
		v, err := value(j)
		if err != nil {
			return nil, nil, err
		}
		ops = append(ops, jsonpatch.NewOperation("add", path+"/"+strconv.Itoa(j), v))
	}
	return ops, byNew, nil
}

// keptNames pairs equal names of a and b (each list's names unique) that keep their relative
// order: the longest increasing run of a-indices taken in b's order. It maps a-index to b-index.
func keptNames(a, b []string) map[int]int {
	index := make(map[string]int, len(a))
	for i, n := range a {
		index[n] = i
	}
	var pairs [][2]int // (a-index, b-index) of common names in b order
	for j, n := range b {
		if i, ok := index[n]; ok {
			pairs = append(pairs, [2]int{i, j})
		}
	}
	// Longest increasing subsequence of the a-indices, O(n^2): lists here are short.
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
	kept := make(map[int]int, len(pairs))
	for k := best; k >= 0; k = prev[k] {
		kept[pairs[k][0]] = pairs[k][1]
	}
	return kept
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
