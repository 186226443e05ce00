package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// writeTree writes files (path relative to dir -> content) and returns dir.
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// readTree reads every file under dir, by path relative to it.
func readTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	root := os.DirFS(dir)
	err := fs.WalkDir(root, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(root, path)
		out[path] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

const (
	optedIn = "# the app\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  template:\n    metadata:\n" +
		"      annotations:\n        apiaccess.io/inject: \"true\"  # opt in\n    spec:\n      containers:\n      - name: web\n        image: web:1\n"
	plain   = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata: {a: b}\n"
	refused = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bad\n  annotations: {apiaccess.io/inject: \"true\", apiaccess.io/read-only: \"yes\"}\n" +
		"spec:\n  containers: [{name: a, image: a}]\n"
)

// TestInjectDirectory: -f DIR injects every .yaml and .yml file under it, in lexical order,
// to standard output with a "# Source:" line before each, or back into the files with
// --in-place; --uninject --in-place gives every file back its bytes.
func TestInjectDirectory(t *testing.T) {
	files := map[string]string{
		"b/web.yaml":      optedIn,
		"a.yml":           plain,
		"b/c/nested.yaml": optedIn,
		"notes.txt":       optedIn,                                              // not YAML by its name: left alone
		"z.yaml":          "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s", // no final newline
	}
	dir := writeTree(t, files)

	out, errOut, code := command(t, "", "inject", "-f", dir, "--sidecar-image", "registry.example.com/api-proxy:1")
	if code != 0 || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	var sources []string
	for line := range strings.Lines(out) {
		if rest, ok := strings.CutPrefix(line, "# Source: "); ok {
			rel, _ := filepath.Rel(dir, strings.TrimSpace(rest))
			sources = append(sources, filepath.ToSlash(rel))
		}
	}
	if diff := cmp.Diff([]string{"a.yml", "b/c/nested.yaml", "b/web.yaml", "z.yaml"}, sources); diff != "" {
		t.Errorf("files on stdout (-want +got):\n%s", diff)
	}
	if n := strings.Count(out, "name: api-proxy"); n != 2 {
		t.Errorf("%d sidecars on stdout, want 2:\n%s", n, out)
	}
	if !strings.Contains(out, "name: s\n---\n# Source: ") && !strings.HasSuffix(out, "name: s") {
		t.Errorf("a file without a final newline runs into the next separator:\n%s", out)
	}
	if diff := cmp.Diff(files, readTree(t, dir)); diff != "" {
		t.Errorf("without --in-place, files changed (-before +after):\n%s", diff)
	}

	// In place: only the injected files change, with their mode kept; stdout stays empty.
	out, errOut, code = command(t, "", "inject", "-f", dir, "--in-place", "--sidecar-image", "registry.example.com/api-proxy:1")
	if code != 0 || out != "" || errOut != "" {
		t.Fatalf("--in-place: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	after := readTree(t, dir)
	for name, before := range files {
		changed := after[name] != before
		if want := strings.HasSuffix(name, ".yaml") && before == optedIn; changed != want {
			t.Errorf("%s: changed = %v, want %v:\n%s", name, changed, want, after[name])
		}
	}
	if !strings.Contains(after["b/web.yaml"], "# the app\n") || !strings.Contains(after["b/web.yaml"], `apiaccess.io/inject: "true"  # opt in`) {
		t.Errorf("comments lost:\n%s", after["b/web.yaml"])
	}
	if st, err := os.Stat(filepath.Join(dir, "b/web.yaml")); err != nil || st.Mode().Perm() != 0o640 {
		t.Errorf("mode of a file written in place: %v, %v; want 0640", st.Mode(), err)
	}
	// Again: nothing changes.
	if _, errOut, code = command(t, "", "inject", "-f", dir, "--in-place", "--sidecar-image", "registry.example.com/api-proxy:1"); code != 0 {
		t.Fatalf("second --in-place: exit %d, %s", code, errOut)
	}
	if diff := cmp.Diff(after, readTree(t, dir)); diff != "" {
		t.Errorf("injecting in place twice changed the files (-once +twice):\n%s", diff)
	}

	if _, errOut, code = command(t, "", "inject", "-f", dir, "--uninject", "--in-place"); code != 0 {
		t.Fatalf("--uninject --in-place: exit %d, %s", code, errOut)
	}
	if diff := cmp.Diff(files, readTree(t, dir)); diff != "" {
		t.Errorf("--uninject did not give the files back (-original +uninjected):\n%s", diff)
	}
}

// TestInjectDirectoryAllOrNothing: a refusal in any file writes no file, and names the file.
func TestInjectDirectoryAllOrNothing(t *testing.T) {
	files := map[string]string{"a.yaml": optedIn, "b.yaml": refused, "c.yaml": optedIn}
	dir := writeTree(t, files)
	out, errOut, code := command(t, "", "inject", "-f", dir, "--in-place")
	want := filepath.Join(dir, "b.yaml") + `: Pod bad: api-access-injector: annotation apiaccess.io/read-only: invalid value "yes"`
	if code != 1 || out != "" || !strings.Contains(errOut, want) {
		t.Errorf("exit %d, stdout %q, stderr %q; want exit 1 and %q", code, out, errOut, want)
	}
	if diff := cmp.Diff(files, readTree(t, dir)); diff != "" {
		t.Errorf("files changed although one was refused (-before +after):\n%s", diff)
	}
}

// TestUninjectStdin: --uninject on standard input gives back what inject was given.
func TestUninjectStdin(t *testing.T) {
	injected, errOut, code := command(t, optedIn+"---\n"+plain, "inject", "-f", "-")
	if code != 0 {
		t.Fatalf("inject: exit %d, %s", code, errOut)
	}
	back, errOut, code := command(t, injected, "inject", "-f", "-", "--uninject")
	if code != 0 || errOut != "" {
		t.Fatalf("--uninject: exit %d, %s", code, errOut)
	}
	if diff := cmp.Diff(optedIn+"---\n"+plain, back); diff != "" {
		t.Errorf("(-original +uninjected):\n%s", diff)
	}
	if _, errOut, code := command(t, "", "inject", "-f", "-", "--in-place"); code != 1 || !strings.Contains(errOut, "--in-place: standard input") {
		t.Errorf("--in-place with -f -: exit %d, stderr %q", code, errOut)
	}
}
