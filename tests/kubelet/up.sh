#!/usr/bin/env bash
# Joins a real node to the control plane of $KUBECONFIG: a kubelet built from its Go module
# (build.sh), Debian's containerd and runc, the CNI bridge plugin, and a sandbox ("pause")
# image built here, since no registry is reachable. The Node is named localhost, so that the
# API server reaches the kubelet (logs) on 127.0.0.1:10250. Each --image (a buildah image,
# e.g. localhost/leitwerk-trainer:dev from tests/images.sh) is imported into containerd.
# With --gpus N the Node advertises N `nvidia.com/gpu` and carries the label
# nvidia.com/gpu.present=true, so that GPU workloads schedule: the extended resource is added to
# the Node's status as Kubernetes documents for node-level extended resources ("Advertise
# Extended Resources for a Node"), which the kubelet keeps and admits pods against. It is a
# GPU stand-in for scheduling only: no device plugin runs and no device reaches the container.
# Usage: up.sh --dir DIR [--gpus N] [--image IMAGE ...]   (as root). Stop with: down.sh DIR
# Exits 3, naming what is missing or what failed, when this machine cannot host a node: a
# prerequisite is missing, or the kubelet cannot be built, containerd cannot start or import
# the sandbox image, or the node never becomes Ready. Other failures exit 1.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir="" images=() gpus=0
while [ $# -gt 0 ]; do
  case $1 in
    --dir) dir=$2; shift 2 ;;
    --image) images+=("$2"); shift 2 ;;
    --gpus) gpus=$2; shift 2 ;;
    *) echo "kubelet/up.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
case $gpus in '' | *[!0-9]*) echo "kubelet/up.sh: --gpus $gpus: a whole number of GPUs" >&2; exit 2 ;; esac
[ -n "$dir" ] && [ -n "${KUBECONFIG:-}" ] || { echo "kubelet/up.sh: --dir DIR and \$KUBECONFIG are required" >&2; exit 2; }
log() { echo "[kubelet/up] $*" >&2; }
[ "$(id -u)" = 0 ] || { log "needs root (containerd, runc and the kubelet run as root)"; exit 3; }
for tool in containerd ctr runc buildah gcc iptables ip; do
  command -v $tool >/dev/null || { log "$tool is missing (Debian: apt-get install -y containerd runc buildah gcc iptables iproute2 containernetworking-plugins)"; exit 3; }
done
[ -x /usr/lib/cni/bridge ] || { log "the CNI plugins are missing (Debian: apt-get install -y containernetworking-plugins)"; exit 3; }
port=${LEITWERK_KUBELET_PORT:-10250}
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
  log "127.0.0.1:$port is taken: another node runs on this machine (one at a time: tests/kubelet/down.sh DIR stops it)"
  exit 3
fi
mkdir -p "$dir"; dir=$(cd "$dir" && pwd)
kubelet=$(bash "$here/build.sh" | tail -1) || { log "the kubelet could not be built"; exit 3; }
export BUILDAH_ISOLATION=${BUILDAH_ISOLATION:-chroot}

# The sandbox image: a static pause, cached.
cache=${LEITWERK_CACHE:-$HOME/.cache/leitwerk}/kubelet
mkdir -p "$cache"
if [ ! -s "$cache/pause.tar" ]; then
  cat >"$cache/pause.c" <<'C'
#include <signal.h>
#include <unistd.h>
static void stop(int s) { (void)s; _exit(0); }
int main(void) { signal(SIGTERM, stop); signal(SIGINT, stop); for (;;) pause(); }
C
  gcc -static -O2 -o "$cache/pause" "$cache/pause.c" || { log "cannot build the pause binary (Debian: apt-get install -y libc6-dev)"; exit 3; }
  c=$(buildah from scratch) && buildah copy "$c" "$cache/pause" /pause >/dev/null \
    && buildah config --entrypoint '["/pause"]' "$c" && buildah commit -q "$c" localhost/pause:3.10 >/dev/null \
    && buildah rm "$c" >/dev/null \
    && buildah push -q localhost/pause:3.10 "docker-archive:$cache/pause.tar:registry.k8s.io/pause:3.10" \
    || { rm -f "$cache/pause.tar"; log "buildah could not build the pause image"; exit 1; }
fi

mkdir -p "$dir/containerd" "$dir/cni/net.d" "$dir/kubelet"
# The addresses given out are kept under DIR, so that they go with the node.
cat >"$dir/cni/net.d/10-bridge.conflist" <<JSON
{"cniVersion": "1.0.0", "name": "leitwerk-node", "plugins": [
  {"type": "bridge", "bridge": "lwnode0", "isGateway": true, "isDefaultGateway": true, "ipMasq": false,
   "ipam": {"type": "host-local", "dataDir": "$dir/cni/ipam", "ranges": [[{"subnet": "10.244.0.0/24"}]]}},
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
  # Without CAP_SYS_RESOURCE (as on these machines) no process may lower its oom_score_adj,
  # and the kubelet asks -998 for every sandbox: keep containers at or above containerd's.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$dir/cni/net.d"
TOML
# The pods' network namespaces that exist before this node, so that down.sh removes only its own.
ls /var/run/netns 2>/dev/null >"$dir/netns.before"
setsid containerd --config "$dir/containerd/config.toml" >"$dir/containerd.log" 2>&1 </dev/null &
echo $! >"$dir/containerd.pid"
for _ in $(seq 30); do [ -S "$dir/containerd/containerd.sock" ] && break; sleep 1; done
ctr_() { ctr --address "$dir/containerd/containerd.sock" -n k8s.io "$@"; }
[ -S "$dir/containerd/containerd.sock" ] || { log "containerd did not start; its log:"; tail -n 10 "$dir/containerd.log" >&2; exit 3; }
ctr_ images import "$cache/pause.tar" >/dev/null || { log "ctr could not import the pause image"; exit 3; }
for image in "${images[@]}"; do
  tar=$dir/image-$(echo "$image" | tr '/:' '__').tar
  rm -f "$tar"
  buildah push -q "$image" "docker-archive:$tar:$image" >/dev/null && ctr_ images import "$tar" >/dev/null \
    || { log "could not import $image (build it with tests/images.sh)"; exit 1; }
  rm -f "$tar"
done

# What a kube-proxy would do for the `kubernetes` Service, which is all the pods here need of
# Services: connections from pods to its ClusterIP reach the API server (on 127.0.0.1, as the
# whole control plane is). The bridge is made now so that the rule can name it; the CNI plugin
# takes it as it is. route_localnet lets the bridge's traffic be sent to 127.0.0.1.
kubectl=${KUBECTL:-kubectl}
service_ip=$($kubectl get service kubernetes -n default -o jsonpath='{.spec.clusterIP}') &&
  api_port=$($kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}' | sed 's/.*://') &&
  [ -n "$service_ip" ] && [ -n "$api_port" ] || { log "cannot read the kubernetes Service or the API server's port"; exit 1; }
if ! ip link show lwnode0 >/dev/null 2>&1; then
  ip link add lwnode0 type bridge && ip addr add 10.244.0.1/24 dev lwnode0 && ip link set lwnode0 up ||
    { log "cannot make the bridge lwnode0 (this machine lacks CAP_NET_ADMIN)"; exit 3; }
fi
# A rule that a node killed before its down.sh left behind names an API port that is gone, and
# would match first: every rule for the bridge goes before this node adds its own.
iptables -t nat -S PREROUTING 2>/dev/null | grep -- ' -i lwnode0 ' | sed 's/^-A //' | while read -r stale; do
  eval "iptables -t nat -D $stale" && log "removed a stale rule for lwnode0: $stale"
done
rule=(PREROUTING -i lwnode0 -d "$service_ip" -p tcp --dport 443 -j DNAT --to-destination "127.0.0.1:$api_port")
echo 1 >/proc/sys/net/ipv4/conf/lwnode0/route_localnet && iptables -t nat -A "${rule[@]}" ||
  { log "cannot route the kubernetes Service to the API server (iptables or route_localnet refused)"; exit 3; }
printf '%s\n' "${rule[@]}" >"$dir/service.rule"

cat >"$dir/kubelet/config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
failSwapOn: false
failCgroupV1: false
containerRuntimeEndpoint: unix://$dir/containerd/containerd.sock
authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}
authorization: {mode: AlwaysAllow}
# The API server reaches the kubelet (logs) at the Node's Hostname address first: the node is
# named localhost so that this is 127.0.0.1. (A loopback --node-ip is refused, "nodeIP can't
# be loopback address", and the Node then has no address at all.)
address: 127.0.0.1
port: $port
readOnlyPort: 0
healthzPort: 0
resolvConf: /etc/resolv.conf
enforceNodeAllocatable: []
localStorageCapacityIsolation: false
YAML
setsid "$kubelet" --config "$dir/kubelet/config.yaml" --kubeconfig "$KUBECONFIG" --root-dir "$dir/kubelet/root" \
  --cert-dir "$dir/kubelet/pki" --hostname-override localhost -v=1 >"$dir/kubelet.log" 2>&1 </dev/null &
echo $! >"$dir/kubelet.pid"
for _ in $(seq 90); do
  if $kubectl wait --for=condition=Ready --timeout=2s node/localhost >/dev/null 2>&1; then
    if [ "$gpus" -gt 0 ]; then
      $kubectl label --overwrite node/localhost nvidia.com/gpu.present=true >/dev/null &&
        $kubectl patch node/localhost --subresource=status --type=json -p "[
          {\"op\": \"add\", \"path\": \"/status/capacity/nvidia.com~1gpu\", \"value\": \"$gpus\"},
          {\"op\": \"add\", \"path\": \"/status/allocatable/nvidia.com~1gpu\", \"value\": \"$gpus\"}]" >/dev/null ||
        { log "could not advertise $gpus nvidia.com/gpu on node/localhost"; exit 1; }
    fi
    log "node/localhost is Ready with $gpus GPU (kubelet log: $dir/kubelet.log)"; exit 0
  fi
  kill -0 "$(cat "$dir/kubelet.pid")" 2>/dev/null || break
  sleep 1
done
log "the kubelet did not make node/localhost Ready; its errors:"
grep -E "^E|^F" "$dir/kubelet.log" | tail -n 20 >&2
exit 3
