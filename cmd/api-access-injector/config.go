package main

import (
	"flag"
	"fmt"
	"os"
	"slices"

	"github.com/api-access-injector/api-access-injector/injector"
	"github.com/api-access-injector/api-access-injector/internal/version"
)

// defaultSidecarImage is the proxy image of this very release.
func defaultSidecarImage() string {
	tag := version.Get()
	if tag == "dev" {
		tag = "latest"
	}
	return "api-access-injector/api-proxy:" + tag
}

// injectorFlags are the flags that build the injector's configuration, shared by the
// webhook and inject commands so that both inject the same way.
type injectorFlags struct {
	configFile   string
	sidecarImage string
	namespace    string
}

func (f *injectorFlags) bind(fs *flag.FlagSet) {
	fs.StringVar(&f.configFile, "config", "", "Injector configuration file (YAML): sidecar image, default port, token defaults, resources, excluded namespaces. Optional.")
	fs.StringVar(&f.sidecarImage, "sidecar-image", "", "Image of the api-proxy sidecar; overrides the configuration file. Default: "+defaultSidecarImage()+".")
	ns := os.Getenv("POD_NAMESPACE")
	if ns == "" {
		ns = "api-access-system"
	}
	fs.StringVar(&f.namespace, "injector-namespace", ns, "The injector's own namespace, never injected. Default: $POD_NAMESPACE, else api-access-system.")
}

// load reads, defaults and validates the configuration. It returns every problem found.
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
	cfg.Default()
	if err := cfg.Validate(); err != nil {
		where := "configuration"
		if f.configFile != "" {
			where = f.configFile
		}
		var errs []error
		for _, e := range err.(interface{ Unwrap() []error }).Unwrap() { // Validate joins its errors
			errs = append(errs, fmt.Errorf("%s: %w", where, e))
		}
		return nil, errs
	}
	// One list, each namespace once: what the webhook logs is what it applies.
	cfg.ExcludedNamespaces = unique(injector.AlwaysExcludedNamespaces, cfg.ExcludedNamespaces)
	inj, err := injector.New(cfg)
	if err != nil {
		return nil, []error{err}
	}
	return inj, nil
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
