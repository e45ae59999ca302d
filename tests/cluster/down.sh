#!/usr/bin/env bash
# Stops a control plane started by up.sh and removes its directory (keeps it with --keep).
# Usage: down.sh DIR [--keep]
set -uo pipefail
dir=${1:?usage: down.sh DIR [--keep]}
keep=${2:-}
if [ ! -f "$dir/pids" ]; then
  # Nothing running (e.g. up.sh failed and stopped what it had started): only tidy up a
  # directory that up.sh made.
  [ "$keep" != "--keep" ] && [ -d "$dir/pki" ] && rm -rf "$dir"
  exit 0
fi
# Reverse order: scheduler and controller-manager, then the API server, then etcd.
tac "$dir/pids" | while read -r name pid; do
  kill "$pid" 2>/dev/null || true
  # A killed child of a shell that already exited can linger as a zombie: that counts as gone.
  for _ in $(seq 1 50); do
    state=$(ps -o stat= -p "$pid" 2>/dev/null || true)
    [ -z "$state" ] || [ "${state#Z}" != "$state" ] && break
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
done
rm -f "$dir/pids"
[ "$keep" = "--keep" ] || rm -rf "$dir"
