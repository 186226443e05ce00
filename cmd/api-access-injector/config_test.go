package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/api-access-injector/api-access-injector/internal/version"
)

// TestDefaultSidecarImage: a release's default sidecar image is the proxy image of that
// release; any other build's is the tag dev, which `make docker-build` builds, never a tag
// that no image can have (a commit hash, -dirty).
func TestDefaultSidecarImage(t *testing.T) {
	saved := version.Version
	t.Cleanup(func() { version.Version = saved })
	for _, tt := range []struct{ version, want string }{
		{"dev", "api-access-injector/api-proxy:dev"},
		{"v0.1.0", "api-access-injector/api-proxy:v0.1.0"},
		{"v1.2.3-rc.1", "api-access-injector/api-proxy:v1.2.3-rc.1"},
		{"v0.1.0-3-gabc1234", "api-access-injector/api-proxy:dev"},
		{"v0.1.0-3-gabc1234-dirty", "api-access-injector/api-proxy:dev"},
		{"v0.1.0-dirty", "api-access-injector/api-proxy:dev"},
		{"789320f", "api-access-injector/api-proxy:dev"},
		{"789320f-dirty", "api-access-injector/api-proxy:dev"},
		{"v0.0.0-20261130194500-789320fabcde", "api-access-injector/api-proxy:dev"},
		{"v0.1.1-0.20261130194500-789320fabcde", "api-access-injector/api-proxy:dev"},
	} {
		t.Run(tt.version, func(t *testing.T) {
			version.Version = tt.version
			if diff := cmp.Diff(tt.want, defaultSidecarImage()); diff != "" {
				t.Errorf("defaultSidecarImage() with version %s (-want +got):\n%s", tt.version, diff)
			}
		})
	}
}

// TestConfigErrors: every problem of a configuration becomes one error naming where it comes
// from, whether the injector joined several, wrapped them, or returned one alone (which an
// unchecked type assertion turned into a panic).
func TestConfigErrors(t *testing.T) {
	one, two := errors.New("proxyPort: 80 is out of range 1024-65535"), errors.New("sidecar.image: required")
	for _, tt := range []struct {
		name string
		err  error
		want []string
	}{
		{"joined", errors.Join(one, two), []string{"c.yaml: " + one.Error(), "c.yaml: " + two.Error()}},
		{"wrapped join", fmt.Errorf("invalid injector config: %w", errors.Join(one, two)), []string{"c.yaml: " + one.Error(), "c.yaml: " + two.Error()}},
		{"alone", one, []string{"c.yaml: " + one.Error()}},
		{"wrapped alone", fmt.Errorf("invalid injector config: %w", one), []string{"c.yaml: invalid injector config: " + one.Error()}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, err := range configErrors("c.yaml", tt.err) {
				got = append(got, err.Error())
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("configErrors (-want +got):\n%s", diff)
			}
		})
	}
}

// TestInjectorConfigValidatedOnce: the command's configuration errors are exactly the
// injector's own, each once (the command used to validate, then have injector.New validate
// again).
func TestInjectorConfigValidatedOnce(t *testing.T) {
	config := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(config, []byte("proxyPort: 80\nexcludedNamespaces: [Bad_NS]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f := injectorFlags{configFile: config, namespace: "api-access-system"}
	inj, errs := f.load()
	if inj != nil {
		t.Fatal("an invalid configuration built an injector")
	}
	var got []string
	for _, err := range errs {
		got = append(got, err.Error())
	}
	want := []string{
		config + ": proxyPort: 80 is out of range 1024-65535",
		config + `: excludedNamespaces[0]: "Bad_NS" is not a namespace name: ` + validation.IsDNS1123Label("Bad_NS")[0],
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("load errors (-want +got):\n%s", diff)
	}
}
