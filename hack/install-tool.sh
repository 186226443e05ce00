#!/usr/bin/env bash
# Installs a Go command at a pinned version as DEST, through a cache outside the clone, so that a
# fresh clone on a machine that built it once pays nothing (as hack/setup-envtest.sh does for the
# envtest binaries).
#
# Usage: hack/install-tool.sh DEST PACKAGE@VERSION
# Environment: XDG_CACHE_HOME (default ~/.cache).
set -euo pipefail

dest=$1
pkg=$2
name=$(basename "${pkg%@*}")
version=${pkg##*@}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/api-access-injector/tools/$name-$version

if [ ! -x "$cache" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  echo "install-tool: building $pkg from the Go module proxy (once per machine)" >&2
  GOBIN=$tmp go install "$pkg"
  mkdir -p "$(dirname "$cache")"
  mv "$tmp/$name" "$cache"
fi
mkdir -p "$(dirname "$dest")"
cp "$cache" "$dest"
