#!/usr/bin/env bash
# Prints the directory with the Gateway API's standard-channel CRDs (HTTPRoute, Gateway, ...),
# fetched as the Go module sigs.k8s.io/gateway-api through the Go module proxy into the Go
# module cache (outside the work tree). Usage: tests/cluster/gateway-api.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
dir="$(GOFLAGS=-mod=mod go mod download -json "sigs.k8s.io/gateway-api@${GATEWAY_API_VERSION}" \
  | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
crds="$dir/config/crd/standard"
if [[ ! -f "$crds/gateway.networking.k8s.io_httproutes.yaml" ]]; then
  echo "gateway-api.sh: no HTTPRoute CRD under $crds (go mod download of sigs.k8s.io/gateway-api@${GATEWAY_API_VERSION} failed?)" >&2
  exit 1
fi
echo "$crds"
