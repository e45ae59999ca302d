#!/usr/bin/env bash
# The test command of the README: installs what a fresh machine lacks (tests/setup.sh), then
# runs the whole suite; with arguments, cargo test with those (e.g. tests/run.sh --workspace --test robustness;
# keep --workspace: -p resolves other features and rebuilds polars and candle).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/tests/setup.sh"
cd "$root"
if [ $# -gt 0 ]; then exec cargo test "$@"; fi
exec cargo test --workspace
