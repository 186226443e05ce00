package chart

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

const (
	// chartDir is the chart under test, relative to this package.
	chartDir = "../../charts/api-access-injector"
	// releaseName and releaseNamespace are those of the documented install command.
	releaseName      = "api-access-injector"
	releaseNamespace = "api-access-system"
)

// helmPath returns the Helm CLI to run: $HELM (the Makefile sets it), else bin/helm of the
// repository. A missing binary fails the test with the command that installs it.
func helmPath(t *testing.T) string {
	t.Helper()
	path := os.Getenv("HELM")
	if path == "" {
		abs, err := filepath.Abs("../../bin/helm")
		if err != nil {
			t.Fatal(err)
		}
		path = abs
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("Helm CLI not found at %s: run `make helm` to install it into bin/ (or set HELM): %v", path, err)
	}
	return path
}

// runHelm runs the Helm CLI with args and returns its stdout and stderr. Helm's own state
// (repositories, cache) is kept in the test's temporary directory.
func runHelm(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), helmPath(t), args...)
	home := t.TempDir()
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"))
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

// templateArgs are the arguments of `helm template` for the documented release, followed by
// extra (e.g. --set flags).
func templateArgs(extra ...string) []string {
	return append([]string{"template", releaseName, chartDir, "--namespace", releaseNamespace}, extra...)
}

// rendered is the output of `helm template`, one object per YAML document.
type rendered struct {
	objects []*unstructured.Unstructured
	raw     [][]byte
}

// render runs `helm template` with extra arguments and fails the test if it fails.
func render(t *testing.T, extra ...string) *rendered {
	t.Helper()
	out, stderr, err := runHelm(t, templateArgs(extra...)...)
	if err != nil {
		t.Fatalf("helm template %s: %v\n%s", strings.Join(extra, " "), err, stderr)
	}
	r, err := parse([]byte(out))
	if err != nil {
		t.Fatalf("helm template %s: %v", strings.Join(extra, " "), err)
	}
	return r
}

// renderFailure runs `helm template` with extra arguments, which must fail, and returns stderr.
func renderFailure(t *testing.T, extra ...string) string {
	t.Helper()
	out, stderr, err := runHelm(t, templateArgs(extra...)...)
	if err == nil {
		t.Fatalf("helm template %s succeeded; want a failure. Output:\n%s", strings.Join(extra, " "), out)
	}
	return stderr
}

// parse splits a multi-document YAML stream into objects, skipping empty documents.
func parse(data []byte) (*rendered, error) {
	r := &rendered{}
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return r, nil
		}
		if err != nil {
			return nil, err
		}
		var m map[string]any
		if err := yaml.Unmarshal(doc, &m); err != nil {
			return nil, err
		}
		if len(m) == 0 {
			continue
		}
		r.objects = append(r.objects, &unstructured.Unstructured{Object: m})
		r.raw = append(r.raw, doc)
	}
}

// kinds lists "Kind/name" of every object, sorted.
func (r *rendered) kinds() []string {
	var out []string
	for _, o := range r.objects {
		out = append(out, o.GetKind()+"/"+o.GetName())
	}
	slices.Sort(out)
	return out
}

// find returns the object of that kind and name, or nil.
func (r *rendered) find(kind, name string) *unstructured.Unstructured {
	for _, o := range r.objects {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}

// decode decodes the object of that kind and name into a typed object, refusing fields the
// type does not know (a misspelt field in a template fails here, not in a cluster).
func (r *rendered) decode(t *testing.T, kind, name string, into any) {
	t.Helper()
	for i, o := range r.objects {
		if o.GetKind() == kind && o.GetName() == name {
			if err := yaml.UnmarshalStrict(r.raw[i], into); err != nil {
				t.Fatalf("%s/%s: %v", kind, name, err)
			}
			return
		}
	}
	t.Fatalf("%s/%s not rendered; rendered: %v", kind, name, r.kinds())
}
