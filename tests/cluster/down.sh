#!/usr/bin/env bash
# Stops a control plane started by up.sh and removes its directory (keeps it with --keep).
# Usage: down.sh DIR [--keep]
# LEITWERK_CONTROL_PLANE_PIDS (set by up.sh's --watch-pid watcher): the pids up.sh started, last
# first, for a directory that was removed before the control plane stopped (a test that removes
# its scratch directory at the end): each still running with DIR in its command line is stopped.
set -uo pipefail
dir=${1:?usage: down.sh DIR [--keep]}
keep=${2:-}

stop_pid() { # pid: SIGTERM, up to 5 s to exit, then SIGKILL
  local pid=$1 state
  kill "$pid" 2>/dev/null || return 0
  # A killed child of a shell that already exited can linger as a zombie: that counts as gone.
  for _ in $(seq 1 50); do
    state=$(ps -o stat= -p "$pid" 2>/dev/null || true)
    [ -z "$state" ] || [ "${state#Z}" != "$state" ] && break
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
}

if [ ! -f "$dir/pids" ]; then
  for pid in ${LEITWERK_CONTROL_PLANE_PIDS:-}; do
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$dir/" && stop_pid "$pid"
  done
  # Otherwise nothing runs (e.g. up.sh failed and stopped what it had started): only tidy up a
  # directory that up.sh made.
  [ "$keep" != "--keep" ] && [ -d "$dir/pki" ] && rm -rf "$dir"
  exit 0
fi
# Reverse order: scheduler and controller-manager, then the API server, then etcd.
tac "$dir/pids" | while read -r _ pid; do stop_pid "$pid"; done
rm -f "$dir/pids"
[ "$keep" = "--keep" ] || rm -rf "$dir"
