#!/usr/bin/env bash
# Provides the llama.cpp server as the Python extension of the xllamacpp wheel (MIT) on PyPI,
# unpacked under ${LEITWERK_CACHE:-~/.cache/leitwerk}/xllamacpp-<version>/ (no other Python
# package is needed). Prints the directory to put on PYTHONPATH.
set -euo pipefail
version=${XLLAMACPP_VERSION:-2026.10.11549}
dir=${LEITWERK_CACHE:-$HOME/.cache/leitwerk}/xllamacpp-$version
# One fetch at a time: tests run this script in parallel, and a second fetch would race the
# first one's rename of its partial file.
mkdir -p "$(dirname "$dir")"
exec 9>"$dir.lock"
flock 9
if [ ! -f "$dir/.complete" ]; then
  rm -rf "$dir"
  mkdir -p "$dir"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  echo "[xllamacpp] downloading the xllamacpp $version wheel" >&2
  # An abi3 wheel for CPython >= 3.10 (manylinux2014): the machine's own python3 picks it.
  python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$work" "xllamacpp==$version" >&2
  python3 - "$work" "$dir" <<'PY'
import glob, sys, zipfile
work, out = sys.argv[1:]
zipfile.ZipFile(glob.glob(f"{work}/xllamacpp-*.whl")[0]).extractall(out)
PY
  touch "$dir/.complete"
fi
echo "$dir"
