package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/api-access-injector/api-access-injector/injector"
	"github.com/api-access-injector/api-access-injector/internal/manifest"
)

func runInject(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	var (
		f         injectorFlags
		file      string
		mode      string
		namespace string
	)
	fs := flag.NewFlagSet("inject", flag.ContinueOnError)
	fs.SetOutput(stderr)
	f.bind(fs)
	fs.StringVar(&file, "f", "", `Manifest file to inject (multi-document YAML; the items of a List are injected too), `+
		`or "-" for standard input. Required. Nothing is written unless every document is accepted.`)
	fs.StringVar(&mode, "namespace-injection", "", "Stand-in for the namespace label "+injector.InjectionLabel+
		": enabled or enforced injects pods that did not opt in. Default: only pods annotated "+injector.InjectAnnotation+`: "true".`)
	fs.StringVar(&namespace, "namespace", "", "Namespace of the documents that name none: documents in an excluded namespace "+
		"(kube-system, kube-node-lease, the injector's own, the configured ones) are left as they are, and messages name it.")
	if err := parseFlags(fs, args); err != nil {
		return err
	}

	inj, errs := f.load()
	m, err := injector.ParseNamespaceMode(mode)
	if err != nil || m == injector.ModeDisabled {
		errs = append(errs, fmt.Errorf("--namespace-injection: %q is not enabled or enforced", mode))
	}
	var in io.Reader = stdin
	switch file {
	case "":
		errs = append(errs, errors.New(`-f: required: a manifest file, or "-" for standard input`))
	case "-":
	default:
		fh, err := os.Open(file)
		if err != nil {
			errs = append(errs, fmt.Errorf("-f: %w", err))
		} else {
			defer fh.Close()
			in = fh
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	warnings, err := manifest.Inject(in, stdout, manifest.Options{Injector: inj, Mode: m, Namespace: namespace})
	for _, w := range warnings {
		fmt.Fprintln(stderr, "warning:", w)
	}
	return err
}
