package injector

import (
	"errors"
	"maps"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// TestResourceOverrides: the proxy-* resource annotations replace the configuration's request
// or limit one by one, and bad values are refused naming the key, the value and what is
// allowed. The configuration is the default: requests 10m CPU and 32Mi, limit 64Mi memory.
func TestResourceOverrides(t *testing.T) {
	q := resource.MustParse
	tests := []struct {
		name        string
		annotations map[string]string
		want        corev1.ResourceRequirements
		refusal     []string // the reasons, when refused
	}{
		{"none: the configuration's", nil, corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: q("10m"), corev1.ResourceMemory: q("32Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: q("64Mi")},
		}, nil},
		{"all four", map[string]string{ProxyCPURequestAnnotation: "250m", ProxyCPULimitAnnotation: "1",
			ProxyMemoryRequestAnnotation: "128Mi", ProxyMemoryLimitAnnotation: "256Mi"}, corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: q("250m"), corev1.ResourceMemory: q("128Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceCPU: q("1"), corev1.ResourceMemory: q("256Mi")},
		}, nil},
		{"a memory limit alone, above the request", map[string]string{ProxyMemoryLimitAnnotation: "1Gi"}, corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: q("10m"), corev1.ResourceMemory: q("32Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: q("1Gi")},
		}, nil},
		{"a request equal to the limit", map[string]string{ProxyMemoryRequestAnnotation: "64Mi"}, corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: q("10m"), corev1.ResourceMemory: q("64Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: q("64Mi")},
		}, nil},
		{"not a quantity", map[string]string{ProxyCPURequestAnnotation: "lots"}, corev1.ResourceRequirements{},
			[]string{`annotation apiaccess.io/proxy-cpu-request: invalid value "lots": must be a positive quantity, e.g. "100m"`}},
		{"zero", map[string]string{ProxyMemoryLimitAnnotation: "0"}, corev1.ResourceRequirements{},
			[]string{`annotation apiaccess.io/proxy-memory-limit: invalid value "0": must be a positive quantity, e.g. "64Mi"`}},
		{"negative", map[string]string{ProxyCPULimitAnnotation: "-1"}, corev1.ResourceRequirements{},
			[]string{`annotation apiaccess.io/proxy-cpu-limit: invalid value "-1": must be a positive quantity, e.g. "100m"`}},
		{"with a space", map[string]string{ProxyMemoryRequestAnnotation: "64 Mi"}, corev1.ResourceRequirements{},
			[]string{`annotation apiaccess.io/proxy-memory-request: invalid value "64 Mi": must be a positive quantity, e.g. "64Mi"`}},
		{"a request above the configured limit", map[string]string{ProxyMemoryRequestAnnotation: "128Mi"}, corev1.ResourceRequirements{},
			[]string{`annotation apiaccess.io/proxy-memory-request: invalid value "128Mi": exceeds the sidecar's memory limit 64Mi (the injector's configuration); lower the request or raise the limit`}},
		{"a request above the pod's limit", map[string]string{ProxyCPURequestAnnotation: "2", ProxyCPULimitAnnotation: "500m"}, corev1.ResourceRequirements{},
			[]string{`annotation apiaccess.io/proxy-cpu-request: invalid value "2": exceeds the sidecar's cpu limit 500m (apiaccess.io/proxy-cpu-limit); lower the request or raise the limit`}},
		{"a limit below the configured request", map[string]string{ProxyMemoryLimitAnnotation: "16Mi"}, corev1.ResourceRequirements{},
			[]string{`annotation apiaccess.io/proxy-memory-limit: invalid value "16Mi": is below the sidecar's memory request 32Mi (the injector's configuration); set apiaccess.io/proxy-memory-request too`}},
		{"every one wrong, in order", map[string]string{ProxyCPURequestAnnotation: "x", ProxyCPULimitAnnotation: "y",
			ProxyMemoryRequestAnnotation: "1Gi", ProxyMemoryLimitAnnotation: "z"}, corev1.ResourceRequirements{},
			[]string{`annotation apiaccess.io/proxy-cpu-request: invalid value "x": must be a positive quantity, e.g. "100m"`,
				`annotation apiaccess.io/proxy-cpu-limit: invalid value "y": must be a positive quantity, e.g. "100m"`,
				`annotation apiaccess.io/proxy-memory-limit: invalid value "z": must be a positive quantity, e.g. "64Mi"`}},
	}
	inj := newInjector(t)
	cfg := inj.Config()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			annotations := map[string]string{InjectAnnotation: "true"}
			maps.Copy(annotations, tt.annotations)
			pod := simplePod(annotations)
			_, err := inj.Mutate(Namespace{Name: "team-a"}, pod)
			var refusal *Refusal
			if tt.refusal != nil {
				if !errors.As(err, &refusal) {
					t.Fatalf("Mutate error = %v, want a refusal", err)
				}
				if diff := cmp.Diff(tt.refusal, refusal.Reasons); diff != "" {
					t.Errorf("reasons (-want +got):\n%s", diff)
				}
				if refusal.Why() != ReasonRefusedAnnotation {
					t.Errorf("Why = %s, want %s", refusal.Why(), ReasonRefusedAnnotation)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, pod.Spec.InitContainers[0].Resources); diff != "" {
				t.Errorf("sidecar resources (-want +got):\n%s", diff)
			}
		})
	}
	// The configuration is never changed by a pod's overrides.
	if diff := cmp.Diff(cfg.Sidecar.Resources, inj.Config().Sidecar.Resources); diff != "" {
		t.Errorf("the configuration changed (-before +after):\n%s", diff)
	}
}

// FuzzResourceOverrides: any values of the four resource annotations are either refused,
// each bad one named with its value, or give the sidecar positive quantities, each request
// no greater than its limit; never a panic.
func FuzzResourceOverrides(f *testing.F) {
	f.Add("100m", "1", "64Mi", "128Mi")
	f.Add("", "-1", "0", "1e3")
	f.Add("1Ki", "0.5", "+64Mi", " 1")
	f.Add("1e100", "9223372036854775807", "128Mi", "16Mi")
	f.Add("5", "4", "1Ei", "1Ei")
	cfg := testConfig()
	cfg.Default()
	keys := []string{ProxyCPURequestAnnotation, ProxyCPULimitAnnotation, ProxyMemoryRequestAnnotation, ProxyMemoryLimitAnnotation}
	f.Fuzz(func(t *testing.T, cpuReq, cpuLim, memReq, memLim string) {
		annotations := map[string]string{}
		for i, v := range []string{cpuReq, cpuLim, memReq, memLim} {
			if v != "" {
				annotations[keys[i]] = v
			}
		}
		o, err := ParseOptions(annotations, &cfg)
		if err != nil {
			var r *Refusal
			if !errors.As(err, &r) || len(r.Reasons) == 0 || r.Why() != ReasonRefusedAnnotation {
				t.Fatalf("error %v is not an annotation Refusal with reasons", err)
			}
			for _, reason := range r.Reasons {
				named := false
				for k, v := range annotations {
					named = named || strings.HasPrefix(reason, "annotation "+k+": invalid value "+strconv.Quote(v)+": ")
				}
				if !named {
					t.Errorf("reason %q names no annotation and value", reason)
				}
			}
			return
		}
		for _, list := range []corev1.ResourceList{o.Resources.Requests, o.Resources.Limits} {
			for name, q := range list {
				if q.Sign() <= 0 {
					t.Errorf("accepted %s %s", name, q.String())
				}
			}
		}
		for name, req := range o.Resources.Requests {
			if lim, ok := o.Resources.Limits[name]; ok && req.Cmp(lim) > 0 {
				t.Errorf("accepted %s request %s above its limit %s", name, req.String(), lim.String())
			}
		}
	})
}
