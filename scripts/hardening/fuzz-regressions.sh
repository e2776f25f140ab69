#!/usr/bin/env bash
# Replays every input under fuzz/regressions/<target>/ through its fuzz target (built by
# scripts/hardening/fuzz-all.sh, or built here the same way) and fails if any crashes.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT/fuzz"
BIN=target/x86_64-unknown-linux-gnu/release
for dir in regressions/*/; do
    t=$(basename "$dir")
    if [ ! -x "$BIN/$t" ]; then
        "$ROOT/scripts/hardening/fuzz-all.sh" 0 "$t" >/dev/null
    fi
    files=("$dir"*)
    "$BIN/$t" -runs=1 "${files[@]}" >/dev/null 2>&1 && echo "$t: ${#files[@]} inputs ok" || { echo "$t: FAILED"; exit 1; }
done
