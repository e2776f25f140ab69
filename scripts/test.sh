#!/usr/bin/env bash
# The test command: fetch the demo model if absent, then lint and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
export OUTCORE_DEMO_MODEL="${OUTCORE_DEMO_MODEL:-$(./scripts/fetch-demo-model.sh)}"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test --workspace 2>&1
