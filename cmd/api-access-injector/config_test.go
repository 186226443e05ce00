package main

import (
	"testing"

	"github.com/google/go-cmp/cmp"

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
