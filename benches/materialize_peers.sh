#!/usr/bin/env bash
# Materialization against Feast and hand-written polars (issue 15, point 4): builds the release
# trainer, installs Feast 0.67 (with its dask offline store), polars and matplotlib in a venv
# under ~/.cache/leitwerk, then runs benches/materialize_peers.py at 1 M and 10 M events (pass
# other sizes as arguments, e.g. `benches/materialize_peers.sh 1000000`). Results (table.md,
# results.json, materialize_peers.png) go to benches/results/materialize-peers/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${LEITWERK_CACHE:-$HOME/.cache/leitwerk}
target=${CARGO_TARGET_DIR:-$cache/target}
venv="$cache/feast-venv"
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time; }
if ! "$venv/bin/python" -c "import feast, polars, matplotlib" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "feast==0.67.0" "polars==2.1.0" "dask[dataframe]" matplotlib
fi
(cd "$root" && CARGO_TARGET_DIR="$target" cargo build --release -q -p leitwerk-trainer --bin leitwerk-trainer)
out="$root/benches/results/materialize-peers"
mkdir -p "$out"
rows=("$@")
[ ${#rows[@]} -gt 0 ] || rows=(1000000 10000000)
(cd "$out" && "$venv/bin/python" "$root/benches/materialize_peers.py" run \
  --trainer "$target/release/leitwerk-trainer" --out "$out" --rows "${rows[@]}") | tee "$out/table.md"
rm -rf "$out/work"
