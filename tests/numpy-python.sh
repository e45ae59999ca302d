#!/usr/bin/env bash
# A Python with numpy for the independent reference implementations under tests/ (a venv
# under ${LEITWERK_CACHE:-~/.cache/leitwerk}/py-numpy, numpy from PyPI). Prints its python.
set -euo pipefail
dir=${LEITWERK_CACHE:-$HOME/.cache/leitwerk}/py-numpy
# One set-up at a time: tests run this script in parallel.
mkdir -p "$(dirname "$dir")"
exec 9>"$dir.lock"
flock 9
if ! "$dir/bin/python" -c "import numpy" 2>/dev/null; then
  echo "[numpy-python] creating $dir" >&2
  rm -rf "$dir"
  python3 -m venv "$dir" >&2
  "$dir/bin/python" -m pip install --quiet "numpy==2.4.6" >&2
fi
echo "$dir/bin/python"
