#!/usr/bin/env bash
# Out-of-core benchmark: outcore vs llama.cpp (llama-cpp-python) on a synthetic ~2 GB Q8_0
# model inside cgroup v1 memory caps of 100/75/50/25 % of the model size, each run from a cold
# page cache; plus "fit" (the model and everything the run needs besides it: KV cache, scratch
# and margin, as `outcore plan` counts them, and 64 MiB for the process image: a cap that holds
# the whole model),
# "min" (the least cap outcore's planner accepts) and "imin" (the issue's floor).
#
# Prints per run: tokens/s (decode), bytes read from disk per generated token (/proc/PID/io
# read_bytes of the capped process tree; outcore's own streamer figure too), peak memory of the
# cgroup (memory.max_usage_in_bytes), whether it was OOM-killed, whether its tokens equal the
# uncapped run's, and the sequential-read bound from an O_DIRECT 4 MB read probe of the model.
#
# Needs root (cgroup v1 memory controller at /sys/fs/cgroup/memory, /proc/sys/vm/drop_caches).
#
# Environment (all optional):
#   OUTCORE      outcore binary       (default: target-ooc/release/outcore, then target/release/outcore)
#   MODEL        the GGUF to run      (default: $WORK/llama-1.7b-q8_0.gguf, SmolLM2-1.7B shapes,
#                1.82 GB, made with `outcore synth --arch llama --params 1.7B --type q8_0`)
#   LLAMA_PYTHON an interpreter that imports llama_cpp (e.g. python3 where llama-cpp-python is installed)
#   LLAMA_VENV   a venv with llama_cpp; if neither is set a scratch venv is made in $WORK/venv (pip install)
#   N=32 THREADS=2 CTX=512 CAPS="fit 100 75 50 25 min imin" TIMEOUT=900 WORK=/tmp/ooc-bench
#   ENGINES="outcore llama.cpp"   OUTCORE_LOAD=auto (outcore --load)
#   LLAMA_CAPS   caps for llama.cpp (default: CAPS without min and imin)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WORK:-/tmp/ooc-bench}
N=${N:-32}
THREADS=${THREADS:-2}
CTX=${CTX:-512}
CAPS=${CAPS:-"fit 100 75 50 25 min imin"}
# llama.cpp skips outcore's own planner floors (min, imin) unless asked: at ~300 MB it would
# thrash for the whole TIMEOUT.
LLAMA_CAPS=${LLAMA_CAPS:-$(echo " $CAPS " | sed 's/ min / /; s/ imin / /')}
TIMEOUT=${TIMEOUT:-900}
ENGINES=${ENGINES:-"outcore llama.cpp"}
OUTCORE_LOAD=${OUTCORE_LOAD:-auto}
PROMPT=${PROMPT:-"The quick brown fox jumps over the lazy dog. Once upon a time"}
CG=/sys/fs/cgroup/memory
mkdir -p "$WORK"

die() { echo "out-of-core.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (cgroups, drop_caches)"
[ -d "$CG" ] || die "no cgroup v1 memory controller at $CG"

if [ -z "${OUTCORE:-}" ]; then
  for c in "$here/target-ooc/release/outcore" "$here/target/release/outcore"; do
    [ -x "$c" ] && OUTCORE=$c && break
  done
  [ -n "${OUTCORE:-}" ] || die "no outcore binary: cargo build --release -p outcore (or set OUTCORE)"
fi

MODEL=${MODEL:-$WORK/llama-1.7b-q8_0.gguf}
if [ ! -f "$MODEL" ]; then
  echo "# making $MODEL with outcore synth" >&2
  "$OUTCORE" synth --arch llama --params 1.7B --type q8_0 -o "$MODEL" -t "$THREADS" >&2
fi
model_bytes=$(stat -c %s "$MODEL")

if [[ " $ENGINES " == *" llama.cpp "* ]] && [ -z "${LLAMA_PYTHON:-}" ]; then
  if [ -z "${LLAMA_VENV:-}" ]; then
    LLAMA_VENV=$WORK/venv
    if ! "$LLAMA_VENV/bin/python" -c "import llama_cpp" 2>/dev/null; then
      echo "# building a scratch venv with llama-cpp-python in $LLAMA_VENV (slow: compiles llama.cpp)" >&2
      python3 -m venv "$LLAMA_VENV"
      "$LLAMA_VENV/bin/pip" install -q llama-cpp-python >&2
    fi
  fi
  LLAMA_PYTHON=$LLAMA_VENV/bin/python
fi
if [[ " $ENGINES " == *" llama.cpp "* ]]; then
  "$LLAMA_PYTHON" -c "import llama_cpp" || die "$LLAMA_PYTHON cannot import llama_cpp"
fi

cat > "$WORK/llama_run.py" <<'EOF'
# Greedy decode with llama.cpp over mmap; prints one JSON line with timings and token ids.
import json, sys, time
from llama_cpp import Llama
model, prompt, n, threads, ctx = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
t0 = time.time()
llm = Llama(model_path=model, n_ctx=ctx, n_threads=threads, n_threads_batch=threads,
            use_mmap=True, use_mlock=False, seed=0, verbose=False)
t1 = time.time()
toks = llm.tokenize(prompt.encode(), add_bos=True)
def read_bytes():
    with open("/proc/self/io") as f:
        return int(next(l for l in f if l.startswith("read_bytes:")).split()[1])
stamps, ids, warm = [], [], None
for t in llm.generate(toks, temp=0.0, top_k=1, reset=True):
    stamps.append(time.time()); ids.append(int(t))
    if warm is None:
        warm = read_bytes()
    if len(ids) >= n:
        break
gen = (n - 1) / (stamps[-1] - stamps[0]) if n > 1 else 0.0
warm_mb = (read_bytes() - warm) / 1e6 / (n - 1) if n > 1 else 0.0
print(json.dumps({"load_s": t1 - t0, "first_token_s": stamps[0] - t1, "gen_tps": gen, "warm_mb_per_token": warm_mb, "ids": ids}))
EOF

drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }

# Sequential-read bound: O_DIRECT 4 MB reads of the whole model, cold. The disk's speed drifts
# over minutes, so it is probed again before every run and that run's bound uses it.
probe_disk() {
  drop_caches
  local t0 t1
  t0=$(date +%s.%N)
  dd if="$MODEL" of=/dev/null bs=4M iflag=direct status=none
  t1=$(date +%s.%N)
  awk -v b="$model_bytes" -v a="$t0" -v z="$t1" 'BEGIN { printf "%.0f", b / (z - a) }'
}
disk_bw=$(probe_disk)

# min: the least cap outcore's planner accepts (KV + scratch + margin + hot non-layer tensors +
# one layer); imin: the issue's floor, KV + scratch + one layer + 64 MB (the output matrix then
# lives in whatever page cache is left).
# fit: everything resident: hot tensors + KV + scratch + margin, plus 64 MiB for the process
# image the cgroup already holds when the planner looks (binary and libraries paged in, heap).
read -r min_cap imin_cap fit_cap < <("$OUTCORE" plan -m "$MODEL" -c "$CTX" --no-probe --json |
  python3 -c 'import json,sys; j=json.load(sys.stdin); p=j["plan"]
over = p["kv_bytes"] + p["scratch_bytes"] + p["margin_bytes"]
print(p["min_required"], p["kv_bytes"] + p["scratch_bytes"] + max(j["layer_bytes"]) + (64 << 20),
      over + p["hot_non_layer_bytes"] + sum(j["layer_bytes"]) + (64 << 20))')

mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1e6 }'; }

# run_capped NAME LIMIT_BYTES|none OUTFILE CMD...: runs CMD in a fresh memory cgroup from a
# cold cache; writes rc, peak, oom, read_bytes to NAME.* files in $WORK.
run_capped() {
  local name=$1 limit=$2 out=$3; shift 3
  local dir=$CG/ooc-bench-$name
  [ -d "$dir" ] && rmdir "$dir" 2>/dev/null || true
  mkdir "$dir"
  if [ "$limit" != none ]; then
    echo "$limit" > "$dir/memory.limit_in_bytes"
  fi
  [ -f "$dir/memory.swappiness" ] && echo 0 > "$dir/memory.swappiness" 2>/dev/null || true
  drop_caches
  local rc=0
  # The shell joins the cgroup, runs CMD and, after reaping it, prints its own /proc io: a
  # reaped child's I/O counters are added to the parent's, so read_bytes covers CMD's tree.
  timeout "$TIMEOUT" sh -c 'echo $$ > "$1/cgroup.procs"; shift; io=$1; shift
    "$@"; rc=$?; cat /proc/$$/io > "$io"; exit $rc' sh "$dir" "$WORK/$name.io" "$@" \
    > "$out" 2> "$WORK/$name.err" || rc=$?
  echo "$rc" > "$WORK/$name.rc"
  cat "$dir/memory.max_usage_in_bytes" > "$WORK/$name.peak"
  { grep -E '^oom_kill ' "$dir/memory.oom_control" || echo "oom_kill 0"; } | awk '{print $2}' > "$WORK/$name.oom"
  rmdir "$dir" 2>/dev/null || true
}

read_bytes() { awk '/^read_bytes/ {print $2}' "$WORK/$1.io" 2>/dev/null || echo 0; }

printf '# model %s: %s MB; disk O_DIRECT 4 MB sequential read %s MB/s; threads %s, -n %s, ctx %s; load %s\n' \
  "$MODEL" "$(mb "$model_bytes")" "$(mb "$disk_bw")" "$THREADS" "$N" "$CTX" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-9s %-7s %9s %8s %10s %10s %10s %9s %11s %9s %6s %6s %5s\n' \
  engine cap cap_MB tok/s read_MB/tok warm_MB/tok strm_MB/tok disk_MB/s bound_tok/s peak_MB killed rc same
# Caps outer, engines inner: the disk's speed drifts over minutes (a VM disk behind the host's
# page cache), so each cap's runs of the two engines sit next to each other in time.
declare -A TPS REF
for cap in none $CAPS; do
  for engine in $ENGINES; do
    caps=$CAPS
    [ "$engine" = llama.cpp ] && caps=$LLAMA_CAPS
    [[ " none $caps " == *" $cap "* ]] || continue
    case $cap in
      none) limit=none ;;
      min) limit=$min_cap ;;
      fit) limit=$fit_cap ;;
      imin) limit=$imin_cap ;;
      *) limit=$((model_bytes * cap / 100)) ;;
    esac
    name=${engine//./}-$cap
    # Probed before every run of either engine: the same reading history before each.
    disk_bw=$(probe_disk)
    if [ "$engine" = outcore ]; then
      run_capped "$name" "$limit" "$WORK/$name.out" "$OUTCORE" run -m "$MODEL" -p "$PROMPT" \
        -n "$N" --temp 0 --ignore-eos -t "$THREADS" -c "$CTX" --load "$OUTCORE_LOAD" \
        --stats --print-ids --no-echo
      # Decode steps (tokens after the first, which the prompt pass yields) per second, 3 digits.
      tps=$(sed -n 's/^generation: *\([0-9]*\) tokens in \([0-9.]*\) ms.*/\1 \2/p' "$WORK/$name.err" |
        awk '{ if ($2 > 0) printf "%.3f", ($1 - 1) / ($2 / 1000) }')
      ids=$(sed -n 's/^ids: //p' "$WORK/$name.out")
      strm=$(sed -n 's/^streaming: .*(\([0-9.]*\) MB per pass over.*/\1/p' "$WORK/$name.err")
      per_pass=$(sed -n 's/^streaming: .*resident, \([0-9.]*\) MB streamed per pass.*/\1/p' "$WORK/$name.err")
      warm=$(sed -n 's/^after warm-up: .*(\([0-9.]*\) MB per token).*/\1/p' "$WORK/$name.err")
    else
      run_capped "$name" "$limit" "$WORK/$name.out" "$LLAMA_PYTHON" "$WORK/llama_run.py" \
        "$MODEL" "$PROMPT" "$N" "$THREADS" "$CTX"
      tps=$(python3 -c 'import json,sys; print("%.3f" % json.load(open(sys.argv[1]))["gen_tps"])' "$WORK/$name.out" 2>/dev/null || true)
      ids=$(python3 -c 'import json,sys; print(",".join(map(str, json.load(open(sys.argv[1]))["ids"])))' "$WORK/$name.out" 2>/dev/null || true)
      warm=$(python3 -c 'import json,sys; print("%.1f" % json.load(open(sys.argv[1]))["warm_mb_per_token"])' "$WORK/$name.out" 2>/dev/null || true)
      strm=""; per_pass=""
    fi
    rc=$(cat "$WORK/$name.rc"); peak=$(cat "$WORK/$name.peak"); oom=$(cat "$WORK/$name.oom")
    rb=$(read_bytes "$name")
    killed=no
    { [ "$rc" = 137 ] || [ "${oom:-0}" != 0 ]; } && killed=yes
    [ "$rc" = 124 ] && killed=timeout
    [ "$cap" = none ] && REF[$engine]=$ids
    ref=${REF[$engine]:-}
    same=-
    [ -n "$ids" ] && [ -n "$ref" ] && { [ "$ids" = "$ref" ] && same=yes || same=no; }
    bound=-
    [ -n "$per_pass" ] && bound=$(awk -v bw="$disk_bw" -v s="$per_pass" 'BEGIN { if (s > 0) printf "%.3f", bw / (s * 1e6); else print "mem" }')
    TPS[$name]=${tps:-}
    printf '%-9s %-7s %9s %8s %10s %10s %10s %9s %11s %9s %6s %6s %5s\n' "$engine" "$cap" \
      "$([ "$limit" = none ] && echo - || mb "$limit")" "${tps:--}" \
      "$(awk -v b="${rb:-0}" -v n="$N" 'BEGIN { printf "%.1f", b / n / 1e6 }')" "${warm:--}" "${strm:--}" \
      "$(mb "$disk_bw")" \
      "$bound" "$(mb "$peak")" "$killed" "$rc" "$same"
  done
done
if [[ " $ENGINES " == *" outcore "* ]] && [[ " $ENGINES " == *" llama.cpp "* ]]; then
  printf '# outcore / llama.cpp tokens/s:'
  for cap in none $CAPS; do
    a=${TPS[outcore-$cap]:-}; b=${TPS[llamacpp-$cap]:-}
    [ -n "$a" ] && [ -n "$b" ] && printf ' %s %sx;' "$cap" "$(awk -v a="$a" -v b="$b" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "inf" }')"
  done
  echo
fi
echo "# read_MB/tok: /proc io read_bytes of the whole run (load + prompt + $N tokens) / $N;"
echo "# warm_MB/tok: bytes read from the first generated token to the last / (N - 1): the steady-state cost;"
echo "# strm_MB/tok: outcore's streamer bytes per forward pass; bound: disk_MB/s / streamed bytes per pass, the disk"
echo "# probed (O_DIRECT 4 MB dd, cold) just before that run."
echo "# logs: $WORK/<engine>-<cap>.{out,err,io}"
