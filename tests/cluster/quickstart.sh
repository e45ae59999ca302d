#!/usr/bin/env bash
# The quick start: build (once) and start a local control plane, install the CRDs and the
# operator's RBAC, run the operator as the user "leitwerk-operator", apply every example into
# the namespace leitwerk-demo and show `kubectl get leitwerk`.
# Stop everything with: tests/cluster/quickstart.sh --down
# Environment: LEITWERK_QUICKSTART_DIR (state, default ~/.cache/leitwerk/quickstart),
# LEITWERK_OPERATOR_BIN (use this binary instead of building one), LEITWERK_METRICS_PORT (18080).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
state=${LEITWERK_QUICKSTART_DIR:-$HOME/.cache/leitwerk/quickstart}
if [ "${1:-}" = "--down" ]; then
  [ -f "$state/operator.pid" ] && kill "$(cat "$state/operator.pid")" 2>/dev/null || true
  bash "$root/tests/cluster/down.sh" "$state"
  echo "quick start stopped"
  exit 0
fi
cd "$root"
echo "== set-up (tests/setup.sh: what a fresh machine lacks)"
bash tests/setup.sh
operator=${LEITWERK_OPERATOR_BIN:-}
if [ -z "$operator" ]; then
  echo "== building the operator"
  cargo build -q -p leitwerk-operator
  operator=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/leitwerk-operator
fi
port=${LEITWERK_METRICS_PORT:-18080}
echo "== starting the control plane (first run builds Kubernetes from source: ~15 min)"
bash tests/cluster/up.sh --dir "$state" >/dev/null
export KUBECONFIG=$state/kubeconfig
k8s_bin=$(sed -n 's/^LEITWERK_K8S_BIN=//p' "$state/env")
kubectl() { "$k8s_bin/kubectl" "$@"; }
echo "== installing the CRDs and the operator's RBAC"
kubectl apply --server-side -f config/crd/bases/ >/dev/null
# A CRD read before the API server wrote its first status has no conditions, and kubectl wait
# then fails at once ("… <nil> is of the type <nil>") instead of waiting: try again, bounded.
for attempt in $(seq 1 30); do
  if kubectl wait --for=condition=Established --timeout=60s crd --all >/dev/null 2>&1; then break; fi
  if [ "$attempt" = 30 ]; then kubectl wait --for=condition=Established --timeout=5s crd --all >/dev/null; fi
  sleep 1
done
kubectl apply --server-side -f config/rbac/role.yaml >/dev/null
kubectl create namespace leitwerk-demo --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl apply -n leitwerk-demo -f config/rbac/leader_election_role.yaml >/dev/null
kubectl apply -f - >/dev/null <<'YAML'
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: leitwerk-operator-quickstart}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: leitwerk-operator}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: leitwerk-operator}]
YAML
kubectl apply -n leitwerk-demo -f - >/dev/null <<'YAML'
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: leitwerk-leader-election-quickstart}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: leitwerk-leader-election}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: leitwerk-operator}]
YAML
echo "== starting the operator (log: $state/operator.log, metrics: http://127.0.0.1:$port/metrics)"
[ -f "$state/operator.pid" ] && kill "$(cat "$state/operator.pid")" 2>/dev/null || true
KUBECONFIG=$state/operator.kubeconfig setsid "$operator" \
  --metrics-addr "127.0.0.1:$port" --lease-namespace leitwerk-demo >"$state/operator.log" 2>&1 </dev/null &
echo $! >"$state/operator.pid"
echo "== applying the examples into leitwerk-demo"
kubectl apply -n leitwerk-demo -k examples/ >/dev/null
for _ in $(seq 1 60); do
  [ "$(kubectl get leitwerk -n leitwerk-demo -o jsonpath='{range .items[*]}{.status.phase}{"\n"}{end}' | grep -c .)" -ge 9 ] && break
  sleep 0.5
done
kubectl get leitwerk -n leitwerk-demo
echo
echo "KUBECONFIG=$KUBECONFIG  (stop with: tests/cluster/quickstart.sh --down)"
