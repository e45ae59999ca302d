#!/usr/bin/env bash
# Draws a benchmark's chart and table from its results.json (benches/charts.py), with
# matplotlib from a venv under ~/.cache/leitwerk. Usage: benches/charts.sh NAME [options];
# NAME is batching, operator-scale or cold-ci.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv=${LEITWERK_CACHE:-$HOME/.cache/leitwerk}/charts-venv
if ! "$venv/bin/python" -c "import matplotlib" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "matplotlib==3.10.*"
fi
exec "$venv/bin/python" "$here/charts.py" "$@"
