package injector

import (
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestIntegersAreParsedStrictly(t *testing.T) {
	tests := []struct {
		key, value string
		ok         bool
	}{
		{ProxyPortAnnotation, "8001", true},
		{ProxyPortAnnotation, "1024", true},
		{ProxyPortAnnotation, "65535", true},
		{ProxyPortAnnotation, "+8001", false},
		{ProxyPortAnnotation, "08001", false},
		{ProxyPortAnnotation, " 8001", false},
		{ProxyPortAnnotation, "8001 ", false},
		{ProxyPortAnnotation, "8_001", false},
		{ProxyPortAnnotation, "0x1f41", false},
		{ProxyPortAnnotation, "8001.0", false},
		{ProxyPortAnnotation, "-8001", false},
		{ProxyPortAnnotation, "0", false},
		{ProxyPortAnnotation, "99999999999999999999999", false},
		{TokenExpirationSecondsAnnotation, "600", true},
		{TokenExpirationSecondsAnnotation, "86400", true},
		{TokenExpirationSecondsAnnotation, "+600", false},
		{TokenExpirationSecondsAnnotation, "0600", false},
		{TokenExpirationSecondsAnnotation, "600\n", false},
	}
	cfg := testConfig()
	cfg.Default()
	for _, tt := range tests {
		t.Run(tt.key+"="+strconv.Quote(tt.value), func(t *testing.T) {
			o, err := ParseOptions(map[string]string{tt.key: tt.value}, &cfg)
			lo, hi, got := int64(MinProxyPort), int64(MaxProxyPort), int64(o.ProxyPort)
			if tt.key == TokenExpirationSecondsAnnotation {
				lo, hi, got = MinTokenExpirationSeconds, MaxTokenExpirationSeconds, o.TokenExpirationSeconds
			}
			if !tt.ok {
				// The message is the one integers always had.
				want := "annotation " + tt.key + ": invalid value " + strconv.Quote(tt.value) + ": must be an integer from " +
					strconv.FormatInt(lo, 10) + " to " + strconv.FormatInt(hi, 10)
				assertRefusal(t, err, []string{want}, nil)
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if strconv.FormatInt(got, 10) != tt.value {
				t.Errorf("parsed %d from %q", got, tt.value)
			}
		})
	}
}

func TestUnknownAnnotationKeys(t *testing.T) {
	const known = "the keys users set are apiaccess.io/inject, apiaccess.io/proxy-port, apiaccess.io/token-audience, " +
		"apiaccess.io/token-expiration-seconds, apiaccess.io/read-only, apiaccess.io/isolate-token, apiaccess.io/containers, apiaccess.io/transparent, apiaccess.io/allow-exec, apiaccess.io/access-log, " +
		"apiaccess.io/proxy-cpu-request, apiaccess.io/proxy-cpu-limit, apiaccess.io/proxy-memory-request, apiaccess.io/proxy-memory-limit"
	tests := []struct {
		name        string
		annotations map[string]string
		want        []string // the refusal's reasons; nil: accepted
	}{
		{"a typo", map[string]string{"apiaccess.io/readonly": "true"},
			[]string{"annotation apiaccess.io/readonly: unknown key; " + known}},
		{"two typos, sorted", map[string]string{"apiaccess.io/port": "9000", "apiaccess.io/containter": "app"},
			[]string{"annotation apiaccess.io/containter: unknown key; " + known, "annotation apiaccess.io/port: unknown key; " + known}},
		{"written by the injector, now or before", map[string]string{StatusAnnotation: "{}", "apiaccess.io/kubeconfig": "apiVersion: v1"}, nil},
		{"other prefixes", map[string]string{"e2e.apiaccess.io/readonly": "true", "apiaccess.io.example/x": "y", "example.com/apiaccess.io": "z"}, nil},
		{"every key users set", map[string]string{InjectAnnotation: "true", ProxyPortAnnotation: "9000", TokenAudienceAnnotation: "a",
			TokenExpirationSecondsAnnotation: "600", ReadOnlyAnnotation: "true", IsolateTokenAnnotation: "true", ContainersAnnotation: "app", AllowExecAnnotation: "true",
			AccessLogAnnotation: "true"}, nil},
	}
	cfg := testConfig()
	cfg.Default()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseOptions(tt.annotations, &cfg)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			r, ok := errors.AsType[*Refusal](err)
			if !ok {
				t.Fatalf("error = %v, want a *Refusal", err)
			}
			if diff := cmp.Diff(tt.want, r.Reasons); diff != "" {
				t.Errorf("reasons (-want +got):\n%s", diff)
			}
		})
	}
}

// TestUserAnnotationsMatchTheConstants keeps the list of keys users set, and so the
// unknown-key message, in step with the const block of annotations.go that declares them.
func TestUserAnnotationsMatchTheConstants(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "annotations.go", nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	var declared []string
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST || g.Doc == nil || !strings.HasPrefix(g.Doc.Text(), "Pod annotations that users set") {
			continue
		}
		for _, spec := range g.Specs {
			for _, v := range spec.(*ast.ValueSpec).Values {
				lit, ok := v.(*ast.BasicLit)
				if !ok {
					t.Fatalf("annotation constant %v is not a string literal", v)
				}
				s, _ := strconv.Unquote(lit.Value)
				declared = append(declared, s)
			}
		}
	}
	if len(declared) == 0 {
		t.Fatal(`annotations.go has no const block documented "Pod annotations that users set"`)
	}
	if diff := cmp.Diff(declared, UserAnnotations()); diff != "" {
		t.Errorf("userAnnotations (options.go) differs from annotations.go (-annotations.go +options.go):\n%s", diff)
	}
}

// TestReadOnlyKeepsNoCredential: a read-only pod keeps no service-account token of its own,
// or the app could write with it straight to the API server. read-only implies isolate-token;
// the one combination that would leave the app a token, isolate-token "false", is refused.
func TestReadOnlyKeepsNoCredential(t *testing.T) {
	refused := `annotation apiaccess.io/isolate-token: invalid value "false": a pod with apiaccess.io/read-only: "true" keeps ` +
		`no service-account token of its own, or the app could write with it without going through the proxy; ` +
		`remove the annotation (read-only implies it) or set apiaccess.io/read-only: "false"`
	tests := []struct {
		name                   string
		readOnly, isolateToken string // "" leaves the annotation out
		want                   Options
		refusal                []string
	}{
		{"read-only implies isolate-token", "true", "", Options{ReadOnly: true, IsolateToken: true}, nil},
		{"read-only with isolate-token", "true", "true", Options{ReadOnly: true, IsolateToken: true}, nil},
		{"read-only with isolate-token false is refused", "true", "false", Options{}, []string{refused}},
		{"isolate-token alone", "", "true", Options{IsolateToken: true}, nil},
		{"read-write keeps the token by default", "false", "", Options{}, nil},
		{"read-write with isolate-token false", "false", "false", Options{}, nil},
		{"invalid read-only is refused alone", "yes", "false", Options{},
			[]string{`annotation apiaccess.io/read-only: invalid value "yes": must be "true" or "false"`}},
	}
	cfg := testConfig()
	cfg.Default()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			annotations := map[string]string{}
			if tt.readOnly != "" {
				annotations[ReadOnlyAnnotation] = tt.readOnly
			}
			if tt.isolateToken != "" {
				annotations[IsolateTokenAnnotation] = tt.isolateToken
			}
			o, err := ParseOptions(annotations, &cfg)
			if tt.refusal != nil {
				r, ok := errors.AsType[*Refusal](err)
				if !ok {
					t.Fatalf("error = %v, want a *Refusal", err)
				}
				if diff := cmp.Diff(tt.refusal, r.Reasons); diff != "" {
					t.Errorf("reasons (-want +got):\n%s", diff)
				}
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			got := Options{ReadOnly: o.ReadOnly, IsolateToken: o.IsolateToken}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("options (-want +got):\n%s", diff)
			}
		})
	}
}
