#!/usr/bin/env bash
# Memory promise under stress: generation runs for MINUTES inside a cgroup v1 memory cap of half the
# synthetic model's size while another process allocates and frees memory in waves. outcore must
# never be killed (no OOM kill, no non-zero exit); the script reports tokens/s per run and the floor.
#
#   scripts/hardening/soak.sh [MINUTES]        (default 10)
# env: OUTCORE (binary, default target/release/outcore), PARAMS (synth size class, default 1B),
#      TYPE (default q4_0), WAVE_MB (pressure wave size, default 512), WORK (default /tmp/outcore-soak),
#      N_PREDICT (tokens per run, default 32), THREADS (default 2)
# Needs root and the cgroup v1 memory controller at /sys/fs/cgroup/memory.
set -euo pipefail
MINUTES=${1:-10}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUTCORE=${OUTCORE:-$ROOT/target/release/outcore}
PARAMS=${PARAMS:-1B}
TYPE=${TYPE:-q4_0}
WAVE_MB=${WAVE_MB:-512}
WORK=${WORK:-/tmp/outcore-soak}
N_PREDICT=${N_PREDICT:-32}
THREADS=${THREADS:-2}
die() { echo "soak: $*" >&2; exit 2; }
[ -x "$OUTCORE" ] || die "no binary at $OUTCORE (cargo build --release -p outcore, or set OUTCORE)"
[ "$(id -u)" = 0 ] || die "needs root for the cgroup v1 memory cap"
[ -d /sys/fs/cgroup/memory ] || die "no cgroup v1 memory controller at /sys/fs/cgroup/memory"
mkdir -p "$WORK"
MODEL=$WORK/synth-$PARAMS-$TYPE.gguf
if [ ! -f "$MODEL" ]; then
    echo "soak: synthesising $MODEL"
    "$OUTCORE" synth --params "$PARAMS" --type "$TYPE" -o "$MODEL" >/dev/null
fi
SIZE=$(stat -c %s "$MODEL")
LIMIT=$((SIZE / 2))
CG=/sys/fs/cgroup/memory/outcore-soak-$$
mkdir "$CG"
echo "$LIMIT" > "$CG/memory.limit_in_bytes"
PRESSURE_PID=
cleanup() {
    [ -n "$PRESSURE_PID" ] && kill "$PRESSURE_PID" 2>/dev/null || true
    rmdir "$CG" 2>/dev/null || true
}
trap cleanup EXIT

# Memory pressure outside the cgroup: waves of WAVE_MB allocated, touched, held, freed.
python3 - "$WAVE_MB" <<'PY' &
import sys, time
mb = int(sys.argv[1])
while True:
    for frac in (0.25, 0.5, 1.0, 0.5):
        b = bytearray(int(mb * frac) << 20)
        for i in range(0, len(b), 4096):
            b[i] = 1
        time.sleep(2)
        del b
        time.sleep(1)
PY
PRESSURE_PID=$!

echo "soak: model $MODEL ($((SIZE >> 20)) MiB), cap $((LIMIT >> 20)) MiB, pressure waves up to $WAVE_MB MiB, $MINUTES min"
END=$(awk -v m="$MINUTES" -v now="$(date +%s)" 'BEGIN { printf "%d", now + m * 60 }')
RUNS=0; FAILS=0; RATES=()
while [ "$(date +%s)" -lt "$END" ]; do
    set +e
    OUT=$(bash -c 'echo $$ > "$1/cgroup.procs"; shift; exec "$@"' _ "$CG" \
        "$OUTCORE" run -m "$MODEL" -p "Once upon a time" -n "$N_PREDICT" --ignore-eos --temp 0 \
        -t "$THREADS" --stats --no-echo 2>&1 >/dev/null)
    RC=$?
    set -e
    RUNS=$((RUNS + 1))
    RATE=$(echo "$OUT" | sed -n 's/.*generation: .*(\([0-9.]*\) tok\/s).*/\1/p' | tail -1)
    if [ "$RC" -ne 0 ]; then
        FAILS=$((FAILS + 1))
        echo "run $RUNS: exit $RC"; echo "$OUT" | tail -5
    else
        RATES+=("${RATE:-0}")
        echo "run $RUNS: ${RATE:-?} tok/s"
    fi
done
OOM=$(awk '/oom_kill /{print $2}' "$CG/memory.oom_control" 2>/dev/null || echo "?")
PEAK=$(cat "$CG/memory.max_usage_in_bytes")
FLOOR=$(printf '%s\n' "${RATES[@]:-0}" | sort -g | head -1)
MEAN=$(printf '%s\n' "${RATES[@]:-0}" | awk '{s+=$1} END {if (NR) printf "%.2f", s/NR}')
echo "soak: $RUNS runs, $FAILS failed, oom_kill $OOM, cgroup peak $((PEAK >> 20)) MiB of $((LIMIT >> 20)) MiB"
echo "soak: throughput floor $FLOOR tok/s, mean $MEAN tok/s"
[ "$FAILS" -eq 0 ] && [ "${OOM:-0}" = 0 ]
