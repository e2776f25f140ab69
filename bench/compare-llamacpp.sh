#!/usr/bin/env bash
# outcore vs llama.cpp speed on the same model, threads and lengths, alternating runs:
#
#   bench/compare-llamacpp.sh -m MODEL.gguf [-p 512] [-n 128] [-t 2] [-r 5]
#
# llama.cpp comes from the PyPI package llama-cpp-python (0.3.36), installed into a scratch venv
# (~/.cache/outcore/llamacpp-venv, building llama.cpp takes ~20 min on 2 cores) unless
# LLAMA_PYTHON names an interpreter that already imports llama_cpp. Nothing is vendored.
# Run it on a quiet machine: both tools are timed by wall clock.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PY=${LLAMA_PYTHON:-}
if [ -z "$PY" ]; then
    VENV=${LLAMA_VENV:-$HOME/.cache/outcore/llamacpp-venv}
    if ! "$VENV/bin/python" -c 'import llama_cpp' 2>/dev/null; then
        echo "installing llama-cpp-python 0.3.36 into $VENV (builds llama.cpp, ~20 min)..." >&2
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install -q numpy 'llama-cpp-python==0.3.36'
    fi
    PY="$VENV/bin/python"
fi
cargo build --release --bin outcore >&2
exec python3 bench/compare_llamacpp.py --python "$PY" --outcore target/release/outcore "$@"
