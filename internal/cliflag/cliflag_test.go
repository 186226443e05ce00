package cliflag

import (
	"bytes"
	"flag"
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
