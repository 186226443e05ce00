package patch

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	sigsjson "sigs.k8s.io/json"
)

// apply applies Diff(original, modified) to target and returns the result decoded.
func apply(t *testing.T, original, modified, target string) any {
	t.Helper()
	ops, err := Diff([]byte(original), []byte(modified))
	if err != nil {
		t.Fatal(err)
	}
	return applyOps(t, []byte(target), ops)
}

func decode(t *testing.T, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestDiff(t *testing.T) {
	tests := []struct{ name, a, b string }{
		{"nothing changes", `{"a":[1,2],"b":{"c":"d"}}`, `{"a":[1,2],"b":{"c":"d"}}`},
		{"add, remove, replace keys", `{"a":1,"b":2,"n":null}`, `{"b":3,"c":{"d":[1]},"n":null}`},
		{"keys needing escapes", `{"m":{"a/b":"1","c~d":"2"}}`, `{"m":{"a/b":"3","e/f~g":"4"}}`},
		{"scalar array grows and shrinks", `{"a":[1,2,3],"b":["x"]}`, `{"a":[1,4],"b":["x","y","z"]}`},
		{"type change", `{"a":[1],"b":{"c":1}}`, `{"a":{"x":1},"b":"c"}`},
		{"named: insert at front", `{"l":[{"name":"a","v":1},{"name":"b","v":2}]}`, `{"l":[{"name":"s"},{"name":"a","v":1},{"name":"b","v":3}]}`},
		{"named: insert in the middle and append", `{"l":[{"name":"a"},{"name":"b"}]}`, `{"l":[{"name":"a"},{"name":"x"},{"name":"b"},{"name":"y"}]}`},
		{"named: remove and reorder", `{"l":[{"name":"a"},{"name":"b"},{"name":"c"},{"name":"d"}]}`, `{"l":[{"name":"c"},{"name":"a","v":1},{"name":"e"}]}`},
		{"named: from empty", `{"l":[]}`, `{"l":[{"name":"a"}]}`},
		{"named: to empty", `{"l":[{"name":"a"}]}`, `{"l":[]}`},
		{"duplicate names fall back to indices", `{"l":[{"name":"a"},{"name":"a"}]}`, `{"l":[{"name":"b"},{"name":"a"},{"name":"a"}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := apply(t, tt.a, tt.b, tt.a)
			if diff := cmp.Diff(decode(t, tt.b), got); diff != "" {
				t.Errorf("patch(a) != b (-b +got):\n%s", diff)
			}
		})
	}
}

// TestUnknownFieldsStayInTheirElement is the reason this package exists: the patch is
// computed from round-tripped copies that lack a field, and applied to the real object that
// has it. The field must stay with its container, not move to the one inserted before it.
func TestUnknownFieldsStayInTheirElement(t *testing.T) {
	typed := `{"spec":{"initContainers":[{"name":"migrate","image":"m"}],"containers":[{"name":"app","image":"a"}]}}`
	mutated := `{"spec":{"initContainers":[{"name":"api-proxy","image":"p","restartPolicy":"Always"},{"name":"migrate","image":"m","env":[{"name":"K","value":"v"}]}],` +
		`"containers":[{"name":"app","image":"a","env":[{"name":"K","value":"v"}]}]}}`
	live := `{"spec":{"futureSpecField":true,"initContainers":[{"name":"migrate","image":"m","futureField":{"x":1}}],` +
		`"containers":[{"name":"app","image":"a","futureField":{"y":2}}]}}`
	want := `{"spec":{"futureSpecField":true,"initContainers":[{"name":"api-proxy","image":"p","restartPolicy":"Always"},` +
		`{"name":"migrate","image":"m","futureField":{"x":1},"env":[{"name":"K","value":"v"}]}],` +
		`"containers":[{"name":"app","image":"a","futureField":{"y":2},"env":[{"name":"K","value":"v"}]}]}}`
	if diff := cmp.Diff(decode(t, want), apply(t, typed, mutated, live)); diff != "" {
		t.Errorf("unknown fields moved or lost (-want +got):\n%s", diff)
	}
}

// FuzzDiff checks Diff on any two JSON objects, and where both are pods, that the patch a
// Snapshot derives agrees with it. It also checks AppendJSONString on both inputs.
func FuzzDiff(f *testing.F) {
	f.Add(`{"l":[{"name":"a"}]}`, `{"l":[{"name":"b"},{"name":"a","x":1}]}`)
	f.Add(`[1,{"a":2}]`, `{"a":[null,true,"s"]}`)
	f.Add(`{"metadata":{"annotations":{"a":"1"}},"spec":{"containers":[{"name":"a","env":[{"name":"X"}]}]}}`,
		`{"metadata":{"annotations":{"a":"2","b/c":"3"}},"spec":{"initContainers":[{"name":"s"}],"containers":[{"name":"a","env":[{"name":"Y"},{"name":"X","value":"1"}]}],"volumes":[{"name":"v","emptyDir":{}}]}}`)
	f.Add(`{"spec":{"containers":[{"name":"a"},{"name":"b"}]},"status":{"phase":"x"}}`, `{"metadata":{"name":"n"},"spec":{"containers":[{"name":"b"},{"name":"a","volumeMounts":[{"name":"v"}]}]}}`)
	var s Snapshot
	f.Fuzz(func(t *testing.T, a, b string) {
		for _, str := range []string{a, b} {
			var got, want string
			if err := json.Unmarshal(AppendJSONString(nil, str), &got); err != nil {
				t.Fatalf("AppendJSONString(%q): %v", str, err)
			}
			encoded, _ := json.Marshal(str)
			_ = json.Unmarshal(encoded, &want)
			if got != want {
				t.Errorf("AppendJSONString(%q) decodes to %q, want %q", str, got, want)
			}
		}
		var av, bv any
		if json.Unmarshal([]byte(a), &av) != nil || json.Unmarshal([]byte(b), &bv) != nil {
			return
		}
		_, aObject := av.(map[string]any)
		_, bObject := bv.(map[string]any)
		if !aObject || !bObject {
			return // pods are objects; appliers refuse to replace a root with anything else
		}
		if diff := cmp.Diff(bv, apply(t, a, b, a)); diff != "" {
			t.Errorf("patch(a) != b (-b +got):\n%s", diff)
		}
		var podA, podB corev1.Pod
		if sigsjson.UnmarshalCaseSensitivePreserveInts([]byte(a), &podA) != nil || sigsjson.UnmarshalCaseSensitivePreserveInts([]byte(b), &podB) != nil {
			return
		}
		before, after, derived := derive(t, &s, &podA, func(p *corev1.Pod) { *p = podB })
		checkEquivalent(t, before, before, after, derived)
	})
}
