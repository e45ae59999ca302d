#!/usr/bin/env bash
# Builds etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl and helm
# from their Go modules (through the Go module proxy) and caches them under
# ${LEITWERK_CACHE:-~/.cache/leitwerk}/k8s-<version>/bin. A binary that already reports the
# pinned version is not rebuilt. Prints the bin directory on its last line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

cache=${LEITWERK_CACHE:-$HOME/.cache/leitwerk}
bin=$cache/k8s-$KUBERNETES_VERSION/bin
mkdir -p "$bin"
log() { echo "[cluster/build] $*" >&2; }

fail() { # binary, log file
  log "FAILED to build $1; last lines of $2:"
  tail -n 40 "$2" >&2 || true
  exit 1
}

has_version() { # path, expected substring (grep without -q: with pipefail, -q can SIGPIPE the writer)
  [ -x "$1" ] && "$1" --version 2>/dev/null | grep -- "$2" >/dev/null
}
has_kubectl() { [ -x "$bin/kubectl" ] && "$bin/kubectl" version --client 2>/dev/null | grep -- "$KUBERNETES_VERSION" >/dev/null; }
has_helm() { [ -x "$bin/helm" ] && "$bin/helm" version --short 2>/dev/null | grep -- "$HELM_VERSION" >/dev/null; }

export GOFLAGS=-mod=mod
export GOTOOLCHAIN=${GOTOOLCHAIN:-local}

build_kubernetes() {
  local minor=${KUBERNETES_VERSION#v1.}
  local staging_version=v0.$minor
  local work; work=$(mktemp -d)
  local logf=$cache/build-kubernetes.log
  : >"$logf"
  log "building Kubernetes $KUBERNETES_VERSION (apiserver, controller-manager, scheduler, kubectl) in $work"
  (
    cd "$work"
    go mod init leitwerk.local/k8sbuild >>"$logf" 2>&1
    go mod edit -require="k8s.io/kubernetes@$KUBERNETES_VERSION"
    # The upstream module replaces every staging module with ./staging/...; resolve them to
    # the published versions instead. Read the list from upstream's go.mod.
    local gomod
    gomod=$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
    [ -n "$gomod" ] || { echo "cannot download k8s.io/kubernetes@$KUBERNETES_VERSION" >>"$logf"; exit 1; }
    grep -E '^\s*k8s.io/[a-z0-9-]+ => \./staging/' "$gomod" | awk '{print $1}' | sort -u | while read -r m; do
      go mod edit -replace="$m=$m@$staging_version"
    done
    # Keep upstream's godebug settings.
    sed -n '/^godebug/,/^)/p' "$gomod" >>go.mod
    grep -E '^godebug [a-z]' "$gomod" >>go.mod || true
    cat >tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
    go mod tidy -e >>"$logf" 2>&1 || true
    local pkg=k8s.io/component-base/version
    local cgo=k8s.io/client-go/pkg/version
    local date; date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    local ld="-s -w"
    for p in $pkg $cgo; do
      ld="$ld -X $p.gitVersion=$KUBERNETES_VERSION -X $p.gitMajor=1 -X $p.gitMinor=${minor%%.*} -X $p.gitTreeState=clean -X $p.buildDate=$date"
    done
    CGO_ENABLED=0 go build -tags tools -ldflags "$ld" -o "$bin/" \
      k8s.io/kubernetes/cmd/kube-apiserver \
      k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kube-scheduler \
      k8s.io/kubernetes/cmd/kubectl >>"$logf" 2>&1
  ) || fail "kubernetes $KUBERNETES_VERSION" "$logf"
  rm -rf "$work"
}

build_etcd() {
  local work; work=$(mktemp -d)
  local logf=$cache/build-etcd.log
  : >"$logf"
  log "building etcd $ETCD_VERSION in $work"
  (
    cd "$work"
    go mod init leitwerk.local/etcdbuild >>"$logf" 2>&1
    go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >>"$logf" 2>&1
    CGO_ENABLED=0 go build -ldflags "-s -w" -o "$bin/etcd" go.etcd.io/etcd/server/v3 >>"$logf" 2>&1
  ) || fail "etcd $ETCD_VERSION" "$logf"
  rm -rf "$work"
}

build_helm() {
  local work; work=$(mktemp -d)
  local logf=$cache/build-helm.log
  : >"$logf"
  log "building helm $HELM_VERSION in $work"
  (
    cd "$work"
    go mod init leitwerk.local/helmbuild >>"$logf" 2>&1
    go get "helm.sh/helm/v3@$HELM_VERSION" >>"$logf" 2>&1
    CGO_ENABLED=0 go build -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
      -o "$bin/helm" helm.sh/helm/v3/cmd/helm >>"$logf" 2>&1
  ) || fail "helm $HELM_VERSION" "$logf"
  rm -rf "$work"
}

has_version "$bin/etcd" "${ETCD_VERSION#v}" || build_etcd
has_helm || build_helm
if ! has_version "$bin/kube-apiserver" "$KUBERNETES_VERSION" || ! has_version "$bin/kube-scheduler" "$KUBERNETES_VERSION" \
  || ! has_version "$bin/kube-controller-manager" "$KUBERNETES_VERSION" || ! has_kubectl; then
  build_kubernetes
fi
for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl helm; do
  [ -x "$bin/$b" ] || { log "missing $bin/$b after build"; exit 1; }
done
log "binaries ready in $bin"
echo "$bin"
