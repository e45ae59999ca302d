#!/usr/bin/env bash
# Serving against the peers (issue 15, points 1 and 2): builds the release inference server,
# installs the peers in venvs under ~/.cache/leitwerk (KServe and MLServer pin conflicting
# packages, so each has its own), wrk and nginx, builds ghz, then runs benches/serving_peers.py.
# Results (Markdown table, results.json, serving_peers.png) go to benches/results/serving-peers/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${LEITWERK_CACHE:-$HOME/.cache/leitwerk}
target=${CARGO_TARGET_DIR:-$cache/target}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
# nginx answering with a fixed body is the REST floor (what any request costs here).
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || apt-get install -y -qq nginx-light || true
command -v taskset >/dev/null || { echo "taskset (util-linux) is needed to pin server and load" >&2; exit 1; }
if [ ! -x "$cache/peers-venv/bin/python" ]; then
  python3 -m venv "$cache/peers-venv"
  "$cache/peers-venv/bin/pip" install -q "kserve==0.21.0" skl2onnx onnxruntime scikit-learn matplotlib joblib
fi
if [ ! -x "$cache/mlserver-venv/bin/mlserver" ]; then
  python3 -m venv "$cache/mlserver-venv"
  "$cache/mlserver-venv/bin/pip" install -q "mlserver==1.7.1" "mlserver-sklearn==1.7.1"
fi
(cd "$root" && CARGO_TARGET_DIR="$target" cargo build --release -q -p leitwerk-inference-server --bin leitwerk-inference-server)
out="$root/benches/results/serving-peers"
mkdir -p "$out"
"$cache/peers-venv/bin/python" "$root/benches/serving_peers.py" --out "$out" \
  --leitwerk "$target/release/leitwerk-inference-server" \
  --onnxruntime "$(bash "$root/tests/onnxruntime.sh")" \
  --mlserver-venv "$cache/mlserver-venv" \
  --ghz "$(bash "$root/tests/ghz.sh")" | tee "$out/table.md"
rm -rf "$out/work"
