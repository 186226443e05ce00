package injector

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// FuzzParseOptions: any annotation values are either accepted within their bounds, spelled
// the one way an integer may be spelled, or refused with a message naming the annotation;
// an extra key under apiaccess.io/ that is not a known one is always refused; never a panic.
func FuzzParseOptions(f *testing.F) {
	f.Add("8001", "600", "aud", "true", "false", "app,web", "")
	f.Add("", "-1", "", "TRUE", "1", ",", "apiaccess.io/readonly")
	f.Add("99999999999999999999", "1e3", " x", "yes", "no", "a,,b", "apiaccess.io/status")
	// Spellings strconv.ParseInt accepts and the contract does not.
	f.Add("+8001", "0600", "aud", "true", "true", "app", "apiaccess.io/kubeconfig")
	f.Add("08001", "+600", "aud", "false", "false", "app", "example.com/x")
	f.Add(" 8001", "600 ", "aud", "false", "false", "app", "apiaccess.io/")
	f.Add("65535", "86400", "aud", "false", "false", "app", "apiaccess.io/proxy-port")
	cfg := testConfig()
	cfg.Default()
	known := append(UserAnnotations(), writtenAnnotations...)
	f.Fuzz(func(t *testing.T, port, expiration, audience, readOnly, isolate, containers, extra string) {
		annotations := map[string]string{
			ProxyPortAnnotation: port, TokenExpirationSecondsAnnotation: expiration, TokenAudienceAnnotation: audience,
			ReadOnlyAnnotation: readOnly, IsolateTokenAnnotation: isolate, ContainersAnnotation: containers,
		}
		if _, ok := annotations[extra]; !ok && extra != "" {
			annotations[extra] = "x"
		}
		o, err := ParseOptions(annotations, &cfg)
		unknown := strings.HasPrefix(extra, AnnotationPrefix) && !slices.Contains(known, extra)
		if err != nil {
			var r *Refusal
			if !errors.As(err, &r) || len(r.Reasons) == 0 {
				t.Fatalf("error %v is not a Refusal with reasons", err)
			}
			if unknown && !slices.Contains(r.Reasons, UnknownAnnotationMessage(extra)) {
				t.Errorf("unknown key %q not named in %q", extra, r.Reasons)
			}
			return
		}
		if unknown {
			t.Errorf("accepted unknown key %q", extra)
		}
		if o.ProxyPort < MinProxyPort || o.ProxyPort > MaxProxyPort || o.ProxyPort == cfg.Sidecar.HealthPort {
			t.Errorf("accepted port %d from %q", o.ProxyPort, port)
		}
		if strconv.Itoa(int(o.ProxyPort)) != port {
			t.Errorf("accepted port %q, which is not spelled as %d", port, o.ProxyPort)
		}
		if o.TokenExpirationSeconds < MinTokenExpirationSeconds || o.TokenExpirationSeconds > MaxTokenExpirationSeconds {
			t.Errorf("accepted expiration %d from %q", o.TokenExpirationSeconds, expiration)
		}
		if strconv.FormatInt(o.TokenExpirationSeconds, 10) != expiration {
			t.Errorf("accepted expiration %q, which is not spelled as %d", expiration, o.TokenExpirationSeconds)
		}
		for _, c := range o.Containers {
			if c == "" {
				t.Errorf("accepted an empty container name from %q", containers)
			}
		}
		if o.ReadOnly && !o.IsolateToken {
			t.Errorf("a read-only pod keeps its own token (read-only %q, isolate-token %q)", readOnly, isolate)
		}
	})
}
