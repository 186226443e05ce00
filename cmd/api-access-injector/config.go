package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"regexp"
	"slices"

	"github.com/api-access-injector/api-access-injector/injector"
	"github.com/api-access-injector/api-access-injector/internal/version"
)

// defaultSidecarImage is the proxy image of this very release. A build that is not a release
// (unstamped, or stamped by `git describe` between tags or with local changes, or a Go
// pseudo-version) has no published image of its own version, so it defaults to the tag dev:
// the one `make docker-build` gives the image it builds from the same tree, and the one
// config/ deploys. Anything else is set with --sidecar-image or sidecar.image in --config.
func defaultSidecarImage() string {
	tag := version.Get()
	if !releaseRE.MatchString(tag) || gitBuildRE.MatchString(tag) {
		tag = "dev"
	}
	return "api-access-injector/api-proxy:" + tag
}

// releaseRE matches a release version: vX.Y.Z, with an optional pre-release such as -rc.1
// (https://semver.org).
var releaseRE = regexp.MustCompile(`^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$`)

// gitBuildRE matches the suffixes that make a release-like version a build from git: `git
// describe`'s -N-gHASH and -dirty, and a Go pseudo-version's -TIMESTAMP-HASH
// (https://go.dev/ref/mod#pseudo-versions).
var gitBuildRE = regexp.MustCompile(`-[0-9]+-g[0-9a-f]+(-dirty)?$|-dirty$|[-.][0-9]{14}-[0-9a-f]{12}$`)

// injectorFlags are the flags that build the injector's configuration, shared by the
// webhook and inject commands so that both inject the same way.
type injectorFlags struct {
	configFile   string
	sidecarImage string
	namespace    string
}

func (f *injectorFlags) bind(fs *flag.FlagSet) {
	fs.StringVar(&f.configFile, "config", "", "Injector configuration file (YAML): sidecar image, default port, token defaults, resources, excluded namespaces. Optional.")
	fs.StringVar(&f.sidecarImage, "sidecar-image", "", "Image of the api-proxy sidecar; overrides the configuration file. "+
		"Default: "+defaultSidecarImage()+" (the proxy image of the same release; a build that is not a release uses the tag dev, "+
		"which make docker-build gives the image it builds).")
	ns := os.Getenv("POD_NAMESPACE")
	if ns == "" {
		ns = "api-access-system"
	}
	fs.StringVar(&f.namespace, "injector-namespace", ns, "The injector's own namespace, never injected. Default: $POD_NAMESPACE, else api-access-system.")
}

// load reads the configuration file, applies the flags, and builds the injector, which
// defaults and validates the configuration (once). It returns every problem found, each
// prefixed with where it comes from.
func (f *injectorFlags) load() (*injector.Injector, []error) {
	var cfg injector.Config
	if f.configFile != "" {
		data, err := os.ReadFile(f.configFile)
		if err != nil {
			return nil, []error{fmt.Errorf("--config: %w", err)}
		}
		if cfg, err = injector.LoadConfig(data); err != nil {
			return nil, []error{fmt.Errorf("--config %s: %w", f.configFile, err)}
		}
	}
	cfg.Version = version.Get()
	if f.sidecarImage != "" {
		cfg.Sidecar.Image = f.sidecarImage
	}
	if cfg.Sidecar.Image == "" {
		cfg.Sidecar.Image = defaultSidecarImage()
	}
	if f.namespace != "" {
		cfg.ExcludedNamespaces = append(cfg.ExcludedNamespaces, f.namespace)
	}
	inj, err := injector.New(cfg)
	if err != nil {
		where := "configuration"
		if f.configFile != "" {
			where = f.configFile
		}
		return nil, configErrors(where, err)
	}
	return inj, nil
}

// configErrors splits err, every problem of a configuration (injector.New joins them), into
// one error per problem, each prefixed with where.
func configErrors(where string, err error) []error {
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) {
		return []error{fmt.Errorf("%s: %w", where, err)}
	}
	var errs []error
	for _, e := range joined.Unwrap() {
		errs = append(errs, fmt.Errorf("%s: %w", where, e))
	}
	return errs
}

// excludedNamespaces is every namespace the injector leaves alone, each once, in the order
// AlwaysExcludedNamespaces, then the configured ones: what the webhook logs at start.
func excludedNamespaces(cfg injector.Config) []string {
	return unique(injector.AlwaysExcludedNamespaces, cfg.ExcludedNamespaces)
}

// unique returns the elements of the lists in order, each once.
func unique(lists ...[]string) []string {
	var out []string
	for _, l := range lists {
		for _, v := range l {
			if !slices.Contains(out, v) {
				out = append(out, v)
			}
		}
	}
	return out
}
