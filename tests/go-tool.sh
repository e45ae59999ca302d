#!/usr/bin/env bash
# Builds a Go command from its module through the Go module proxy, once, and caches it under
# ${LEITWERK_CACHE:-~/.cache/leitwerk}/<name>-<version>/. Prints the binary's path.
# Usage: tests/go-tool.sh NAME PACKAGE VERSION   (PACKAGE: the command's import path)
set -euo pipefail
name=$1 package=$2 version=$3
dir=${LEITWERK_CACHE:-$HOME/.cache/leitwerk}/$name-$version
bin=$dir/$name
if [ ! -x "$bin" ]; then
  command -v go >/dev/null || { echo "[$name] Go is required to build $package" >&2; exit 1; }
  mkdir -p "$dir"
  echo "[$name] building $package@$version from its Go module (once)" >&2
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && GOFLAGS=-mod=mod GOTOOLCHAIN=${GOTOOLCHAIN:-local} GOBIN="$work/bin" \
    go install "$package@$version") >&2
  mv "$work/bin/$(basename "$package")" "$bin"
fi
echo "$bin"
