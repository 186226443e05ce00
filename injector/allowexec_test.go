package injector

import (
	"flag"
	"io"
	"maps"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/api-access-injector/api-access-injector/proxy"
)

// filterArgs are the sidecar's arguments that decide what it refuses.
func filterArgs(args []string) []string {
	var out []string
	for _, a := range args {
		if a == "--read-only" || strings.HasPrefix(a, "--reject-paths=") || strings.HasPrefix(a, "--reject-methods=") {
			out = append(out, a)
		}
	}
	return out
}

// TestAllowExecArgs: allow-exec replaces the default --reject-paths (exec and attach) with one
// that rejects nothing, in both sidecar modes, and read-only wins over it.
func TestAllowExecArgs(t *testing.T) {
	readOnlyKubectl := []string{"--reject-methods=^(POST|PUT|PATCH|DELETE)$", "--reject-paths=" + kubectlReadOnlyPaths}
	tests := []struct {
		name        string
		annotations map[string]string
		apiProxy    []string // filter args in api-proxy mode
		kubectl     []string // filter args in kubectl mode
	}{
		{"default refuses exec", nil, nil, nil},
		{"allow-exec", map[string]string{AllowExecAnnotation: "true"}, []string{"--reject-paths=^$"}, []string{"--reject-paths=^$"}},
		{"allow-exec false", map[string]string{AllowExecAnnotation: "false"}, nil, nil},
		{"read-only wins", map[string]string{AllowExecAnnotation: "true", ReadOnlyAnnotation: "true"}, []string{"--read-only"}, readOnlyKubectl},
		{"read-only false with allow-exec", map[string]string{AllowExecAnnotation: "true", ReadOnlyAnnotation: "false"},
			[]string{"--reject-paths=^$"}, []string{"--reject-paths=^$"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, mode := range []struct {
				name string
				inj  *Injector
				want []string
			}{{"api-proxy", newInjector(t), tt.apiProxy}, {"kubectl", newKubectlInjector(t), tt.kubectl}} {
				annotations := map[string]string{InjectAnnotation: "true"}
				maps.Copy(annotations, tt.annotations)
				pod := simplePod(annotations)
				if _, err := mode.inj.Mutate(Namespace{Name: "team-a"}, pod); err != nil {
					t.Fatalf("%s: Mutate: %v", mode.name, err)
				}
				if diff := cmp.Diff(mode.want, filterArgs(pod.Spec.InitContainers[0].Args)); diff != "" {
					t.Errorf("%s: filter args (-want +got):\n%s", mode.name, diff)
				}
			}
		})
	}
}

// TestAllowExecArgsParseWithProxyFlags parses the sidecar's arguments with api-proxy's own flag
// set: with allow-exec the reject-paths list holds only "^$" (so exec and attach pass), without
// it the default (exec and attach), and with read-only too the proxy is read-only.
func TestAllowExecArgsParseWithProxyFlags(t *testing.T) {
	tests := []struct {
		name        string
		annotations map[string]string
		rejectPaths []string
		readOnly    bool
	}{
		{"default", nil, strings.Split(proxy.DefaultRejectPaths, ","), false},
		{"allow-exec", map[string]string{AllowExecAnnotation: "true"}, []string{"^$"}, false},
		{"allow-exec and read-only", map[string]string{AllowExecAnnotation: "true", ReadOnlyAnnotation: "true"},
			strings.Split(proxy.DefaultRejectPaths, ","), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			annotations := map[string]string{InjectAnnotation: "true"}
			maps.Copy(annotations, tt.annotations)
			pod := simplePod(annotations)
			if _, err := newInjector(t).Mutate(Namespace{Name: "team-a"}, pod); err != nil {
				t.Fatal(err)
			}
			args := pod.Spec.InitContainers[0].Args
			cfg := proxy.DefaultConfig()
			fs := flag.NewFlagSet("api-proxy", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			cfg.BindFlags(fs)
			if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
				t.Fatalf("api-proxy refuses the injected args %q: %v (left over: %q)", args, err, fs.Args())
			}
			if diff := cmp.Diff([]any{tt.rejectPaths, tt.readOnly}, []any{cfg.RejectPaths, cfg.ReadOnly}); diff != "" {
				t.Errorf("reject-paths, read-only (-want +got):\n%s", diff)
			}
		})
	}
}

// TestAllowExecValue: only "true" and "false" are taken, as for the other switches.
func TestAllowExecValue(t *testing.T) {
	cfg := testConfig()
	cfg.Default()
	for _, tt := range []struct {
		value string
		want  bool
		ok    bool
	}{{"true", true, true}, {"false", false, true}, {"True", false, false}, {"yes", false, false}, {"", false, false}} {
		t.Run(tt.value, func(t *testing.T) {
			o, err := ParseOptions(map[string]string{AllowExecAnnotation: tt.value}, &cfg)
			if !tt.ok {
				assertRefusal(t, err, []string{`annotation apiaccess.io/allow-exec: invalid value "` + tt.value + `": must be "true" or "false"`}, nil)
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if o.AllowExec != tt.want {
				t.Errorf("AllowExec = %v, want %v", o.AllowExec, tt.want)
			}
		})
	}
}
