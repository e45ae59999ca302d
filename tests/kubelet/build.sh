#!/usr/bin/env bash
# Builds the kubelet from k8s.io/kubernetes/cmd/kubelet (the version of the local control
# plane, tests/cluster/versions.env) and caches it beside the other components, under
# ${LEITWERK_CACHE:-~/.cache/leitwerk}/k8s-<version>/bin. Part of the real-kubelet probe
# (tests/kubelet/probe.sh); the tests do not need it. Prints the binary's path.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../cluster/versions.env
source "$here/../cluster/versions.env"
cache=${LEITWERK_CACHE:-$HOME/.cache/leitwerk}
bin=$cache/k8s-$KUBERNETES_VERSION/bin
mkdir -p "$bin"
if [ -x "$bin/kubelet" ] && "$bin/kubelet" --version 2>/dev/null | grep -- "$KUBERNETES_VERSION" >/dev/null; then
  echo "$bin/kubelet"; exit 0
fi
export GOFLAGS=-mod=mod GOTOOLCHAIN=${GOTOOLCHAIN:-local}
minor=${KUBERNETES_VERSION#v1.}
work=$(mktemp -d)
logf=$cache/build-kubelet.log
: >"$logf"
echo "[kubelet/build] building kubelet $KUBERNETES_VERSION in $work (log: $logf)" >&2
(
  cd "$work"
  go mod init leitwerk.local/kubeletbuild >>"$logf" 2>&1
  go mod edit -require="k8s.io/kubernetes@$KUBERNETES_VERSION"
  gomod=$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  grep -E '^\s*k8s.io/[a-z0-9-]+ => \./staging/' "$gomod" | awk '{print $1}' | sort -u | while read -r m; do
    go mod edit -replace="$m=$m@v0.$minor"
  done
  sed -n '/^godebug/,/^)/p' "$gomod" >>go.mod
  grep -E '^godebug [a-z]' "$gomod" >>go.mod || true
  printf '//go:build tools\n\npackage tools\n\nimport _ "k8s.io/kubernetes/cmd/kubelet"\n' >tools.go
  go mod tidy -e >>"$logf" 2>&1 || true
  ld="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld="$ld -X $p.gitVersion=$KUBERNETES_VERSION -X $p.gitMajor=1 -X $p.gitMinor=${minor%%.*} -X $p.gitTreeState=clean"
  done
  CGO_ENABLED=0 go build -tags tools -ldflags "$ld" -o "$bin/kubelet" k8s.io/kubernetes/cmd/kubelet >>"$logf" 2>&1
) || { echo "[kubelet/build] FAILED; last lines of $logf:" >&2; tail -n 30 "$logf" >&2; exit 1; }
rm -rf "$work"
echo "$bin/kubelet"
