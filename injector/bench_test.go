package injector

import "testing"

// BenchmarkMutate measures the pure mutation of the benchmark pod (3 containers, ~5 KB).
func BenchmarkMutate(b *testing.B) {
	inj := newInjector(b)
	pod := readPod(b, "testdata/realistic.in.yaml")
	ns := Namespace{Name: pod.Namespace}
	b.ReportAllocs()
	for b.Loop() {
		p := pod.DeepCopy()
		if _, err := inj.Mutate(ns, p); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDeepCopy is the baseline of BenchmarkMutate: the copy it makes of the pod each time.
func BenchmarkDeepCopy(b *testing.B) {
	pod := readPod(b, "testdata/realistic.in.yaml")
	b.ReportAllocs()
	for b.Loop() {
		_ = pod.DeepCopy()
	}
}
