package injector

import (
	"errors"
	"testing"
)

// FuzzParseOptions: any annotation values are either accepted within their bounds or refused
// with a message naming the annotation; never a panic.
func FuzzParseOptions(f *testing.F) {
	f.Add("8001", "600", "aud", "true", "false", "app,web")
	f.Add("", "-1", "", "TRUE", "1", ",")
	f.Add("99999999999999999999", "1e3", " x", "yes", "no", "a,,b")
	cfg := testConfig()
	cfg.Default()
	f.Fuzz(func(t *testing.T, port, expiration, audience, readOnly, isolate, containers string) {
		annotations := map[string]string{
			ProxyPortAnnotation: port, TokenExpirationSecondsAnnotation: expiration, TokenAudienceAnnotation: audience,
			ReadOnlyAnnotation: readOnly, IsolateTokenAnnotation: isolate, ContainersAnnotation: containers,
		}
		o, err := ParseOptions(annotations, &cfg)
		if err != nil {
			var r *Refusal
			if !errors.As(err, &r) || len(r.Reasons) == 0 {
				t.Fatalf("error %v is not a Refusal with reasons", err)
			}
			return
		}
		if o.ProxyPort < MinProxyPort || o.ProxyPort > MaxProxyPort || o.ProxyPort == cfg.Sidecar.HealthPort {
			t.Errorf("accepted port %d from %q", o.ProxyPort, port)
		}
		if o.TokenExpirationSeconds < MinTokenExpirationSeconds || o.TokenExpirationSeconds > MaxTokenExpirationSeconds {
			t.Errorf("accepted expiration %d from %q", o.TokenExpirationSeconds, expiration)
		}
		for _, c := range o.Containers {
			if c == "" {
				t.Errorf("accepted an empty container name from %q", containers)
			}
		}
	})
}
