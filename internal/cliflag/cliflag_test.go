package cliflag

import (
	"bytes"
	"flag"
	"io"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestUsage(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	var buf bytes.Buffer
	fs.SetOutput(&buf)
	fs.String("output", "text", "Output `format`: text or json.")
	fs.String("o", "text", "Output `format`: text or json.")
	fs.String("q", "", "A one-letter flag of its own.")
	fs.Bool("dry", false, "Do nothing.")
	fs.Duration("wait", time.Minute, "How long to wait.")
	fs.Usage = Usage(fs, "tool x [flags]")
	fs.Usage()
	want := `Usage:
  tool x [flags]

Flags:
  --dry
      Do nothing.
  -o, --output format
      Output format: text or json. (default "text")
  -q string
      A one-letter flag of its own.
  --wait duration
      How long to wait. (default "1m0s")
`
	if diff := cmp.Diff(want, buf.String()); diff != "" {
		t.Errorf("usage (-want +got):\n%s", diff)
	}
}

func TestParseInterspersed(t *testing.T) {
	for _, tt := range []struct {
		name           string
		args           []string
		wantPositional []string
		wantNS         string
		wantErr        bool
	}{
		{name: "flags first", args: []string{"-n", "shop", "deploy/web"}, wantPositional: []string{"deploy/web"}, wantNS: "shop"},
		{name: "flags after", args: []string{"deploy/web", "--namespace", "shop"}, wantPositional: []string{"deploy/web"}, wantNS: "shop"},
		{name: "between two", args: []string{"a", "-n", "shop", "b"}, wantPositional: []string{"a", "b"}, wantNS: "shop"},
		{name: "none", args: nil, wantPositional: nil},
		{name: "after --", args: []string{"--", "-n"}, wantPositional: []string{"-n"}},
		{name: "unknown flag", args: []string{"x", "--nope"}, wantErr: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			var ns string
			fs.StringVar(&ns, "namespace", "", "")
			fs.StringVar(&ns, "n", "", "")
			got, err := ParseInterspersed(fs, tt.args)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseInterspersed(%q) error = %v, want error %v", tt.args, err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			if diff := cmp.Diff(tt.wantPositional, got); diff != "" || ns != tt.wantNS {
				t.Errorf("ParseInterspersed(%q): positional (-want +got):\n%s namespace %q, want %q", tt.args, diff, ns, tt.wantNS)
			}
		})
	}
}
