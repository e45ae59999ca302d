#!/usr/bin/env bash
# The quick start: the whole story on this machine, from one command.
#
# Builds the binaries (once; incrementally after), starts a local control plane (built from
# Kubernetes' Go modules once), installs the CRDs and the operator's RBAC, generates the
# examples' data on a local volume, joins a node, runs the operator, applies the examples into
# the namespace leitwerk-demo, and waits for the story:
# the lead-scoring FeatureSet published, the Model trained and serving (an OIP v2 request and
# its score printed), the product-docs RagIndex serving (a query and its answer printed), a
# canary promoted and a worse one rolled back, and a grounded article approved and published.
# Every step prints how long it took. A second run reuses what the first built and runs.
#
# The node: where this machine can host one (root, containerd, runc, buildah and the CNI
# plugins), a real kubelet (tests/kubelet/up.sh) runs the pods in the project's own images
# (tests/images.sh), with a pod network and one GPU advertised for scheduling; otherwise the
# development node `leitwerk-dev` (the node stand-in) runs them as local processes of the
# project's binaries, and the quick start says why. LEITWERK_QUICKSTART_NODE=kubelet or
# stand-in chooses one (default: auto).
#
# Stop everything with: tests/cluster/quickstart.sh --down
# Environment: LEITWERK_QUICKSTART_DIR (state, default ~/.cache/leitwerk/quickstart),
# LEITWERK_BIN_DIR (a directory holding the four binaries, instead of building them),
# LEITWERK_METRICS_PORT (the operator's metrics, default 18080),
# LEITWERK_QUICKSTART_TIMEOUT (seconds each wait may take, default 600),
# LEITWERK_QUICKSTART_NODE (auto, kubelet or stand-in; see above).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
state=${LEITWERK_QUICKSTART_DIR:-$HOME/.cache/leitwerk/quickstart}
ns=leitwerk-demo
timeout=${LEITWERK_QUICKSTART_TIMEOUT:-600}

stop_pid() { # file: SIGTERM the process it names, and wait for it to go
  [ -f "$1" ] || return 0
  local pid
  pid=$(cat "$1")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$1"
}
if [ "${1:-}" = "--down" ]; then
  for process in traffic generator operator targets node prometheus; do stop_pid "$state/$process.pid"; done
  bash "$root/tests/kubelet/down.sh" "$state/kubelet"
  bash "$root/tests/cluster/down.sh" "$state"
  echo "quick start stopped"
  exit 0
fi
cd "$root"

started=$(date +%s) step_name="" step_start=$started
step() { # name: ends the step before (printing its time) and starts the next
  local now
  now=$(date +%s)
  [ -n "$step_name" ] && echo "   done in $((now - step_start)) s"
  step_name=$1 step_start=$now
  [ -n "$1" ] && echo "== $1"
  return 0
}
fail() {
  echo "quick start: $*" >&2
  [ -f "$state/operator.log" ] && { echo "-- operator log (last 20 lines):" >&2; tail -20 "$state/operator.log" >&2; }
  exit 1
}
# wait_for WHAT COMMAND...: runs COMMAND every second until it succeeds, up to $timeout s.
wait_for() {
  local what=$1
  shift
  local deadline=$(($(date +%s) + timeout))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "gave up after ${timeout} s waiting for $what"
    sleep 1
  done
}

step "set-up (tests/setup.sh: what a fresh machine lacks)"
bash tests/setup.sh
ort=$(bash tests/onnxruntime.sh)
minilm=$(bash tests/minilm.sh)

bin=${LEITWERK_BIN_DIR:-}
if [ -z "$bin" ]; then
  step "building the binaries (cargo build --workspace --bins)"
  cargo build -q --workspace --bins
  bin=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug
fi
for b in leitwerk-operator leitwerk-trainer leitwerk-inference-server leitwerk-dev kubectl-leitwerk; do
  [ -x "$bin/$b" ] || fail "$bin/$b is not built: run cargo build --workspace --bins"
done

step "the control plane (the first run builds Kubernetes from source: ~15 min)"
mkdir -p "$state"
if [ -f "$state/kubeconfig" ] && [ -f "$state/pids" ] && [ -f "$state/env" ] &&
  "$(sed -n 's/^LEITWERK_K8S_BIN=//p' "$state/env")/kubectl" --kubeconfig "$state/kubeconfig" \
    get --raw /readyz >/dev/null 2>&1; then
  echo "   already running"
  reused=yes
else
  reused=""
  rm -f "$state/node.kind"
  bash tests/cluster/up.sh --dir "$state" >/dev/null
fi
export KUBECONFIG=$state/kubeconfig
k8s_bin=$(sed -n 's/^LEITWERK_K8S_BIN=//p' "$state/env")
kubectl() { "$k8s_bin/kubectl" "$@"; }
# `kubectl leitwerk`, the plugin, is found on the PATH.
export PATH="$bin:$PATH"

step "the CRDs, the operator's RBAC and the namespace $ns"
kubectl apply --server-side -f config/crd/bases/ >/dev/null
# A CRD read before the API server wrote its first status has no conditions, and kubectl wait
# then fails at once ("… <nil> is of the type <nil>") instead of waiting: try again, bounded.
for attempt in $(seq 1 30); do
  if kubectl wait --for=condition=Established --timeout=60s crd --all >/dev/null 2>&1; then break; fi
  if [ "$attempt" = 30 ]; then kubectl wait --for=condition=Established --timeout=5s crd --all >/dev/null; fi
  sleep 1
done
# The Gateway API's CRDs: Experiments split traffic through an HTTPRoute.
kubectl apply --server-side -f "$(bash tests/cluster/gateway-api.sh)" >/dev/null
kubectl apply --server-side -f config/rbac/role.yaml >/dev/null
kubectl create namespace $ns --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl apply -n $ns -f config/rbac/leader_election_role.yaml >/dev/null
kubectl apply -f - >/dev/null <<'YAML'
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: leitwerk-operator-quickstart}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: leitwerk-operator}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: leitwerk-operator}]
YAML
kubectl apply -n $ns -f - >/dev/null <<'YAML'
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: leitwerk-leader-election-quickstart}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: leitwerk-leader-election}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: leitwerk-operator}]
YAML

step "data and artifacts on local volumes ($state/volumes)"
data=$state/volumes/leitwerk-data artifacts=$state/volumes/leitwerk-artifacts
mkdir -p "$data" "$artifacts"
[ -f "$data/leads.csv" ] || "$bin/leitwerk-trainer" generate leads --seed 11 --count 4000 --out "$data" >/dev/null
[ -f "$data/customers.csv" ] || "$bin/leitwerk-trainer" generate churn --seed 11 --out "$data" >/dev/null
for claim in leitwerk-data leitwerk-artifacts; do
  kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: PersistentVolume
metadata: {name: $ns-$claim}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteMany]
  storageClassName: standin
  claimRef: {namespace: $ns, name: $claim}
  hostPath: {path: $state/volumes/$claim}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: $claim, namespace: $ns}
spec:
  accessModes: [ReadWriteMany]
  storageClassName: standin
  resources: {requests: {storage: 1Gi}}
YAML
done

node_kind=${LEITWERK_QUICKSTART_NODE:-auto}
case $node_kind in auto | kubelet | stand-in) ;; *) fail "LEITWERK_QUICKSTART_NODE=$node_kind: choose auto, kubelet or stand-in" ;; esac
# A control plane that ran before keeps the node it had.
[ -n "$reused" ] && [ -f "$state/node.kind" ] && node_kind=$(cat "$state/node.kind")
images_stamp() { stat -c '%n %s %Y' "$bin/leitwerk-trainer" "$bin/leitwerk-inference-server"; }
# kubelet_up: joins the real node with this build's images; 3 when this machine cannot host one.
kubelet_up() {
  if kill -0 "$(cat "$state/kubelet/kubelet.pid" 2>/dev/null)" 2>/dev/null &&
    [ "$(cat "$state/kubelet/images.stamp" 2>/dev/null)" = "$(images_stamp)" ] &&
    kubectl wait --for=condition=Ready --timeout=5s node/localhost >/dev/null 2>&1; then
    echo "   already running"
    return 0
  fi
  bash tests/kubelet/down.sh "$state/kubelet"
  [ "$(id -u)" = 0 ] || { echo "it needs root (containerd, runc and the kubelet run as root)" >"$state/kubelet-up.log"; return 3; }
  command -v buildah >/dev/null || { echo "buildah is missing (Debian: apt-get install -y buildah)" >"$state/kubelet-up.log"; return 3; }
  echo "   the images of this build (tests/images.sh; log: $state/images.log)"
  bash tests/images.sh --from "$bin" trainer inference-server >"$state/images.log" 2>&1 ||
    { echo "tests/images.sh failed; its log: $state/images.log" >"$state/kubelet-up.log"; return 1; }
  echo "   the node (tests/kubelet/up.sh; kubelet log: $state/kubelet/kubelet.log)"
  local rc=0
  KUBECTL="$k8s_bin/kubectl" bash tests/kubelet/up.sh --dir "$state/kubelet" --gpus 1 \
    --image localhost/leitwerk-trainer:dev --image localhost/leitwerk-inference-server:dev \
    2>"$state/kubelet-up.log" || rc=$?
  [ $rc = 0 ] && images_stamp >"$state/kubelet/images.stamp"
  return $rc
}
# The pods run as user 65532 (on a real node and on the stand-in), and hostPath volumes keep
# this machine's owners: open them as a local-path provisioner does.
chmod -R a+rwX "$data" "$artifacts"
if [ "$node_kind" != stand-in ]; then
  step "a real node: a kubelet with containerd, running the project's images"
  stop_pid "$state/node.pid"
  rc=0
  kubelet_up || rc=$?
  if [ $rc = 0 ]; then
    node_kind=kubelet
  elif [ $rc = 3 ] && [ "$node_kind" = auto ]; then
    echo "   !!! this machine cannot host a real node: $(grep -v '^$' "$state/kubelet-up.log" | tail -1 | sed 's/^\[kubelet\/up\] //')"
    echo "   !!! the node stand-in runs the pods instead, as processes (see tests/README.md)"
    node_kind=stand-in
  else
    fail "the real node did not come up: $(tail -5 "$state/kubelet-up.log")"
  fi
fi
if [ "$node_kind" = stand-in ]; then
  step "a development node (leitwerk-dev, the node stand-in; log: $state/node.log)"
  bash tests/kubelet/down.sh "$state/kubelet"
  stop_pid "$state/node.pid"
  mkdir -p "$state/prometheus"
  setsid "$bin/leitwerk-dev" node --name leitwerk-dev-node --gpus 1 --root "$state/node" \
    --image "leitwerk-trainer:dev=$bin/leitwerk-trainer" \
    --image "leitwerk-inference-server:dev=$bin/leitwerk-inference-server" \
    --env "ORT_DYLIB_PATH=$ort" --env "LEITWERK_EMBEDDING_MODEL_DIR=$minilm" \
    --ports-file "$state/ports.json" --prometheus-targets "$state/prometheus/targets.json" \
    >"$state/node.log" 2>&1 </dev/null &
  echo $! >"$state/node.pid"
  wait_for "the node to be Ready" kubectl wait --for=condition=Ready --timeout=5s node/leitwerk-dev-node
fi
echo "$node_kind" >"$state/node.kind"

step "Prometheus, scraping every serving pod and the operator each second (log: $state/prometheus/log)"
stop_pid "$state/prometheus.pid"
prometheus_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$state/prometheus"
stop_pid "$state/targets.pid"
if [ "$node_kind" = kubelet ]; then
  # What the chart's README recommends without the Prometheus Operator is a
  # kubernetes_sd_configs job; Debian's Prometheus is built without Kubernetes discovery, so
  # `leitwerk-dev targets` finds the serving pods through the API server instead and labels each
  # with its real namespace.
  setsid "$bin/leitwerk-dev" targets --namespace $ns --file "$state/prometheus/targets.json" \
    >"$state/targets.log" 2>&1 </dev/null &
  echo $! >"$state/targets.pid"
fi
cat >"$state/prometheus/prometheus.yml" <<YAML
global: {scrape_interval: 1s, evaluation_interval: 1s, scrape_timeout: 900ms}
scrape_configs:
  - job_name: leitwerk
    file_sd_configs: [{files: ['$state/prometheus/targets.json'], refresh_interval: 1s}]
  - job_name: leitwerk-operator
    static_configs: [{targets: ['127.0.0.1:${LEITWERK_METRICS_PORT:-18080}']}]
YAML
setsid "${LEITWERK_PROMETHEUS:-prometheus}" --config.file="$state/prometheus/prometheus.yml" \
  --storage.tsdb.path="$state/prometheus/data" --web.listen-address="127.0.0.1:$prometheus_port" \
  --storage.tsdb.retention.time=1d >"$state/prometheus/log" 2>&1 </dev/null &
echo $! >"$state/prometheus.pid"
echo "$prometheus_port" >"$state/prometheus.port"
for attempt in $(seq "$timeout"); do
  kill -0 "$(cat "$state/prometheus.pid")" 2>/dev/null || fail "Prometheus stopped: $(tail -2 "$state/prometheus/log")"
  curl -sf "http://127.0.0.1:$prometheus_port/-/ready" >/dev/null && break
  [ "$attempt" -lt "$timeout" ] || fail "gave up after ${timeout} s waiting for Prometheus to be ready"
  sleep 1
done

port=${LEITWERK_METRICS_PORT:-18080}
step "the operator (log: $state/operator.log, metrics: http://127.0.0.1:$port/metrics)"
stop_pid "$state/operator.pid"
registry=""
[ "$node_kind" = kubelet ] && registry=localhost/
printf 'trainerImage: %sleitwerk-trainer:dev\ninferenceServerImage: %sleitwerk-inference-server:dev\nprometheusUrl: http://127.0.0.1:%s\n' \
  "$registry" "$registry" "$prometheus_port" >"$state/operator.yaml"
KUBECONFIG=$state/operator.kubeconfig setsid "$bin/leitwerk-operator" --config "$state/operator.yaml" \
  --metrics-addr "127.0.0.1:$port" --lease-namespace $ns >"$state/operator.log" 2>&1 </dev/null &
echo $! >"$state/operator.pid"

step "the examples into $ns"
# Every example that runs on what this machine has. Not seo-article, whose generators are a
# hosted API and a GPU sidecar, nor creative-bandit, which serves an ONNX file of your own
# (`file:///models/creative-ranker/v3.onnx`); both pass server-side validation in the tests.
# The canary comes later, with traffic. Created once: a second run keeps what the first made
# and steered (`--down` and run again to replay from scratch).
cpus=$(nproc)
fit() { cat; }
if [ "$node_kind" = kubelet ] && [ "$cpus" -lt 8 ]; then
  # A real kubelet admits pods by the CPUs it has; the examples are sized for a cluster.
  echo "   this node has $cpus CPUs: the examples' CPU requests are scaled to fit (training 2 → 500m, serving 500m → 200m)"
  fit() { sed -e 's/cpu: 500m/cpu: 200m/' -e 's/cpu: "2"/cpu: 500m/'; }
fi
for example in lead-scoring churn product-docs-rag; do
  for file in examples/$example/*.yaml; do
    kubectl get -n $ns -f "$file" >/dev/null 2>&1 || fit <"$file" | kubectl create -n $ns -f - >/dev/null
  done
done

phase() { kubectl get -n $ns "$1" -o jsonpath='{.status.phase}'; }
is_phase() { [ "$(phase "$1")" = "$2" ]; }
step "the lead-scoring FeatureSet: materialized and published"
wait_for "featureset/lead-features to be Ready" is_phase featureset/lead-features Ready
echo "   $(kubectl get -n $ns featureset/lead-features -o jsonpath='{.status.currentVersion}: {.status.rows} rows, quality {.status.quality}')"

step "the lead-scoring Model: trained, registered and serving"
wait_for "model/lead-scoring to be Serving" is_phase model/lead-scoring Serving
echo "   $(kubectl get -n $ns model/lead-scoring -o jsonpath='{.status.servingVersion}')" \
  "AUC $(kubectl get -n $ns model/lead-scoring -o jsonpath='{.status.versions[?(@.state=="Serving")].metrics.auc}')"

# endpoint PREFIX: the address of a serving pod's REST API whose name starts with PREFIX. On a
# real node, a Ready pod's own address; on the stand-in, its loopback port from the ports file.
endpoint() {
  if [ "$node_kind" = kubelet ]; then
    kubectl get pods -n $ns -o json | python3 -c '
import json, sys
for pod in json.load(sys.stdin)["items"]:
    status, meta = pod.get("status", {}), pod["metadata"]
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", []))
    if meta["name"].startswith(sys.argv[1]) and ready and "deletionTimestamp" not in meta and status.get("podIP"):
        port = next(p["containerPort"] for c in pod["spec"]["containers"] for p in c.get("ports", []) if p.get("name") == "http")
        print("%s:%d" % (status["podIP"], port))
        sys.exit(0)
sys.exit(1)' "$1"
  else
    python3 - "$state/ports.json" "$ns/$1" <<'PY'
import json, sys
ports = json.load(open(sys.argv[1]))
print("127.0.0.1:%d" % next(p[0] for k, p in ports.items() if k.startswith(sys.argv[2])))
PY
  fi
}
ready() { curl -sf "http://$(endpoint "$1")/$2" >/dev/null; }
step "a prediction: POST /v2/models/lead-scoring/infer"
wait_for "a lead-scoring serving pod" ready lead-scoring-serving v2/health/ready
url=$(kubectl get -n $ns model/lead-scoring -o jsonpath='{.status.versions[?(@.state=="Serving")].artifactUrl}')
card=$artifacts${url#file:///var/lib/leitwerk/artifacts}
request=$(python3 - "${card%/*}/card.json" <<'PY'
import json, sys
card = json.load(open(sys.argv[1]))
example = card["examples"][0]["inputs"]
inputs = [{"name": name, "datatype": kind, "shape": [1, 1], "data": [example[name]]}
          for name, kind in card["inputs"]]
print(json.dumps({"inputs": inputs}))
PY
)
at=$(endpoint lead-scoring-serving) || fail "no Ready lead-scoring serving pod"
echo "   POST http://$at/v2/models/lead-scoring/infer"
answer=$(curl -sf "http://$at/v2/models/lead-scoring/infer" \
  -H 'content-type: application/json' -d "$request") || fail "the prediction request failed"
echo "   request:  $request" | cut -c1-160
echo "   response: $answer"
echo "   score: $(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["outputs"][0]["data"][0])' "$answer")"
# A wrong request is refused with the field named, and counted (the dashboards' error panels).
wrong=$(echo "$request" | sed 's/"FP32"/"BYTES"/')
echo "   a wrong request (a BYTES input): $(curl -s "http://$at/v2/models/lead-scoring/infer" -H 'content-type: application/json' -d "$wrong" | cut -c1-160)"

step "the product-docs RagIndex: indexed, evaluated and serving"
wait_for "ragindex/product-docs to be Ready" is_phase ragindex/product-docs Ready
wait_for "a retrieval pod" ready product-docs-retrieval v2/health/ready
query='{"query": "Is there a discount for charities?", "topK": 3}'
hits=$(curl -sf "http://$(endpoint product-docs-retrieval)/v1/indexes/product-docs/query" \
  -H 'content-type: application/json' -d "$query") || fail "the retrieval query failed"
echo "   query: $query"
python3 - "$hits" <<'PY'
import json, sys
for hit in json.loads(sys.argv[1]).get("results", [])[:3]:
    print(f"   {hit['score']:.3f}  {hit['document']} ({hit['title']}): {hit['text'][:80]!r}")
PY

version_state() { # version → its state in lead-scoring's status
  kubectl get -n $ns model/lead-scoring -o jsonpath="{.status.versions[?(@.version==\"$1\")].state}"
}
has_state() { [ "$(version_state "$1")" = "$2" ]; }
# The visitors: 3,000 rows of the FeatureSet's training split as OIP v2 requests, so that the
# served inputs follow the distribution the model was trained on (the drift gate measures it).
snapshot=$(kubectl get -n $ns featureset/lead-features -o jsonpath='{.status.snapshot}')
"$bin/leitwerk-trainer" requests --snapshot "file://$artifacts${snapshot#file:///var/lib/leitwerk/artifacts}" \
  --split train --limit 3000 --seed 5 | python3 -c 'import json,sys; print(json.dumps([json.loads(l) for l in sys.stdin]))' \
  >"$state/requests.json" || fail "could not make the visitors' requests from the FeatureSet"
# The canary-rollout example, quicker: 10 s intervals, three steps, the conversion-rate KPI and
# the drift gate only.
canary() {
  kubectl apply -n $ns -f - >/dev/null <<'YAML'
apiVersion: leitwerk.dev/v1alpha1
kind: Experiment
metadata: {name: lead-scoring-canary}
spec:
  variants:
    - {name: stable, modelRef: {name: lead-scoring}, role: Stable}
    - {name: canary, modelRef: {name: lead-scoring}, role: Candidate}
  strategy: {type: Canary, canary: {steps: [25, 50, 100]}}
  kpis:
    - name: conversion-rate
      query: >-
        (sum(increase(leitwerk_inference_outcomes_total{namespace="{{namespace}}",experiment="{{experiment}}",variant="{{variant}}",outcome="converted"}[{{interval}}])) or vector(0))
        / sum(increase(leitwerk_inference_predictions_total{namespace="{{namespace}}",experiment="{{experiment}}",variant="{{variant}}"}[{{interval}}]))
      sampleQuery: sum(increase(leitwerk_inference_predictions_total{namespace="{{namespace}}",experiment="{{experiment}}",variant="{{variant}}"}[{{interval}}]))
      min: 0.8
      relativeToStable: true
      minSamples: 80
  driftGate: {maxPsi: 0.25, window: 60s, minRows: 150}
  interval: 10s
  failureLimit: 0
  inconclusiveLimit: 8
  consecutiveErrorLimit: 3
YAML
}
# On the stand-in, pods are reached on loopback ports; on a real node, at their pod addresses.
reach=()
[ "$node_kind" = stand-in ] && reach=(--ports-file "$state/ports.json")
traffic() { # stable rate, canary rate: visitors who convert at these true rates
  stop_pid "$state/traffic.pid"
  setsid "$bin/leitwerk-dev" traffic --namespace $ns --experiment lead-scoring-canary \
    --model lead-scoring --requests "$state/requests.json" "${reach[@]}" \
    --truth "stable=$1" --truth "canary=$2" --rate 40 --max-requests 200000 \
    >>"$state/traffic.log" 2>&1 </dev/null &
  echo $! >"$state/traffic.pid"
}
experiment() { kubectl get -n $ns experiment/lead-scoring-canary -o jsonpath="$1"; }
ended() { case "$(phase experiment/lead-scoring-canary)" in Promoted | RolledBack | Concluded) return 0 ;; *) return 1 ;; esac; }
ends_in() { # the phase the canary must end in; another end fails at once, with its decisions
  wait_for "the canary to end ($1)" ended
  is_phase experiment/lead-scoring-canary "$1" ||
    fail "the canary ended $(phase experiment/lead-scoring-canary), not $1:
$(decisions 10)"
}
decisions() { experiment '{range .status.decisions[*]}{"   "}{.action}: {.message}{"\n"}{end}' | tail -"$1"; }
retrain() { # l2, version: a changed spec trains the next version, a Candidate while one serves
  kubectl patch -n $ns model/lead-scoring --type merge \
    -p "{\"spec\":{\"algorithm\":{\"logisticRegression\":{\"l2\":$1,\"maxIterations\":300}}}}" >/dev/null
  wait_for "lead-scoring $2 to be a Candidate" has_state "$2" Candidate
}
if ! kubectl get -n $ns experiment/lead-scoring-canary >/dev/null 2>&1; then
  step "a better version, canaried by conversion rate (traffic log: $state/traffic.log)"
  retrain 0.1 v2
  echo "   v2 trained: AUC $(kubectl get -n $ns model/lead-scoring -o jsonpath='{.status.versions[?(@.version=="v2")].metrics.auc}'); visitors convert at 5 % on stable, 20 % on canary"
  canary
  traffic 0.05 0.20
  ends_in Promoted
  decisions 50
  wait_for "v2 to serve" has_state v2 Serving

  step "a worse version, retrained and canaried again by hand (kubectl leitwerk), rolled back"
  stop_pid "$state/traffic.pid"
  echo "   $(kubectl leitwerk retrain model/lead-scoring -n $ns --by quickstart)"
  wait_for "lead-scoring v3 to be a Candidate" has_state v3 Candidate
  echo "   v3 trained; visitors convert at 10 % on stable, 1 % on canary"
  echo "   $(kubectl leitwerk retry experiment/lead-scoring-canary -n $ns --by quickstart)"
  traffic 0.10 0.01
  ends_in RolledBack
  decisions 1
  stop_pid "$state/traffic.pid"
  echo "   serving: $(kubectl get -n $ns model/lead-scoring -o jsonpath='{.status.servingVersion}')"
else
  echo "   the canary ran before: $(phase experiment/lead-scoring-canary), serving $(kubectl get -n $ns model/lead-scoring -o jsonpath='{.status.servingVersion}')"
fi

if ! kubectl get -n $ns contentpipeline/ab-testing-article >/dev/null 2>&1; then
  step "a grounded article: drafted, fact-checked, approved by hand, published into a ConfigMap"
  # The generator is the tests' stand-in, NOT a model: it quotes the sources in its prompt
  # (a small local model does not write grounded articles). See tests/README.md.
  stop_pid "$state/generator.pid"
  rm -f "$state/generator.url"
  listen=127.0.0.1
  if [ "$node_kind" = kubelet ]; then
    # The article is written in a pod: the generator listens on the node bridge's address.
    listen=$(ip -4 -o addr show lwnode0 | awk '{print $4}' | cut -d/ -f1)
    [ -n "$listen" ] || fail "the node bridge lwnode0 has no address"
  fi
  setsid "$bin/leitwerk-dev" generator --url-file "$state/generator.url" --listen "$listen" \
    >"$state/generator.log" 2>&1 </dev/null &
  echo $! >"$state/generator.pid"
  wait_for "the generator stand-in" test -s "$state/generator.url"
  kubectl apply -n $ns -f examples/seo-article/links-configmap.yaml >/dev/null
  kubectl apply -n $ns -f - >/dev/null <<YAML
apiVersion: leitwerk.dev/v1alpha1
kind: ContentPipeline
metadata: {name: ab-testing-article}
spec:
  briefing:
    goal: Explain how Lumen Mail runs A/B tests for newsletters
    persona: E-commerce marketing manager
    entities: [Lumen Mail]
    structure: [A/B tests, Deliverability, Pricing]
    keywords: [Lumen Mail]
    language: en
  ragIndexRef: {name: product-docs}
  generators:
    - name: writer
      openAiCompatible: {url: "$(cat "$state/generator.url")", model: stand-in}
      inputPricePer1kTokens: 0.01
      outputPricePer1kTokens: 0.03
      sampling: {temperature: 0, maxTokens: 400, seed: 7}
  maxRevisions: 1
  linkMapRef: {name: seo-links}
  guardrails: {minGroundedClaims: 1.0, bannedPhrases: [guaranteed results]}
  budget: {maxTokens: 60000, maxCost: 5, currency: EUR}
  approval: {required: true, approvers: [editors@example.com]}
  publish:
    configMap: {name: ab-testing-article}
    canonicalUrl: https://example.com/blog/ab-tests
    organization: Lumen Mail
YAML
  wait_for "the article to await approval" is_phase contentpipeline/ab-testing-article AwaitingApproval
  echo "   $(kubectl get -n $ns contentpipeline/ab-testing-article -o jsonpath='run {.status.run.id}: {.status.grounded} claims grounded, {.status.tokensUsed} tokens, {.status.cost}')"
  echo "   $(kubectl leitwerk approve contentpipeline/ab-testing-article -n $ns --by editors@example.com)"
  wait_for "the article to be published" is_phase contentpipeline/ab-testing-article Published
  echo "   configmap/ab-testing-article, article.md:"
  kubectl get -n $ns configmap/ab-testing-article -o jsonpath='{.data.article\.md}' | head -6 | sed 's/^/     | /'
  stop_pid "$state/generator.pid"
else
  echo "   the article ran before: $(phase contentpipeline/ab-testing-article)"
fi

step ""
kubectl leitwerk status model/lead-scoring -n $ns
echo
kubectl get leitwerk -n $ns
echo
case $node_kind in
  kubelet) echo "The pods ran on a real kubelet (node/localhost), in the project's images." ;;
  *) echo "The pods ran on the node stand-in (leitwerk-dev), as processes of the project's binaries." ;;
esac
echo "The whole story took $(($(date +%s) - started)) s."
echo "KUBECONFIG=$KUBECONFIG  (stop with: tests/cluster/quickstart.sh --down)"
