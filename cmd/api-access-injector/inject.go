package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/api-access-injector/api-access-injector/injector"
	"github.com/api-access-injector/api-access-injector/internal/manifest"
)

// injectInput is one manifest file given to inject, with what becomes of it.
type injectInput struct {
	path string // "-" for standard input
	mode fs.FileMode
	in   []byte
	out  []byte
}

func runInject(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	var (
		f         injectorFlags
		file      string
		mode      string
		namespace string
		inPlace   bool
		uninject  bool
	)
	fs := flag.NewFlagSet("inject", flag.ContinueOnError)
	fs.SetOutput(stderr)
	f.bind(fs)
	fs.StringVar(&file, "f", "", `Manifest file (multi-document YAML; the items of a List are injected too), `+
		`directory (every .yaml and .yml file under it, in lexical order), or "-" for standard input. Required. `+
		`Nothing is written unless every document of every file is accepted.`)
	fs.StringVar(&mode, "namespace-injection", "", "Stand-in for the namespace label "+injector.InjectionLabel+
		": enabled or enforced injects pods that did not opt in. Default: only pods annotated "+injector.InjectAnnotation+`: "true".`)
	fs.StringVar(&namespace, "namespace", "", "Namespace of the documents that name none: documents in an excluded namespace "+
		"(kube-system, kube-node-lease, the injector's own, the configured ones) are left as they are, and messages name it.")
	fs.BoolVar(&inPlace, "in-place", false, "Write each file back in place (only the files that change) instead of to standard output. "+
		`Without it, a directory's files go to standard output one after the other, each opened by "---" and a "# Source: PATH" comment.`)
	fs.BoolVar(&uninject, "uninject", false, "Take out what inject added: each injected pod template gets back the exact text it had, "+
		"comments and layout included (from the record inject leaves in a comment line before its metadata).")
	if err := parseFlags(fs, args); err != nil {
		return err
	}

	var inj *injector.Injector
	var errs []error
	if !uninject {
		inj, errs = f.load()
	}
	m, err := injector.ParseNamespaceMode(mode)
	if err != nil || m == injector.ModeDisabled {
		errs = append(errs, fmt.Errorf("--namespace-injection: %q is not enabled or enforced", mode))
	}
	inputs, dir, err := readInputs(file, stdin)
	if err != nil {
		errs = append(errs, err)
	}
	if inPlace && file == "-" {
		errs = append(errs, errors.New(`--in-place: standard input ("-f -") has no file to write back to`))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}

	// Every file first, then the output: a refusal anywhere writes nothing.
	opts := manifest.Options{Injector: inj, Mode: m, Namespace: namespace}
	for i := range inputs {
		in := &inputs[i]
		var warnings []string
		if uninject {
			in.out, err = manifest.UninjectBytes(in.in)
		} else {
			in.out, warnings, err = manifest.InjectBytes(in.in, opts)
		}
		for _, w := range warnings {
			if len(inputs) > 1 {
				w = in.path + ": " + w
			}
			fmt.Fprintln(stderr, "warning:", w)
		}
		if err != nil {
			if in.path != "-" {
				return fmt.Errorf("%s: %w", in.path, err)
			}
			return err
		}
	}
	if inPlace {
		return writeInPlace(inputs)
	}
	var out bytes.Buffer
	for _, in := range inputs {
		if dir {
			// Separated as `helm template` separates its files.
			if out.Len() > 0 && out.Bytes()[out.Len()-1] != '\n' {
				out.WriteByte('\n')
			}
			fmt.Fprintf(&out, "---\n# Source: %s\n", filepath.ToSlash(in.path))
		}
		out.Write(in.out)
	}
	if _, err := stdout.Write(out.Bytes()); err != nil {
		return fmt.Errorf("writing the manifests: %w", err)
	}
	return nil
}

// readInputs reads the file, the .yaml and .yml files under the directory (dir), or standard
// input.
func readInputs(file string, stdin io.Reader) (inputs []injectInput, dir bool, err error) {
	switch file {
	case "":
		return nil, false, errors.New(`-f: required: a manifest file, a directory, or "-" for standard input`)
	case "-":
		data, err := io.ReadAll(stdin)
		if err != nil {
			return nil, false, fmt.Errorf("-f -: %w", err)
		}
		return []injectInput{{path: "-", in: data}}, false, nil
	}
	info, err := os.Stat(file)
	if err != nil {
		return nil, false, fmt.Errorf("-f: %w", err)
	}
	var paths []string
	if !info.IsDir() {
		paths = []string{file}
	} else {
		// WalkDir visits in lexical order: the output is the same from one run to the next.
		err := filepath.WalkDir(file, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if ext := filepath.Ext(path); !d.IsDir() && (ext == ".yaml" || ext == ".yml") {
				paths = append(paths, path)
			}
			return nil
		})
		if err != nil {
			return nil, true, fmt.Errorf("-f %s: %w", file, err)
		}
		if len(paths) == 0 {
			return nil, true, fmt.Errorf("-f %s: no .yaml or .yml file under it", file)
		}
	}
	inputs = make([]injectInput, 0, len(paths))
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, info.IsDir(), fmt.Errorf("-f: %w", err)
		}
		st, err := os.Stat(path)
		if err != nil {
			return nil, info.IsDir(), fmt.Errorf("-f: %w", err)
		}
		inputs = append(inputs, injectInput{path: path, mode: st.Mode().Perm(), in: data})
	}
	return inputs, info.IsDir(), nil
}

// writeInPlace writes back the files whose text changed, each through a temporary file in its
// directory renamed over it, so that a file is never left half-written.
func writeInPlace(inputs []injectInput) error {
	for _, in := range inputs {
		if bytes.Equal(in.in, in.out) {
			continue
		}
		tmp, err := os.CreateTemp(filepath.Dir(in.path), "."+filepath.Base(in.path)+".*")
		if err != nil {
			return fmt.Errorf("--in-place: %w", err)
		}
		_, err = tmp.Write(in.out)
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Chmod(tmp.Name(), in.mode)
		}
		if err == nil {
			err = os.Rename(tmp.Name(), in.path)
		}
		if err != nil {
			_ = os.Remove(tmp.Name())
			return fmt.Errorf("--in-place %s: %w", in.path, err)
		}
	}
	return nil
}
