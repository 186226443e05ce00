package main

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// stage is what the Dockerfile says about one final image.
type stage struct {
	Base           string
	Entrypoint     []string
	User           string
	ExposedPorts   []string
	CACertificates bool
}

// parseDockerfile reads the stages of a Dockerfile: FROM ... AS name, ENTRYPOINT (exec form),
// USER and EXPOSE; continuation lines are joined. A stage based on distroless "static" has the
// CA certificates (https://github.com/GoogleContainerTools/distroless/blob/main/base/README.md).
func parseDockerfile(t *testing.T, file string) map[string]*stage {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("reading the Dockerfile: %v", err)
	}
	text := strings.ReplaceAll(string(data), "\\\n", " ")
	stages := map[string]*stage{}
	var cur *stage
	for line := range strings.SplitSeq(text, "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		args := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), fields[0]))
		switch strings.ToUpper(fields[0]) {
		case "FROM":
			// FROM [--platform=...] image [AS name]
			var rest []string
			for _, f := range fields[1:] {
				if !strings.HasPrefix(f, "--") {
					rest = append(rest, f)
				}
			}
			cur = &stage{Base: rest[0]}
			if len(rest) == 3 && strings.EqualFold(rest[1], "AS") {
				stages[rest[2]] = cur
			}
			cur.CACertificates = strings.HasPrefix(rest[0], "gcr.io/distroless/static")
			if strings.HasSuffix(rest[0], ":nonroot") {
				cur.User = nonRoot
			}
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(args), &cur.Entrypoint); err != nil {
				t.Fatalf("ENTRYPOINT %s: only the exec form (a JSON array) is understood: %v", args, err)
			}
		case "USER":
			cur.User = args
		case "EXPOSE":
			for _, p := range fields[1:] {
				if !strings.Contains(p, "/") {
					p += "/tcp"
				}
				cur.ExposedPorts = append(cur.ExposedPorts, p)
			}
		}
	}
	return stages
}

// TestProductImagesMatchDockerfile keeps imgbuild and the Dockerfile in agreement: the images
// `make e2e` runs must be the ones users build.
func TestProductImagesMatchDockerfile(t *testing.T) {
	stages := parseDockerfile(t, filepath.Join("..", "..", "Dockerfile"))
	for _, spec := range ProductImages() {
		t.Run(spec.Name, func(t *testing.T) {
			want, ok := stages[spec.Name]
			if !ok {
				t.Fatalf("the Dockerfile has no target %q", spec.Name)
			}
			got := stage{
				Base: want.Base, Entrypoint: spec.Entrypoint, User: spec.User,
				ExposedPorts: spec.ExposedPorts, CACertificates: spec.CACertificates,
			}
			if diff := cmp.Diff(*want, got); diff != "" {
				t.Errorf("imgbuild's %s image differs from the Dockerfile's target (-Dockerfile +imgbuild):\n%s", spec.Name, diff)
			}
		})
	}
}

// TestBuild builds every image from stand-in files and reads the tarball back: configuration
// and layer contents.
func TestBuild(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"api-access-injector", "api-proxy", "e2e-app", "pause", "kubectl", "ca.crt"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("content of "+f), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	src := Sources{BinDir: dir, Kubectl: filepath.Join(dir, "kubectl"), CACertificates: filepath.Join(dir, "ca.crt")}
	for _, spec := range Images() {
		t.Run(spec.Name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), spec.Name+".tar")
			if err := Build(spec, src, out); err != nil {
				t.Fatalf("Build: %v", err)
			}
			tag, err := name.NewTag(spec.Ref)
			if err != nil {
				t.Fatal(err)
			}
			img, err := tarball.ImageFromPath(out, &tag)
			if err != nil {
				t.Fatalf("reading back %s as %s: %v", out, spec.Ref, err)
			}
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(spec.Entrypoint, cf.Config.Entrypoint); diff != "" {
				t.Errorf("entrypoint (-want +got):\n%s", diff)
			}
			if cf.Config.User != nonRoot {
				t.Errorf("user = %q, want %q", cf.Config.User, nonRoot)
			}
			layers, err := img.Layers()
			if err != nil || len(layers) != 1 {
				t.Fatalf("layers = %d, %v; want exactly one", len(layers), err)
			}
			rc, err := layers[0].Uncompressed()
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			files, links := map[string]string{}, map[string]string{}
			var dirs []string
			tr := tar.NewReader(rc)
			for {
				h, err := tr.Next()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				switch h.Typeflag {
				case tar.TypeReg:
					data, _ := io.ReadAll(tr)
					files["/"+h.Name] = string(data)
				case tar.TypeSymlink:
					links["/"+h.Name] = h.Linkname
				case tar.TypeDir:
					dirs = append(dirs, "/"+strings.TrimSuffix(h.Name, "/"))
				}
			}
			want := map[string]string{}
			for _, f := range spec.Files {
				want[f.Path] = "content of " + f.Binary
			}
			if spec.CACertificates {
				want[caCertificatesPath] = "content of ca.crt"
			}
			if diff := cmp.Diff(want, files); diff != "" {
				t.Errorf("files in the layer (-want +got):\n%s", diff)
			}
			wantLinks := map[string]string{}
			for _, l := range spec.Symlinks {
				wantLinks[l.Path] = l.Target
			}
			if diff := cmp.Diff(wantLinks, links); diff != "" {
				t.Errorf("symbolic links in the layer (-want +got):\n%s", diff)
			}
			for _, d := range append([]string{"/tmp"}, spec.Dirs...) {
				if !slices.Contains(dirs, d) {
					t.Errorf("the layer has no directory %s; it has %v", d, dirs)
				}
			}
			if !slices.Contains(cf.Config.Env, "PATH=/usr/local/bin:/usr/bin:/bin") {
				t.Errorf("env %v has no PATH", cf.Config.Env)
			}
		})
	}
}

// TestBuildMissingBinary names the file that is missing.
func TestBuildMissingBinary(t *testing.T) {
	dir := t.TempDir()
	err := Build(ProductImages()[0], Sources{BinDir: dir}, filepath.Join(dir, "out.tar"))
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "api-access-injector")) {
		t.Fatalf("Build without the binary: err = %v, want one naming %s", err, filepath.Join(dir, "api-access-injector"))
	}
}
