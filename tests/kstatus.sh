#!/usr/bin/env bash
# Builds tests/kstatus (sigs.k8s.io/cli-utils' kstatus, as Flux computes a resource's status)
# through the Go module proxy, once, into ${LEITWERK_CACHE:-~/.cache/leitwerk}/kstatus-<digest>/.
# Prints the binary's path.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
digest=$(cat "$here/kstatus/go.mod" "$here/kstatus/go.sum" "$here/kstatus/main.go" | sha256sum | cut -c1-12)
dir=${LEITWERK_CACHE:-$HOME/.cache/leitwerk}/kstatus-$digest
# One fetch at a time: tests run this script in parallel, and a second fetch would race the
# first one's rename of its partial file.
mkdir -p "$(dirname "$dir")"
exec 9>"$dir.lock"
flock 9
if [ ! -x "$dir/kstatus" ]; then
  mkdir -p "$dir"
  echo "[kstatus] building sigs.k8s.io/cli-utils' kstatus (once)" >&2
  (cd "$here/kstatus" && go build -mod=readonly -o "$dir/kstatus.part" .) >&2
  mv "$dir/kstatus.part" "$dir/kstatus"
fi
echo "$dir/kstatus"
