#!/usr/bin/env bash
# The real-kubelet probe (issue 13, point 3): a kubelet built from its Go module, Debian's
# containerd and runc, the CNI plugins, and a sandbox image built here (no registry is
# reachable), joined to a local control plane. It starts everything under DIR, runs one pod
# and reports what happened at each step. Not part of the test suite: tests/README.md records
# its findings. Usage: probe.sh DIR   (as root; stop with: probe.sh DIR --down)
# Step 6 runs the project's trainer image (tests/images.sh --profile debug trainer) when
# localhost/leitwerk-trainer:dev exists.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
dir=${1:?usage: probe.sh DIR [--down]}
mkdir -p "$dir"; dir=$(cd "$dir" && pwd)
log() { echo "[kubelet/probe] $*" >&2; }
down() {
  for p in kubelet containerd; do [ -f "$dir/$p.pid" ] && kill "$(cat "$dir/$p.pid")" 2>/dev/null; done
  sleep 2
  bash "$root/tests/cluster/down.sh" "$dir/cluster" >/dev/null 2>&1 || true
}
if [ "${2:-}" = --down ]; then down; exit 0; fi

bin=$(bash "$root/tests/cluster/build.sh" | tail -1)
kubelet=$(bash "$here/build.sh" | tail -1)
export PATH=$bin:$PATH

log "1. control plane"
bash "$root/tests/cluster/up.sh" --dir "$dir/cluster" >/dev/null || { log "control plane failed"; exit 1; }
export KUBECONFIG=$dir/cluster/kubeconfig

log "2. sandbox image: a static pause built with gcc, committed with buildah, imported into containerd"
mkdir -p "$dir/pause"
cat >"$dir/pause/pause.c" <<'C'
#include <signal.h>
#include <unistd.h>
static void stop(int s) { (void)s; _exit(0); }
int main(void) { signal(SIGTERM, stop); signal(SIGINT, stop); for (;;) pause(); }
C
gcc -static -O2 -o "$dir/pause/pause" "$dir/pause/pause.c" || { log "cannot build pause"; exit 1; }
ctr_=$(buildah from scratch) && buildah copy "$ctr_" "$dir/pause/pause" /pause >/dev/null \
  && buildah config --entrypoint '["/pause"]' "$ctr_" \
  && buildah commit -q "$ctr_" localhost/pause:3.10 >/dev/null \
  && rm -f "$dir/pause/pause.tar" && buildah push -q localhost/pause:3.10 "docker-archive:$dir/pause/pause.tar:registry.k8s.io/pause:3.10" \
  || { log "buildah could not build the pause image"; exit 1; }

log "3. containerd (CRI, overlayfs, cgroupfs, CNI from /usr/lib/cni)"
mkdir -p "$dir/containerd" "$dir/cni/net.d"
cat >"$dir/cni/net.d/10-bridge.conflist" <<'JSON'
{"cniVersion": "1.0.0", "name": "leitwerk-probe", "plugins": [
  {"type": "bridge", "bridge": "lwprobe0", "isGateway": true, "ipMasq": false,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.0.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "loopback"}]}
JSON
cat >"$dir/containerd/config.toml" <<TOML
version = 2
root = "$dir/containerd/root"
state = "$dir/containerd/state"
[grpc]
  address = "$dir/containerd/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.10"
  # Without CAP_SYS_RESOURCE (as here) no process may lower its oom_score_adj; the kubelet
  # asks -998 for every sandbox. Keep containers at or above containerd's own.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "${LEITWERK_PROBE_RUNC:-runc}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$dir/cni/net.d"
TOML
containerd --config "$dir/containerd/config.toml" >"$dir/containerd.log" 2>&1 &
echo $! >"$dir/containerd.pid"
for _ in $(seq 30); do [ -S "$dir/containerd/containerd.sock" ] && break; sleep 1; done
ctr --address "$dir/containerd/containerd.sock" -n k8s.io images import "$dir/pause/pause.tar" \
  || { log "ctr could not import the pause image"; exit 1; }

log "4. kubelet"
mkdir -p "$dir/kubelet"
cat >"$dir/kubelet/config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
failSwapOn: false
failCgroupV1: false
containerRuntimeEndpoint: unix://$dir/containerd/containerd.sock
authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}
authorization: {mode: AlwaysAllow}
# The API server reaches the kubelet (logs, exec) at the Node's Hostname address first:
# the node is named localhost so that this is 127.0.0.1. (A loopback --node-ip is refused:
# "nodeIP can't be loopback address", and the Node then has no address at all.)
address: 127.0.0.1
port: 10250
readOnlyPort: 0
healthzPort: 0
resolvConf: /etc/resolv.conf
enforceNodeAllocatable: []
cgroupsPerQOS: true
localStorageCapacityIsolation: false
YAML
"$kubelet" --config "$dir/kubelet/config.yaml" --kubeconfig "$KUBECONFIG" --root-dir "$dir/kubelet/root" \
  --cert-dir "$dir/kubelet/pki" --hostname-override localhost -v=2 \
  >"$dir/kubelet.log" 2>&1 &
echo $! >"$dir/kubelet.pid"
ready=""
for _ in $(seq 60); do
  if kubectl wait --for=condition=Ready --timeout=2s node/localhost >/dev/null 2>&1; then ready=1; break; fi
  kill -0 "$(cat "$dir/kubelet.pid")" 2>/dev/null || break
  sleep 1
done
if [ -z "$ready" ]; then
  log "the kubelet did not make node/localhost Ready; last lines of $dir/kubelet.log:"
  grep -E "^E|^F|error|Error" "$dir/kubelet.log" | tail -n 25 >&2
  exit 1
fi
log "node/localhost is Ready"

log "5. a pod running the pause image"
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
  grep -E "^E" "$dir/kubelet.log" | tail -n 15 >&2
  exit 1
fi

log "6. the project's trainer image: restricted security context, read-only root, an emptyDir, logs and a termination message"
if ! buildah inspect localhost/leitwerk-trainer:dev >/dev/null 2>&1; then
  log "no localhost/leitwerk-trainer:dev (tests/images.sh --profile debug trainer); step 6 skipped"; exit 0
fi
rm -f "$dir/trainer.tar"
buildah push -q localhost/leitwerk-trainer:dev "docker-archive:$dir/trainer.tar:localhost/leitwerk-trainer:dev" >/dev/null \
  && ctr --address "$dir/containerd/containerd.sock" -n k8s.io images import "$dir/trainer.tar" >/dev/null \
  || { log "the trainer image could not be imported"; exit 1; }
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
