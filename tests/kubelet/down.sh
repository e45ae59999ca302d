#!/usr/bin/env bash
# Stops what tests/kubelet/up.sh started under DIR: the kubelet, the pods' containers, containerd.
# Usage: down.sh DIR
set -uo pipefail
dir=${1:?usage: down.sh DIR}
[ -d "$dir" ] || exit 0
[ -f "$dir/kubelet.pid" ] && kill "$(cat "$dir/kubelet.pid")" 2>/dev/null
if [ -S "$dir/containerd/containerd.sock" ]; then
  ctr_() { ctr --address "$dir/containerd/containerd.sock" -n k8s.io "$@"; }
  for t in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s KILL "$t" >/dev/null 2>&1; done
  sleep 1
  for t in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks rm -f "$t" >/dev/null 2>&1; done
fi
[ -f "$dir/containerd.pid" ] && kill "$(cat "$dir/containerd.pid")" 2>/dev/null
sleep 1
# The shims outlive containerd; their containers are gone by now.
pkill -f "containerd-shim-runc-v2 -namespace k8s.io -id .* -address $dir/containerd" 2>/dev/null
# Mounts under the root (overlay snapshots, pod netns and volumes) go with it.
grep -o " $dir/[^ ]*" /proc/mounts | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
# The rule and the bridge, when this node made them (one node runs on a machine at a time).
if [ -f "$dir/service.rule" ]; then
  mapfile -t rule <"$dir/service.rule"
  iptables -t nat -D "${rule[@]}" 2>/dev/null
  rm -f "$dir/service.rule"
  ip link del lwnode0 2>/dev/null
fi
# The pods' network namespaces that this node made (containerd leaves them when killed).
if [ -f "$dir/netns.before" ]; then
  for netns in $(ls /var/run/netns 2>/dev/null | grep -vxF -f "$dir/netns.before"); do ip netns delete "$netns" 2>/dev/null; done
fi
rm -f "$dir/kubelet.pid" "$dir/containerd.pid"
exit 0
