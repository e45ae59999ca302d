#!/usr/bin/env bash
# Provides an S3-compatible server for the object-storage tests: the Versity S3 Gateway
# (versitygw, Apache-2.0), which serves a directory over the S3 protocol and checks AWS
# Signature V4 against its root credentials. Built from its Go module through the Go module
# proxy and cached under ${LEITWERK_CACHE:-~/.cache/leitwerk}/versitygw-<version>/.
# Prints the binary's path.
set -euo pipefail
version=${VERSITYGW_VERSION:-v1.8.0}
dir=${LEITWERK_CACHE:-$HOME/.cache/leitwerk}/versitygw-$version
bin=$dir/versitygw
if [ ! -x "$bin" ]; then
  command -v go >/dev/null || { echo "[s3] Go is required to build versitygw from its module" >&2; exit 1; }
  mkdir -p "$dir"
  echo "[s3] building versitygw $version from its Go module (a few minutes, once)" >&2
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && GOFLAGS=-mod=mod GOTOOLCHAIN=${GOTOOLCHAIN:-local} GOBIN="$work/bin" \
    go install "github.com/versity/versitygw/cmd/versitygw@$version") >&2
  mv "$work/bin/versitygw" "$bin"
fi
echo "$bin"
