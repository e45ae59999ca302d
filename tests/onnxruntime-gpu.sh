#!/usr/bin/env bash
# Provides ONNX Runtime's shared library with its CUDA execution provider, from the
# onnxruntime-gpu wheel on PyPI, as tests/onnxruntime.sh provides the CPU one: the library, its
# providers' bridge (libonnxruntime_providers_shared.so) and the CUDA provider
# (libonnxruntime_providers_cuda.so, about 280 MB) side by side under
# ${LEITWERK_CACHE:-~/.cache/leitwerk}/onnxruntime-gpu-<version>/. Prints the library's path;
# point ORT_DYLIB_PATH of a GPU image at it. The provider of 1.31.1 needs the CUDA 13 runtime,
# cuBLAS (libcublasLt.so.13) and cuDNN 9 on the node (the NVIDIA container toolkit's libraries
# or NVIDIA's wheels); without them the encoder stays on the CPU and says why.
set -euo pipefail
version=${ONNXRUNTIME_GPU_VERSION:-1.31.1}
dir=${LEITWERK_CACHE:-$HOME/.cache/leitwerk}/onnxruntime-gpu-$version
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
  echo "[onnxruntime-gpu] downloading the onnxruntime-gpu $version wheel (about 250 MB)" >&2
  python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
    --platform manylinux_2_28_x86_64 -d "$work" "onnxruntime-gpu==$version" >&2
  python3 - "$work" "$dir" "$version" <<'PY'
import glob, os, sys, zipfile
work, dir, version = sys.argv[1:]
wheel = glob.glob(f"{work}/onnxruntime_gpu-*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    # The providers first, the library last: its presence means the directory is complete.
    for name in ["libonnxruntime_providers_shared.so", "libonnxruntime_providers_cuda.so",
                 f"libonnxruntime.so.{version}"]:
        target = os.path.join(dir, name)
        with z.open(f"onnxruntime/capi/{name}") as src, open(target + ".part", "wb") as dst:
            dst.write(src.read())
        os.replace(target + ".part", target)
PY
fi
echo "$lib"
