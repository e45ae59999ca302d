#!/usr/bin/env bash
# Coverage-guided fuzzing on the stable toolchain: every target of benches/src/fuzz_targets.rs
# under libFuzzer (libfuzzer-sys), the code instrumented with LLVM's SanitizerCoverage
# (-Cpasses=sancov-module: edge counters, a PC table and comparison tracing, all stable rustc
# options). On demand, never in CI (see benches/README.md):
#
#   benches/fuzz/run.sh [EXECUTIONS_PER_TARGET] [TARGET...]
#
# The build (about 20 minutes cold on 2 cores) is cached in ~/.cache/leitwerk/fuzz-target; the
# corpus each run grows is kept in ~/.cache/leitwerk/fuzz-corpus, so a later run starts where
# this one stopped. Findings go to benches/fuzz-found/ (gitignored) to become regression tests;
# the script exits non-zero when there is one.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
runs=${1:-1000000}
shift || true
cache=${LEITWERK_FUZZ_CACHE:-$HOME/.cache/leitwerk}
work=$cache/fuzz-corpus
mkdir -p "$work" benches/fuzz-found

# The model the server targets serve and every target's seeds, from the mutation runner.
cargo bench -q --workspace --profile dev --bench fuzz -- --export "$work/export" >/dev/null
ort=$(bash tests/onnxruntime.sh)

# The same dependency versions as the project.
cp Cargo.lock benches/fuzz/Cargo.lock
triple=$(rustc -vV | sed -n 's/^host: //p')
# --target: the flags reach the fuzzed code but not build scripts and proc macros.
RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing" \
  CARGO_TARGET_DIR="$cache/fuzz-target" \
  cargo build -q --release --manifest-path benches/fuzz/Cargo.toml --target "$triple"
bin=$cache/fuzz-target/$triple/release/leitwerk-fuzz

targets=("$@")
if [ ${#targets[@]} = 0 ]; then
  mapfile -t targets < <(ls "$work/export/seeds")
fi
echo "| target | executions | exec/s | edges covered | corpus | crashes |"
echo "|---|---|---|---|---|---|"
status=0 total=0
for t in "${targets[@]}"; do
  corpus=$work/$t
  mkdir -p "$corpus"
  cp -n "$work/export/seeds/$t/"* "$corpus/" 2>/dev/null || true
  log=$work/$t.log
  rc=0
  # A 1 s budget per input (a hang), 2 GiB of memory (out of memory), inputs up to 64 KiB.
  LEITWERK_FUZZ_TARGET=$t LEITWERK_FUZZ_MODEL=$work/export/model.onnx ORT_DYLIB_PATH=$ort \
    "$bin" -runs="$runs" -timeout=1 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
    -artifact_prefix="benches/fuzz-found/$t-" "$corpus" >"$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  size=$(ls "$corpus" | wc -l)
  crashes=0
  if [ $rc != 0 ]; then
    crashes=1 status=1
    echo "fuzz: $t: a finding (exit $rc); see $log and benches/fuzz-found/$t-*" >&2
    grep -m3 -E "panicked|ERROR|SUMMARY" "$log" >&2 || true
  fi
  total=$((total + ${execs:-0}))
  echo "| $t | ${execs:-?} | ${speed:-?} | ${cov:-?} | $size | $crashes |"
done
echo "fuzz: $total executions in total, status $status"
exit $status
