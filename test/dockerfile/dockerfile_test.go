// Package dockerfile checks the repository's Dockerfile against the code it builds.
package dockerfile

import (
	"bufio"
	"os"
	"os/exec"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// module is the import path of this repository's module.
const module = "github.com/api-access-injector/api-access-injector"

// stage is a build stage of the Dockerfile: the source paths it copies from the build context
// and the packages its go build commands build.
type stage struct {
	name   string
	copies []string
	builds []string
}

// goBuildRE finds the package a `go build` builds: the last ./path argument.
var goBuildRE = regexp.MustCompile(`go build .*\s(\./\S+)\s*$`)

// TestDockerfileCopiesWhatEachBinaryImports: every package of this module that a binary
// imports is copied into the stage that builds it. The build stages copy only what they need
// (so that an edit elsewhere keeps the layer cache), and a new import would otherwise break
// `docker build` while every Go test stays green.
func TestDockerfileCopiesWhatEachBinaryImports(t *testing.T) {
	stages := parse(t, "../../Dockerfile")
	built := 0
	for _, s := range stages {
		for _, pkg := range s.builds {
			built++
			cmd := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", pkg)
			cmd.Dir = "../.." // the build context
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("go list -deps %s: %v", pkg, err)
			}
			for dep := range strings.FieldsSeq(string(out)) {
				rel, ok := strings.CutPrefix(dep, module+"/")
				if !ok {
					continue
				}
				if !slices.ContainsFunc(s.copies, func(c string) bool { return rel == c || strings.HasPrefix(rel, c+"/") }) {
					t.Errorf("stage %s builds %s, which imports %s, but copies only %q: add COPY %s/ %s/",
						s.name, pkg, dep, s.copies, rel, rel)
				}
			}
		}
	}
	if built < 2 {
		t.Fatalf("found %d go build commands in the Dockerfile, want one per image (parsed stages: %+v)", built, stages)
	}
}

// parse reads the build stages of a Dockerfile: FROM ... AS name, COPY src... dst (not
// --from), and RUN lines (joined across backslash continuations) holding `go build`.
func parse(t *testing.T, file string) []stage {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := f.Close(); err != nil {
			t.Error(err)
		}
	}()
	var stages []stage
	var line string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		text := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(text, "#") {
			continue
		}
		if cont, ok := strings.CutSuffix(text, `\`); ok {
			line += cont + " "
			continue
		}
		line += text
		fields := strings.Fields(line)
		line = ""
		if len(fields) == 0 {
			continue
		}
		switch strings.ToUpper(fields[0]) {
		case "FROM":
			stages = append(stages, stage{name: fields[len(fields)-1]})
		case "COPY":
			if len(stages) == 0 || slices.ContainsFunc(fields, func(f string) bool { return strings.HasPrefix(f, "--from") }) {
				continue
			}
			s := &stages[len(stages)-1]
			for _, src := range fields[1 : len(fields)-1] {
				s.copies = append(s.copies, path.Clean(src))
			}
		case "RUN":
			if m := goBuildRE.FindStringSubmatch(strings.Join(fields, " ")); m != nil && len(stages) > 0 {
				stages[len(stages)-1].builds = append(stages[len(stages)-1].builds, m[1])
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return stages
}
