#!/usr/bin/env bash
# Issue #6: "a q8_0 conversion of a real model gives perplexity within 0.5% of the f16 conversion".
#
# The real model is the demo model (SmolLM2-135M-Instruct Q4_1) dequantized to an f32 HF checkpoint
# by ../shared/tools/make_hf_from_gguf.py (a faithful HF copy of that model's weights). It is
# converted with `outcore convert` to f16 and to q8_0, and `outcore perplexity` scores both on the
# text llama.cpp's perplexity fixture used (GPL-3, 512-token chunks, see ../shared/fixtures).
# Prints both perplexities and their relative difference; exits 1 if it is 0.5% or more.
#
#   bench/convert-perplexity.sh
#   CHUNKS=4 bench/convert-perplexity.sh     # quicker, fewer chunks
#   OUTCORE=target/release/outcore WORK=/tmp/x bench/convert-perplexity.sh
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WORK:-/tmp/outcore-convert-ppl}
DEMO=${OUTCORE_DEMO_MODEL:-$HOME/.cache/outcore/SmolLM2-135M-Instruct.Q4_1.gguf}
TEXT=${TEXT:-/usr/share/common-licenses/GPL-3}
CTX=${CTX:-512}
THREADS=${THREADS:-$(nproc)}
CHUNKS=${CHUNKS:-}
OUTCORE=${OUTCORE:-}
TOOL=$ROOT/../shared/tools/make_hf_from_gguf.py

die() { echo "error: $*" >&2; exit 1; }
[ -f "$DEMO" ] || die "demo model $DEMO missing: run scripts/fetch-demo-model.sh"
[ -f "$TEXT" ] || die "no perplexity text at $TEXT (set TEXT)"
[ -f "$TOOL" ] || die "no $TOOL"
if [ -z "$OUTCORE" ]; then
    (cd "$ROOT" && cargo build --release -p outcore >&2)
    OUTCORE=${CARGO_TARGET_DIR:-$ROOT/target}/release/outcore
fi
mkdir -p "$WORK"

if [ ! -f "$WORK/hf/config.json" ]; then
    python3 "$TOOL" "$DEMO" "$WORK/hf" --dtype f32 >&2
fi

declare -A PPL
for t in f16 q8_0; do
    "$OUTCORE" convert "$WORK/hf" -o "$WORK/demo.$t.gguf" --type "$t" --force >&2
    extra=()
    [ -n "$CHUNKS" ] && extra=(--chunks "$CHUNKS")
    "$OUTCORE" perplexity -m "$WORK/demo.$t.gguf" -f "$TEXT" -c "$CTX" -t "$THREADS" "${extra[@]}" \
        > "$WORK/ppl.$t.log" 2>&1 || { cat "$WORK/ppl.$t.log" >&2; die "perplexity failed for $t"; }
    # The final estimate: "Final estimate: PPL = 18.3541 +/- 0.86202".
    PPL[$t]=$(grep -o 'PPL = [0-9.]*' "$WORK/ppl.$t.log" | tail -1 | awk '{print $3}')
    [ -n "${PPL[$t]}" ] || die "no final PPL in $WORK/ppl.$t.log"
done

rel=$(awk -v a="${PPL[f16]}" -v b="${PPL[q8_0]}" 'BEGIN { d = (b - a) / a * 100; printf "%.3f", d }')
echo "checkpoint: $WORK/hf (demo model dequantized to f32 by make_hf_from_gguf.py)"
echo "text: $TEXT, ctx $CTX${CHUNKS:+, $CHUNKS chunks}"
echo "PPL f16  ${PPL[f16]}"
echo "PPL q8_0 ${PPL[q8_0]}"
echo "q8_0 vs f16: ${rel}%"
awk -v r="$rel" 'BEGIN { exit (r < 0 ? -r : r) < 0.5 ? 0 : 1 }' || die "q8_0 differs from f16 by ${rel}% (>= 0.5%)"
echo "ok: within 0.5%"
