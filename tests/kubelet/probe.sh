#!/usr/bin/env bash
# The real-kubelet probe (issue 13, point 3): a kubelet built from its Go module, Debian's
# containerd and runc, the CNI plugins, and a sandbox image built here (no registry is
# reachable), joined to a local control plane. It starts everything under DIR, runs one pod
# and reports what happened at each step. Not part of the test suite: tests/README.md records
# its findings. Usage: probe.sh DIR   (as root; stop with: probe.sh DIR --down)
# Step 4 runs the project's trainer image (tests/images.sh --profile debug trainer) when
# localhost/leitwerk-trainer:dev exists.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
dir=${1:?usage: probe.sh DIR [--down]}
mkdir -p "$dir"; dir=$(cd "$dir" && pwd)
log() { echo "[kubelet/probe] $*" >&2; }
down() {
  bash "$here/down.sh" "$dir/node"
  bash "$root/tests/cluster/down.sh" "$dir/cluster" >/dev/null 2>&1 || true
}
if [ "${2:-}" = --down ]; then down; exit 0; fi

bin=$(bash "$root/tests/cluster/build.sh" | tail -1)
export PATH=$bin:$PATH

log "1. control plane"
bash "$root/tests/cluster/up.sh" --dir "$dir/cluster" >/dev/null || { log "control plane failed"; exit 1; }
export KUBECONFIG=$dir/cluster/kubeconfig

log "2. a real node: containerd, runc, the CNI bridge, the kubelet (tests/kubelet/up.sh)"
trainer=()
buildah inspect localhost/leitwerk-trainer:dev >/dev/null 2>&1 && trainer=(--image localhost/leitwerk-trainer:dev)
KUBECTL=$bin/kubectl bash "$here/up.sh" --dir "$dir/node" "${trainer[@]}" || exit 1

log "3. a pod running the pause image"
kubectl apply -f - <<'YAML' >/dev/null
apiVersion: v1
kind: Pod
metadata: {name: probe, namespace: default}
spec:
  nodeName: localhost
  containers: [{name: pause, image: registry.k8s.io/pause:3.10, imagePullPolicy: Never}]
YAML
if kubectl wait --for=condition=Ready --timeout=60s pod/probe >/dev/null 2>&1; then
  log "pod/probe is Running on the real kubelet"
else
  log "pod/probe did not start:"
  kubectl get pod probe -o jsonpath='{.status}' >&2; echo >&2
  kubectl get events --field-selector involvedObject.name=probe -o custom-columns=REASON:.reason,MESSAGE:.message >&2
  grep -E "^E" "$dir/node/kubelet.log" | tail -n 15 >&2
  exit 1
fi

log "4. the project's trainer image: restricted security context, read-only root, an emptyDir, logs and a termination message"
if [ ${#trainer[@]} = 0 ]; then
  log "no localhost/leitwerk-trainer:dev (tests/images.sh --profile debug trainer); step 6 skipped"; exit 0
fi
pod() { # name, args (JSON list)
  cat <<YAML
apiVersion: v1
kind: Pod
metadata: {name: $1, namespace: default}
spec:
  nodeName: localhost
  restartPolicy: Never
  securityContext: {runAsNonRoot: true, runAsUser: 65532, seccompProfile: {type: RuntimeDefault}}
  containers:
    - name: trainer
      image: localhost/leitwerk-trainer:dev
      imagePullPolicy: Never
      args: $2
      terminationMessagePolicy: FallbackToLogsOnError
      securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
      volumeMounts: [{name: out, mountPath: /out}]
  volumes: [{name: out, emptyDir: {}}]
YAML
}
pod generate '["generate", "leads", "--count", "50", "--out", "/out/leads"]' | kubectl apply -f - >/dev/null
pod refuse '["generate", "churn", "--count", "5", "--months", "1", "--out", "/out/churn"]' | kubectl apply -f - >/dev/null
for p in generate refuse; do
  for _ in $(seq 60); do
    phase=$(kubectl get pod $p -o jsonpath='{.status.phase}')
    case $phase in Succeeded|Failed) break ;; esac
    sleep 1
  done
  log "pod/$p: $phase; termination message: $(kubectl get pod $p -o jsonpath='{.status.containerStatuses[0].state.terminated.message}' | tail -c 200)"
  log "kubectl logs pod/$p: $(kubectl logs $p 2>&1 | tail -c 300)"
done
