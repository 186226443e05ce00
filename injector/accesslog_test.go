package injector

import (
	"flag"
	"io"
	"maps"
	"testing"

	"github.com/api-access-injector/api-access-injector/proxy"
)

// TestAccessLogArgs: apiaccess.io/access-log: "true" gives the api-proxy sidecar --access-log,
// which api-proxy's own flag set parses; kubectl proxy, which has no access log, gets nothing.
func TestAccessLogArgs(t *testing.T) {
	for _, tt := range []struct {
		name        string
		annotations map[string]string
		want        bool
	}{
		{"default", nil, false},
		{"access-log", map[string]string{AccessLogAnnotation: "true"}, true},
		{"access-log false", map[string]string{AccessLogAnnotation: "false"}, false},
		{"access-log and read-only", map[string]string{AccessLogAnnotation: "true", ReadOnlyAnnotation: "true"}, true},
	} {
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
			if cfg.AccessLog != tt.want {
				t.Errorf("args %q: access log %v, want %v", args, cfg.AccessLog, tt.want)
			}

			kpod := simplePod(annotations)
			if _, err := newKubectlInjector(t).Mutate(Namespace{Name: "team-a"}, kpod); err != nil {
				t.Fatal(err)
			}
			for _, a := range kpod.Spec.InitContainers[0].Args {
				if a == "--access-log" {
					t.Errorf("kubectl mode got --access-log, which kubectl proxy does not know: %q", kpod.Spec.InitContainers[0].Args)
				}
			}
		})
	}
}

// TestAccessLogValue: only "true" and "false" are taken, as for the other switches.
func TestAccessLogValue(t *testing.T) {
	cfg := testConfig()
	cfg.Default()
	for _, tt := range []struct {
		value string
		want  bool
		ok    bool
	}{{"true", true, true}, {"false", false, true}, {"True", false, false}, {"1", false, false}, {"", false, false}} {
		t.Run(tt.value, func(t *testing.T) {
			o, err := ParseOptions(map[string]string{AccessLogAnnotation: tt.value}, &cfg)
			if !tt.ok {
				assertRefusal(t, err, []string{`annotation apiaccess.io/access-log: invalid value "` + tt.value + `": must be "true" or "false"`}, nil)
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if o.AccessLog != tt.want {
				t.Errorf("AccessLog = %v, want %v", o.AccessLog, tt.want)
			}
		})
	}
}
