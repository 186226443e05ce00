// Package version reports the version of the binaries, stamped at build time with
// -ldflags "-X github.com/api-access-injector/api-access-injector/internal/version.Version=v1.2.3".
package version

import "runtime/debug"

// Version is the release version; "dev" in a build that was not stamped.
var Version = "dev"

// Get returns Version, or the module version recorded by `go install module@version`.
func Get() string {
	if Version != "dev" {
		return Version
	}
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" && info.Main.Version != "(devel)" {
		return info.Main.Version
	}
	return Version
}
