#!/usr/bin/env bash
# Provides ghz, the gRPC load tester written in Go (a real gRPC client, the one with which
# the delayed-ACK defect of the inference server was found), built from its Go module through
# the Go module proxy and cached under ${LEITWERK_CACHE:-~/.cache/leitwerk}/ghz-<version>/.
# Prints the binary's path.
set -euo pipefail
version=${GHZ_VERSION:-v0.121.0}
dir=${LEITWERK_CACHE:-$HOME/.cache/leitwerk}/ghz-$version
bin=$dir/ghz
if [ ! -x "$bin" ]; then
  command -v go >/dev/null || { echo "[ghz] Go is required to build ghz from its module" >&2; exit 1; }
  mkdir -p "$dir"
  echo "[ghz] building ghz $version from its Go module" >&2
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && GOFLAGS=-mod=mod GOTOOLCHAIN=${GOTOOLCHAIN:-local} GOBIN="$work/bin" \
    go install "github.com/bojand/ghz/cmd/ghz@$version") >&2
  mv "$work/bin/ghz" "$bin"
fi
echo "$bin"
