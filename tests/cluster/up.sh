#!/usr/bin/env bash
# Starts a local Kubernetes control plane on 127.0.0.1: etcd, kube-apiserver,
# kube-controller-manager and kube-scheduler (or only etcd + kube-apiserver with --minimal),
# with its own certificates, an audit log of write requests, and two kubeconfigs:
#   DIR/kubeconfig           admin (group system:masters)
#   DIR/operator.kubeconfig  user "leitwerk-operator", no groups: RBAC decides what it may do
#   DIR/restricted.kubeconfig  user "leitwerk-restricted", no rights until a test grants some
# Usage: up.sh --dir DIR [--minimal] [--watch-pid PID]
#   --watch-pid PID  stop everything (down.sh DIR) once process PID has exited
# Environment: LEITWERK_APISERVER_FLAGS adds flags to kube-apiserver (e.g. feature gates).
# Prints "KUBECONFIG=DIR/kubeconfig" when the API server is ready. Stop with down.sh DIR.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir="" minimal=false watch_pid=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir=$2; shift 2 ;;
    --minimal) minimal=true; shift ;;
    --watch-pid) watch_pid=$2; shift 2 ;;
    *) echo "up.sh: unknown argument $1 (usage: up.sh --dir DIR [--minimal] [--watch-pid PID])" >&2; exit 2 ;;
  esac
done
[ -n "$dir" ] || { echo "up.sh: --dir DIR is required" >&2; exit 2; }
log() { echo "[cluster/up] $*" >&2; }

bin=$(bash "$here/build.sh")
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
if [ -f "$dir/pids" ]; then
  log "$dir already holds a control plane; stopping it first"
  bash "$here/down.sh" "$dir" --keep
fi
mkdir -p "$dir/pki" "$dir/logs"
: >"$dir/pids"

# Five distinct free ports below the kernel's ephemeral range: a port the kernel picks (bind to
# port 0) can be taken by any outgoing connection before the server binds it, which made a
# kube-scheduler fail with "address already in use".
free_ports() { # count
  python3 - "$1" <<'PY'
import random, socket, sys
try:
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
except (OSError, ValueError, IndexError):
    low = 32768
lo, hi = (10000, low) if low > 20000 else (low, 65535)
picked = []
for _ in range(1000):
    if len(picked) == int(sys.argv[1]):
        break
    port = random.randrange(lo, hi)
    if port in picked:
        continue
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        s.close()
    picked.append(port)
print(*picked)
PY
}
read -r etcd_port peer_port api_port kcm_port sched_port <<<"$(free_ports 5)"
[ -n "$sched_port" ] || { log "no five free ports on 127.0.0.1"; exit 1; }

# --- certificates --------------------------------------------------------------------------
pki=$dir/pki
if [ ! -f "$pki/ca.crt" ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=leitwerk-local-ca" \
    -keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
  openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
  client_cert() { # name, subject
    openssl req -newkey rsa:2048 -nodes -subj "$2" -keyout "$pki/$1.key" -out "$pki/$1.csr" 2>/dev/null
    # An extension makes it an X.509 v3 certificate; rustls refuses v1.
    printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' >"$pki/client.ext"
    openssl x509 -req -in "$pki/$1.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial -days 3650 \
      -extfile "$pki/client.ext" -out "$pki/$1.crt" 2>/dev/null
  }
  client_cert admin "/O=system:masters/CN=admin"
  client_cert operator "/CN=leitwerk-operator"
  client_cert restricted "/CN=leitwerk-restricted"
  openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" -keyout "$pki/apiserver.key" -out "$pki/apiserver.csr" 2>/dev/null
  printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\n' >"$pki/san.ext"
  openssl x509 -req -in "$pki/apiserver.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial -days 3650 \
    -extfile "$pki/san.ext" -out "$pki/apiserver.crt" 2>/dev/null
fi

kubeconfig() { # file, cert name, user
  cat >"$1" <<KC
apiVersion: v1
kind: Config
clusters:
- name: leitwerk-local
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority: $pki/ca.crt
users:
- name: $3
  user:
    client-certificate: $pki/$2.crt
    client-key: $pki/$2.key
contexts:
- name: leitwerk-local
  context: {cluster: leitwerk-local, user: $3}
current-context: leitwerk-local
KC
}
kubeconfig "$dir/kubeconfig" admin admin
kubeconfig "$dir/operator.kubeconfig" operator leitwerk-operator
kubeconfig "$dir/restricted.kubeconfig" restricted leitwerk-restricted

cat >"$dir/audit-policy.yaml" <<'AP'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: None
  verbs: ["get", "list", "watch"]
- level: Metadata
AP

start() { # name, command...
  local name=$1; shift
  setsid "$@" >"$dir/logs/$name.log" 2>&1 </dev/null &
  echo "$name $!" >>"$dir/pids"
}

fail_start() { # name
  log "FAILED to start $1; last lines of $dir/logs/$1.log:"
  tail -n 40 "$dir/logs/$1.log" >&2 || true
  bash "$here/down.sh" "$dir" --keep || true
  exit 1
}

alive() { # name
  local pid; pid=$(awk -v n="$1" '$1 == n {print $2}' "$dir/pids")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

start etcd "$bin/etcd" --name default --data-dir "$dir/etcd" \
  --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
  --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
  --initial-cluster "default=http://127.0.0.1:$peer_port" --unsafe-no-fsync --log-level warn

admission="--disable-admission-plugins=ServiceAccount"
$minimal || admission="--enable-admission-plugins=NodeRestriction"
start kube-apiserver "$bin/kube-apiserver" \
  --etcd-servers "http://127.0.0.1:$etcd_port" \
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
  --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
  --client-ca-file "$pki/ca.crt" \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
  --service-cluster-ip-range 10.0.0.0/16 --allow-privileged=true \
  --authorization-mode RBAC "$admission" \
  --audit-policy-file "$dir/audit-policy.yaml" --audit-log-path "$dir/audit.log" --audit-log-maxsize 200 \
  --event-ttl 1h ${LEITWERK_APISERVER_FLAGS:-}

cacert=(--cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key")
for i in $(seq 1 120); do
  alive etcd || fail_start etcd
  alive kube-apiserver || fail_start kube-apiserver
  if curl -fsS "${cacert[@]}" "https://127.0.0.1:$api_port/readyz" >/dev/null 2>&1; then break; fi
  [ "$i" = 120 ] && { log "kube-apiserver not ready after 60 s"; fail_start kube-apiserver; }
  sleep 0.5
done

if ! $minimal; then
  start kube-controller-manager "$bin/kube-controller-manager" \
    --kubeconfig "$dir/kubeconfig" --authentication-kubeconfig "$dir/kubeconfig" --authorization-kubeconfig "$dir/kubeconfig" \
    --leader-elect=false --bind-address 127.0.0.1 --secure-port "$kcm_port" --cert-dir "$dir/kcm" \
    --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
    --cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
    --use-service-account-credentials=false
  start kube-scheduler "$bin/kube-scheduler" \
    --kubeconfig "$dir/kubeconfig" --authentication-kubeconfig "$dir/kubeconfig" --authorization-kubeconfig "$dir/kubeconfig" \
    --leader-elect=false --bind-address 127.0.0.1 --secure-port "$sched_port" --cert-dir "$dir/scheduler"
  for name in kube-controller-manager kube-scheduler; do
    port=$kcm_port; [ "$name" = kube-scheduler ] && port=$sched_port
    for i in $(seq 1 60); do
      alive "$name" || fail_start "$name"
      if curl -fsk "https://127.0.0.1:$port/healthz" >/dev/null 2>&1; then break; fi
      [ "$i" = 60 ] && { log "$name not healthy after 30 s"; fail_start "$name"; }
      sleep 0.5
    done
  done
fi

cat >"$dir/env" <<ENV
KUBECONFIG=$dir/kubeconfig
LEITWERK_OPERATOR_KUBECONFIG=$dir/operator.kubeconfig
LEITWERK_RESTRICTED_KUBECONFIG=$dir/restricted.kubeconfig
LEITWERK_AUDIT_LOG=$dir/audit.log
LEITWERK_K8S_BIN=$bin
ENV

if [ -n "$watch_pid" ]; then
  # The pids go with the watcher too: a test may remove DIR (and its pids file) while the
  # control plane still runs, and down.sh then stops them by these (see down.sh).
  pids=$(tac "$dir/pids" | awk '{printf "%s ", $2}')
  LEITWERK_CONTROL_PLANE_PIDS=$pids setsid bash -c "while kill -0 $watch_pid 2>/dev/null; do sleep 1; done; bash '$here/down.sh' '$dir'" >/dev/null 2>&1 </dev/null &
fi
log "control plane ready: https://127.0.0.1:$api_port (logs in $dir/logs)"
echo "KUBECONFIG=$dir/kubeconfig"
