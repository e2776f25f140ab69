#!/usr/bin/env bash
# Peak memory and throughput of `outcore convert` against llama.cpp's convert_hf_to_gguf.py on a
# synthetic ~3B f16 sharded HF checkpoint, both converting to q8_0 inside the same cgroup v1 memory
# cap (default 1.5 GB). Needs root (cgroup v1 at /sys/fs/cgroup/memory) and GNU time.
#
#   bench/convert-vs-llamacpp.sh                 # everything, defaults below
#   PARAMS=1B LIMIT=1000000000 bench/convert-vs-llamacpp.sh
#   SKIP_LLAMACPP=1 bench/convert-vs-llamacpp.sh # outcore only
#   KEEP_OUTPUTS=1 ...                           # keep the converted .gguf files (deleted otherwise)
#
# The synthetic checkpoint stays in $WORK (default /tmp/outcore-convert-bench/llama-$PARAMS-f16,
# 6.4 GB for 3B) and is reused by later runs; delete it when done. Free disk needed for 3B: about
# 10 GB (checkpoint + one 3.4 GB output at a time).
#
# llama.cpp is used from a scratch checkout that is never committed: LLAMA_CPP must point at a
# directory holding convert_hf_to_gguf.py and gguf-py/ (a llama.cpp tree, or the vendor/llama.cpp
# of the llama-cpp-python sdist), and VENV at a Python venv with its requirements (torch,
# transformers, sentencepiece, numpy). If VENV does not exist the script creates it and installs
# them with pip.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WORK:-/tmp/outcore-convert-bench}
PARAMS=${PARAMS:-3B}
LIMIT=${LIMIT:-1500000000}
TYPE=${TYPE:-q8_0}
LLAMA_CPP=${LLAMA_CPP:-/tmp/llama.cpp}
VENV=${VENV:-/tmp/llama.cpp-venv}
DEMO=${OUTCORE_DEMO_MODEL:-$HOME/.cache/outcore/SmolLM2-135M-Instruct.Q4_1.gguf}
OUTCORE=${OUTCORE:-}

die() { echo "error: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root for the cgroup v1 memory cap"
[ -d /sys/fs/cgroup/memory ] || die "no cgroup v1 memory controller at /sys/fs/cgroup/memory"
[ -x /usr/bin/time ] || die "needs GNU time at /usr/bin/time"
[ -f "$DEMO" ] || die "demo model $DEMO missing: run scripts/fetch-demo-model.sh"

if [ -z "$OUTCORE" ]; then
    (cd "$ROOT" && cargo build --release -p outcore >&2)
    OUTCORE=${CARGO_TARGET_DIR:-$ROOT/target}/release/outcore
fi
mkdir -p "$WORK"

# 1. The donor: the demo model as an HF directory, whose tokenizer llama.cpp recognises (smollm).
if [ ! -f "$WORK/donor/tokenizer.json" ]; then
    python3 /work/shared/tools/make_hf_from_gguf.py "$DEMO" "$WORK/donor" --dtype bf16 >&2 \
        || python3 "$ROOT/../shared/tools/make_hf_from_gguf.py" "$DEMO" "$WORK/donor" --dtype bf16 >&2
fi

# 2. The checkpoint: random weights of the real shapes, f16, 2 GB shards.
HF="$WORK/llama-$PARAMS-f16"
if [ ! -f "$HF/config.json" ]; then
    "$OUTCORE" synth --arch llama --params "$PARAMS" --type f16 --format safetensors --shard-size 2G \
        --seed 1 --donor "$WORK/donor" -o "$HF" --force
fi
IN_BYTES=$(du -cb "$HF"/*.safetensors | tail -1 | cut -f1)
echo "checkpoint: $HF ($(awk "BEGIN{printf \"%.2f\", $IN_BYTES/1e9}") GB of safetensors)"

# Runs "$@" in a fresh cgroup capped at $LIMIT bytes; prints wall time, peak RSS, the cgroup's peak
# (RSS + page cache) and whether the OOM killer fired. Caches are dropped first (cold start).
run_capped() {
    local name=$1; shift
    local cg=/sys/fs/cgroup/memory/outcore-bench-$name
    [ -d "$cg" ] && rmdir "$cg" 2>/dev/null || true
    mkdir "$cg"
    echo "$LIMIT" > "$cg/memory.limit_in_bytes"
    sync; echo 3 > /proc/sys/vm/drop_caches
    local log="$WORK/$name.time"
    set +e
    bash -c 'echo $$ > "$1/cgroup.procs"; shift; exec /usr/bin/time -v "$@"' _ "$cg" "$@" 2> "$log" > "$WORK/$name.out"
    local rc=$?
    set -e
    local wall rss peak oom
    wall=$(grep 'Elapsed (wall clock)' "$log" | awk '{print $NF}')
    rss=$(grep 'Maximum resident set size' "$log" | awk '{print $NF}')
    peak=$(cat "$cg/memory.max_usage_in_bytes")
    oom=$(grep -c oom_kill "$cg/memory.oom_control" >/dev/null 2>&1 && awk '/oom_kill /{print $2}' "$cg/memory.oom_control" || echo "?")
    local secs
    secs=$(echo "$wall" | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
    printf '%-10s exit %-3s wall %8.1f s  peak RSS %7.1f MB  cgroup peak %7.1f MB  oom_kill %s  input %7.1f MB/s\n' \
        "$name" "$rc" "$secs" "$(awk "BEGIN{print $rss/1024}")" "$(awk "BEGIN{print $peak/1e6}")" "$oom" \
        "$(awk "BEGIN{print $IN_BYTES/1e6/$secs}")" | tee -a "$WORK/results.txt"
    grep -E 'peak RSS|mode|in .*out' "$log" | sed 's/^/    /' || true
    LAST_SECS=$secs LAST_RSS_KB=$rss
    rmdir "$cg" 2>/dev/null || true
}

echo "--- $(date -u +%FT%TZ) PARAMS=$PARAMS TYPE=$TYPE LIMIT=$LIMIT nproc=$(nproc)" >> "$WORK/results.txt"
rm -f "$WORK/outcore.$TYPE.gguf"
run_capped outcore "$OUTCORE" convert "$HF" -o "$WORK/outcore.$TYPE.gguf" --type "$TYPE" --force
OC_SECS=$LAST_SECS OC_RSS=$LAST_RSS_KB
# Outputs are several GB each: keep them only when asked (KEEP_OUTPUTS=1).
[ -n "${KEEP_OUTPUTS:-}" ] || rm -f "$WORK/outcore.$TYPE.gguf"

if [ -z "${SKIP_LLAMACPP:-}" ]; then
    [ -f "$LLAMA_CPP/convert_hf_to_gguf.py" ] || die "no $LLAMA_CPP/convert_hf_to_gguf.py (set LLAMA_CPP)"
    if [ ! -x "$VENV/bin/python" ]; then
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install -q numpy sentencepiece transformers protobuf torch
    fi
    rm -f "$WORK/llamacpp.$TYPE.gguf"
    run_capped llama.cpp "$VENV/bin/python" "$LLAMA_CPP/convert_hf_to_gguf.py" "$HF" --outtype "$TYPE" \
        --outfile "$WORK/llamacpp.$TYPE.gguf"
    tail -3 "$WORK/llama.cpp.time" | sed 's/^/    /' || true
    [ -n "${KEEP_OUTPUTS:-}" ] || rm -f "$WORK/llamacpp.$TYPE.gguf"
    printf 'outcore vs llama.cpp: %.2fx faster (target >= 3), peak RSS %.3f of llama.cpp'"'"'s (target <= 0.25)\n' \
        "$(awk "BEGIN{print $LAST_SECS/$OC_SECS}")" "$(awk "BEGIN{print $OC_RSS/$LAST_RSS_KB}")" \
        | tee -a "$WORK/results.txt"
fi
echo "results appended to $WORK/results.txt"
