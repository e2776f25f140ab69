#!/usr/bin/env bash
# kill -9 outcore's writers (quantize, convert, export) at random points, KILLS times each; after
# every kill the output path must hold nothing, the previous file, or a file byte-identical to a
# clean run's output (and GGUFs must pass `outcore inspect`). Same check as the #[ignore] test
# crates/outcore-cli/tests/writer_crash.rs, for a given binary. Killed writers leave their
# `.NAME.tmp.PID` files; the next write of the same output removes those of dead PIDs
# (AtomicFile), so after the loop one more, uninterrupted write must leave no temp file at all
# and the reference output.
#   scripts/hardening/kill-writers.sh [KILLS]     env: OUTCORE (default target/release/outcore)
set -euo pipefail
KILLS=${1:-24}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUTCORE=${OUTCORE:-$ROOT/target/release/outcore}
FIX=${OUTCORE_FIXTURES:-$ROOT/../shared/fixtures}
DEMO=${OUTCORE_DEMO_MODEL:-$HOME/.cache/outcore/SmolLM2-135M-Instruct.Q4_1.gguf}
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
cmd() { # writer out
    case $1 in
    quantize) echo "$OUTCORE quantize $DEMO $2 --type q8_0 --force -t 1" ;;
    convert) echo "$OUTCORE convert $FIX/tiny-llama -o $2 --type q8_0 --force -t 1 --no-tokenizer" ;;
    export) echo "$OUTCORE export --format llama2c --force -m $FIX/tiny-llama/tiny-llama.f32.gguf -o $2" ;;
    esac
}
FAIL=0
for w in quantize convert export; do
    if ! "$OUTCORE" "$w" --help >/dev/null 2>&1; then echo "$w: not in this binary, skipped"; continue; fi
    d=$W/$w; mkdir -p "$d"; ext=gguf; [ $w = export ] && ext=bin
    out=$d/out.$ext
    t0=$(date +%s%N); $(cmd $w "$out") >/dev/null 2>&1; t1=$(date +%s%N)
    ms=$(( (t1 - t0) / 1000000 ))
    cp "$out" "$W/ref.$w"
    left=$(ls -A "$d" | grep -c '\.tmp\.' || true)
    absent=0; old=0; complete=0; temps=0
    for i in $(seq 1 "$KILLS"); do
        if [ $((i % 2)) = 0 ]; then echo previous > "$out"; else rm -f "$out"; fi
        delay=$(awk -v ms="$ms" -v s="$RANDOM" 'BEGIN { printf "%.3f", (s % (ms + 1)) / 1000 }')
            $(cmd $w "$out") >/dev/null 2>&1 & pid=$!
        sleep "$delay"; kill -9 $pid 2>/dev/null || true; wait $pid 2>/dev/null || true
        if [ ! -e "$out" ]; then
            [ $((i % 2)) = 0 ] && { echo "$w kill $i: previous output removed"; FAIL=1; }
            absent=$((absent + 1))
        elif [ "$(head -c 8 "$out" | tr -d '\0')" = previous ]; then old=$((old + 1))
        elif cmp -s "$out" "$W/ref.$w"; then
            complete=$((complete + 1))
            [ $ext = gguf ] && ! "$OUTCORE" inspect "$out" >/dev/null 2>&1 && { echo "$w kill $i: does not inspect"; FAIL=1; }
        else echo "$w kill $i after ${delay}s: partial output ($(stat -c %s "$out") bytes)"; FAIL=1; fi
        n=$(ls -A "$d" | grep -c '\.tmp\.' || true); if [ "$n" -gt "$temps" ]; then temps=$n; fi
    done
    # One uninterrupted write after the kills: it must clean up every dead writer's temp file.
    $(cmd $w "$out") >/dev/null 2>&1 || { echo "$w: final write failed"; FAIL=1; }
    final=$(ls -A "$d" | grep '\.tmp\.' || true)
    if [ -n "$final" ]; then echo "$w: temp files left after the final write: $final"; FAIL=1; fi
    cmp -s "$out" "$W/ref.$w" || { echo "$w: final output differs from the clean run's"; FAIL=1; }
    echo "$w: clean run ${ms} ms, $left temp files after it; $KILLS kills: $absent absent, $old previous kept, $complete complete; at most $temps temp files present between kills; after a final write: $(printf '%s' "$final" | grep -c . || true) temp files"
done
exit $FAIL
