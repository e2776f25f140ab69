#!/usr/bin/env bash
# Builds the fuzz targets in fuzz/ and runs each for SECONDS (default 600), one after another,
# at low priority. Prints one summary line per target (runs, execs/s, coverage, crashes) and keeps
# crashing inputs under fuzz/artifacts/<target>/.
#
#   scripts/hardening/fuzz-all.sh [SECONDS] [TARGET...]
#
# With cargo-fuzz installed it builds through `cargo fuzz build` (RUSTC_BOOTSTRAP=1 on stable);
# without it, through cargo with the same sanitizer-coverage flags cargo-fuzz passes (no ASan: the
# targets are safe Rust, and ASan would only slow them down here).
set -euo pipefail
SECONDS_EACH=${1:-600}
shift || true
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT/fuzz"
TRIPLE=x86_64-unknown-linux-gnu
ALL=(gguf gguf_views safetensors safetensors_index tokenizer chat_template server_request)
TARGETS=("${@:-${ALL[@]}}")
[ $# -eq 0 ] && TARGETS=("${ALL[@]}")
export RUSTC_BOOTSTRAP=1
if cargo fuzz --version >/dev/null 2>&1; then
    nice -n 19 cargo fuzz build -O -s none
    BIN=target/$TRIPLE/release
else
    export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks"
    nice -n 19 cargo build --release --bins --target $TRIPLE
    BIN=target/$TRIPLE/release
fi
[ -d corpus ] || python3 "$ROOT/scripts/hardening/fuzz_seeds.py"
mkdir -p logs
for t in "${TARGETS[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    log=logs/$t.log
    set +e
    nice -n 19 "$BIN/$t" "corpus/$t" -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -timeout=20 \
        -artifact_prefix="artifacts/$t/" -print_final_stats=1 > "$log" 2>&1
    rc=$?
    set -e
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1)
    crashes=$(find "artifacts/$t" -type f | wc -l)
    printf '%-18s %5ss  exit %-3s runs %-10s %6s exec/s  %-10s  artifacts %s\n' \
        "$t" "$SECONDS_EACH" "$rc" "${runs:-?}" "${speed:-?}" "${cov:-?}" "$crashes" | tee -a logs/summary.txt
done
