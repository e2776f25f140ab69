#!/usr/bin/env bash
# The main job: fetch the demo model if absent, build outcore, and answer a chat prompt with statistics.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL="${OUTCORE_DEMO_MODEL:-$(./scripts/fetch-demo-model.sh)}"
cargo build --release --quiet -p outcore
./target/release/outcore run -m "$MODEL" --chat -p "${1:-What is the capital of France? Answer in one sentence.}" \
  -n 64 --temp 0 --stats
