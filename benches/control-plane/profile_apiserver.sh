#!/usr/bin/env bash
# Takes a CPU profile of the kube-apiserver that the models bench starts, while the bench's
# load runs. Start it just before the bench, in a second shell:
#
#   bash benches/control-plane/profile_apiserver.sh 1000 40 /tmp/apiserver.prof &
#   cargo bench --workspace --bench models -- 1000
#   go tool pprof -top -cum /tmp/apiserver.prof
#
# Arguments: the bench's unit count (it names the bench's directory), the seconds to profile,
# the output file. It waits (at most 5 minutes) for the bench's control plane and its first
# Model, then reads /debug/pprof/profile as the bench's admin user.
set -euo pipefail
units=${1:-1000}
seconds=${2:-40}
out=${3:-/tmp/apiserver.prof}
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../../tests/cluster/versions.env
source "$here/../../tests/cluster/versions.env"
kubectl=${LEITWERK_CACHE:-$HOME/.cache/leitwerk}/k8s-$KUBERNETES_VERSION/bin/kubectl
[ -x "$kubectl" ] || { echo "no kubectl at $kubectl: run tests/cluster/build.sh" >&2; exit 1; }
tmp=${TMPDIR:-/tmp}

kubeconfig=""
for _ in $(seq 1 600); do
  kubeconfig=$(ls "$tmp"/leitwerk-bench-models-"$units"-*/cluster/kubeconfig 2>/dev/null | tail -1 || true)
  if [ -n "$kubeconfig" ] && "$kubectl" --kubeconfig "$kubeconfig" get --raw /readyz >/dev/null 2>&1 \
    && [ -n "$("$kubectl" --kubeconfig "$kubeconfig" get models -A --no-headers 2>/dev/null | head -1)" ]; then
    break
  fi
  kubeconfig=""
  sleep 0.5
done
[ -n "$kubeconfig" ] || { echo "no models bench with $units units started within 5 minutes" >&2; exit 1; }
echo "profiling kube-apiserver for $seconds s from $(date -u +%T) ($kubeconfig)" >&2
"$kubectl" --kubeconfig "$kubeconfig" get --raw "/debug/pprof/profile?seconds=$seconds" >"$out"
echo "wrote $out ($(wc -c <"$out") bytes)" >&2
