#!/usr/bin/env bash
# Low-rank compression table (issue #8): rank vs file size vs perplexity vs generation tokens/s,
# plain and calibrated (SVD-LLM whitening) SVD side by side at 10%, 20% and 40% parameter
# reduction of the factored weights (every 2-D blk.* weight), for the demo model and tiny-llama;
# then the wall time (and peak RSS, memory mode) of compressing a synthetic 1B model both ways.
#
#   cargo build --release -p outcore && bench/lowrank-table.sh
#   PARTS="tiny demo" bench/lowrank-table.sh        # skip the 1B synthetic model
#
# Environment (defaults in brackets):
#   OUTCORE     the binary [target/release/outcore, or $CARGO_TARGET_DIR/release/outcore]
#   DEMO        demo model [$OUTCORE_DEMO_MODEL or ~/.cache/outcore/SmolLM2-135M-Instruct.Q4_1.gguf]
#   FIXTURES    shared fixtures [$OUTCORE_FIXTURES or ../shared/fixtures]
#   WORK        scratch directory, emptied of its own files at the end [/tmp/lowrank-table]
#   THREADS     threads for everything [nproc]
#   PPL_CHUNKS  perplexity chunks of 512 tokens on GPL-3 [all 14]
#   ITERS       power iterations for the table [4]
#   REDUCTIONS  parameter reductions [0.1 0.2 0.4]
#   CAL_TOKENS, CAL_CTX  demo calibration tokens and tokens per context [2048, 512]
#   SYNTH_RANK, SYNTH_ITERS, SYNTH_CAL_TOKENS   the 1B run [64, 2, 512]
#
# What is measured:
# - demo: the source of every compression is the demo model requantized to Q8_0
#   (`outcore quantize --type q8_0 --pure`), factors are Q8_0 (ranks rounded down to 32).
#   Perplexity: `outcore perplexity` on /usr/share/common-licenses/GPL-3 (the fixture's text,
#   llama.cpp chunking). Calibration text: GPL-2 (a different text), CAL_TOKENS tokens.
# - tiny-llama (random weights, a placeholder tokenizer that cannot read text): f32 factors. The
#   "text" is token ids sampled from the original model (temperature 1): perplexity is that of 4
#   such sequences of 256 tokens under each model (outcore logits --all-positions), calibration
#   uses 8 other sampled sequences (--calibration-ids). The original model's own perplexity on
#   its samples is the floor.
# - tokens/s: `outcore bench -p 0 -n 64 -r 3` (generation only).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
OUTCORE=${OUTCORE:-${CARGO_TARGET_DIR:-$here/target}/release/outcore}
DEMO=${DEMO:-${OUTCORE_DEMO_MODEL:-$HOME/.cache/outcore/SmolLM2-135M-Instruct.Q4_1.gguf}}
FIXTURES=${FIXTURES:-${OUTCORE_FIXTURES:-$here/../shared/fixtures}}
WORK=${WORK:-/tmp/lowrank-table}
THREADS=${THREADS:-$(nproc)}
ITERS=${ITERS:-4}
REDUCTIONS=${REDUCTIONS:-0.1 0.2 0.4}
PARTS=${PARTS:-tiny demo synth}
CAL_TOKENS=${CAL_TOKENS:-2048}
CAL_CTX=${CAL_CTX:-512}
SYNTH_RANK=${SYNTH_RANK:-64}
SYNTH_ITERS=${SYNTH_ITERS:-2}
SYNTH_CAL_TOKENS=${SYNTH_CAL_TOKENS:-512}
EVAL=/usr/share/common-licenses/GPL-3
CAL=/usr/share/common-licenses/GPL-2

[ -x "$OUTCORE" ] || { echo "no binary at $OUTCORE (cargo build --release -p outcore)" >&2; exit 1; }
mkdir -p "$WORK"
log=$WORK/log.txt
: >"$log"

size() { stat -c %s "$1"; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
# Generation tokens/s (mean over the repetitions).
tg() {
    "$OUTCORE" bench -m "$1" -p 0 -n 64 -r 3 -t "$THREADS" --json 2>>"$log" |
        python3 -c 'import json,sys; print("%.1f" % json.load(sys.stdin)["tg_tokens_per_s"]["mean"])'
}
# Distinct ranks of the factored tensors, from compress's per-tensor report.
ranks() { awk 'NR>1 && $3 ~ /^[0-9]+$/ { print $3 }' "$1" | sort -n | uniq | paste -sd/; }
# "X.X s" wall time of compress, from its summary line.
secs() { grep -o '[0-9.]* s$' "$1" | tail -1; }

row() { printf "| %-22s | %-13s | %9s | %10s | %8s | %8s |\n" "$@"; }
header() {
    row "$1" "ranks" "file MiB" "perplexity" "tok/s" "compress"
    row "---" "---" "---" "---" "---" "---"
}

# --------------------------------------------------------------------------------------------
if [[ " $PARTS " == *" tiny "* ]]; then
    T=$FIXTURES/tiny-llama/tiny-llama.f32.gguf
    sample() { # seed -> 256 ids (1 + 255 sampled)
        "$OUTCORE" run -m "$T" --ids 1 -n 255 --temp 1 --seed "$1" --ignore-eos --print-ids \
            --no-echo -t "$THREADS" 2>>"$log" | sed -n 's/^ids: /1,/p'
    }
    for s in 1 2 3 4; do sample $((100 + s)); done >"$WORK/tiny-eval.ids"
    for s in 1 2 3 4 5 6 7 8; do sample $((200 + s)); done | tr '\n' ',' >"$WORK/tiny-cal.ids"
    tiny_ppl() {
        local tot=0 i=0
        while read -r ids; do
            "$OUTCORE" logits -m "$1" --ids "$ids" --all-positions -o "$WORK/l$i.bin" \
                -t "$THREADS" 2>>"$log" >/dev/null
            i=$((i + 1))
        done <"$WORK/tiny-eval.ids"
        python3 - "$WORK" "$i" <<'EOF'
import sys, numpy as np
work, n = sys.argv[1], int(sys.argv[2])
ids = [list(map(int, l.split(","))) for l in open(f"{work}/tiny-eval.ids") if l.strip()]
nll, cnt = 0.0, 0
for i in range(n):
    lg = np.fromfile(f"{work}/l{i}.bin", dtype="<f4").reshape(len(ids[i]), -1).astype(np.float64)
    m = lg.max(axis=1, keepdims=True)
    lp = lg - m - np.log(np.exp(lg - m).sum(axis=1, keepdims=True))
    t = np.array(ids[i][1:])
    nll -= lp[np.arange(len(t)), t].sum()
    cnt += len(t)
print("%.3f" % np.exp(nll / cnt))
EOF
    }
    echo
    echo "tiny-llama (f32, 201,920 parameters; factors f32; ppl on 4 x 256 of its own samples)"
    echo
    header "tiny-llama"
    row "original f32" "full" "$(mib "$(size "$T")")" "$(tiny_ppl "$T")" "$(tg "$T")" "-"
    for p in $REDUCTIONS; do
        for mode in plain calibrated; do
            out=$WORK/tiny-$mode-$p.gguf
            extra=()
            [ "$mode" = calibrated ] && extra=(--calibration-ids "$WORK/tiny-cal.ids" --calibration-ctx 256)
            "$OUTCORE" compress -m "$T" -o "$out" --reduction "$p" --iters "$ITERS" --type f32 \
                --force "${extra[@]}" >"$WORK/rep.txt" 2>"$WORK/err.txt"
            cat "$WORK/err.txt" >>"$log"
            row "-$(awk -v p="$p" 'BEGIN{print p*100}')% $mode" "$(ranks "$WORK/rep.txt")" \
                "$(mib "$(size "$out")")" "$(tiny_ppl "$out")" "$(tg "$out")" "$(secs "$WORK/err.txt")"
            rm -f "$out"
        done
    done
    rm -f "$WORK"/l*.bin
fi

# --------------------------------------------------------------------------------------------
if [[ " $PARTS " == *" demo "* ]]; then
    [ -f "$DEMO" ] || { echo "demo model $DEMO missing: run scripts/fetch-demo-model.sh" >&2; exit 1; }
    Q8=$WORK/demo-q8_0.gguf
    "$OUTCORE" quantize "$DEMO" "$Q8" --type q8_0 --pure --force -t "$THREADS" >>"$log" 2>&1
    ppl_args=()
    [ -n "${PPL_CHUNKS:-}" ] && ppl_args=(--chunks "$PPL_CHUNKS")
    ppl() {
        "$OUTCORE" perplexity -m "$1" -f "$EVAL" -t "$THREADS" "${ppl_args[@]}" 2>>"$log" |
            sed -n 's/^Final estimate: PPL = \([0-9.]*\).*/\1/p'
    }
    echo
    echo "SmolLM2-135M-Instruct (ppl: GPL-3, ${PPL_CHUNKS:-all} chunks of 512; source Q8_0; factors Q8_0; iters $ITERS; calibration $CAL_TOKENS tokens of GPL-2 in contexts of $CAL_CTX)"
    echo
    header "demo model"
    row "Q4_1 (as shipped)" "full" "$(mib "$(size "$DEMO")")" "$(ppl "$DEMO")" "$(tg "$DEMO")" "-"
    row "Q8_0 (source)" "full" "$(mib "$(size "$Q8")")" "$(ppl "$Q8")" "$(tg "$Q8")" "-"
    for p in $REDUCTIONS; do
        for mode in plain calibrated; do
            out=$WORK/demo-$mode-$p.gguf
            extra=()
            [ "$mode" = calibrated ] && extra=(--calibration "$CAL" --calibration-tokens "$CAL_TOKENS" --calibration-ctx "$CAL_CTX")
            "$OUTCORE" compress -m "$Q8" -o "$out" --reduction "$p" --iters "$ITERS" --type q8_0 \
                --force "${extra[@]}" >"$WORK/rep.txt" 2>"$WORK/err.txt"
            cat "$WORK/err.txt" >>"$log"
            row "-$(awk -v p="$p" 'BEGIN{print p*100}')% $mode" "$(ranks "$WORK/rep.txt")" \
                "$(mib "$(size "$out")")" "$(ppl "$out")" "$(tg "$out")" "$(secs "$WORK/err.txt")"
            rm -f "$out"
        done
    done
    rm -f "$Q8"
fi

# --------------------------------------------------------------------------------------------
if [[ " $PARTS " == *" synth "* ]]; then
    S=$WORK/synth1b.gguf
    "$OUTCORE" synth --arch llama --params 1B --type q8_0 -o "$S" --force -t "$THREADS" >>"$log" 2>&1
    echo
    echo "synthetic Llama 1B (Q8_0, $(mib "$(size "$S")") MiB): compress --rank $SYNTH_RANK --iters $SYNTH_ITERS, Q8_0 factors"
    echo
    for mode in plain calibrated; do
        extra=()
        [ "$mode" = calibrated ] && extra=(--calibration "$CAL" --calibration-tokens "$SYNTH_CAL_TOKENS" --calibration-ctx "$CAL_CTX")
        /usr/bin/time -f "%e s wall, peak RSS %M KiB" -o "$WORK/time.txt" \
            "$OUTCORE" compress -m "$S" -o "$WORK/synth-lr.gguf" --rank "$SYNTH_RANK" \
            --iters "$SYNTH_ITERS" --force "${extra[@]}" >/dev/null 2>"$WORK/err.txt"
        echo "- $mode: $(cat "$WORK/time.txt"); $(tail -1 "$WORK/err.txt" | sed 's/.*SVD, //')"
        cat "$WORK/err.txt" >>"$log"
        rm -f "$WORK/synth-lr.gguf"
    done
    rm -f "$S"
fi
echo
echo "(log: $log)"
