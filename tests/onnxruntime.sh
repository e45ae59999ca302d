#!/usr/bin/env bash
# Provides ONNX Runtime's shared library for `ort` (feature load-dynamic) from the onnxruntime
# wheel on PyPI (ort's own binary download cannot work here), cached under
# ${LEITWERK_CACHE:-~/.cache/leitwerk}/onnxruntime-<version>/. Prints the library's path.
set -euo pipefail
version=${ONNXRUNTIME_VERSION:-1.32.0}
dir=${LEITWERK_CACHE:-$HOME/.cache/leitwerk}/onnxruntime-$version
lib=$dir/libonnxruntime.so.$version
# One fetch at a time: tests run this script in parallel, and a second fetch would race the
# first one's rename of its partial file.
mkdir -p "$(dirname "$dir")"
exec 9>"$dir.lock"
flock 9
if [ ! -f "$lib" ]; then
  mkdir -p "$dir"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  echo "[onnxruntime] downloading the onnxruntime $version wheel" >&2
  python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
    --platform manylinux_2_28_x86_64 -d "$work" "onnxruntime==$version" >&2
  python3 - "$work" "$lib" "$version" <<'PY'
import glob, sys, zipfile
work, lib, version = sys.argv[1:]
wheel = glob.glob(f"{work}/onnxruntime-*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    name = f"onnxruntime/capi/libonnxruntime.so.{version}"
    with z.open(name) as src, open(lib + ".part", "wb") as dst:
        dst.write(src.read())
PY
  mv "$lib.part" "$lib"
fi
echo "$lib"
