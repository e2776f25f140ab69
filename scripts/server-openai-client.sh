#!/usr/bin/env bash
# Checks `outcore serve` with the official OpenAI Python client: chat, streaming chat, completions.
# Creates a scratch venv in /tmp, pip-installs `openai`, builds and starts the server on a free
# loopback port with the demo model, runs scripts/server-openai-client.py, stops the server.
# Env: OUTCORE_DEMO_MODEL (default: the path scripts/fetch-demo-model.sh prints), OUTCORE_BIN
# (a prebuilt binary; default: cargo build), VENV (default /tmp/outcore-openai-venv).
set -euo pipefail
cd "$(dirname "$0")/.."

model="${OUTCORE_DEMO_MODEL:-$HOME/.cache/outcore/SmolLM2-135M-Instruct.Q4_1.gguf}"
if [[ ! -f "$model" ]]; then
  model="$(./scripts/fetch-demo-model.sh | tail -n1)"
fi
venv="${VENV:-/tmp/outcore-openai-venv}"
if [[ ! -x "$venv/bin/python" ]]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check openai

bin="${OUTCORE_BIN:-}"
if [[ -z "$bin" ]]; then
  cargo build --quiet -p outcore --bin outcore
  bin="${CARGO_TARGET_DIR:-target}/debug/outcore"
fi

log="$(mktemp /tmp/outcore-serve.XXXXXX.log)"
key="test-key-$$"
"$bin" serve -m "$model" --alias smol --port 0 --parallel 2 --api-key "$key" 2>"$log" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true' EXIT
url=""
for _ in $(seq 1 300); do
  url="$(grep -o 'http://[0-9.:]*' "$log" | head -n1 || true)"
  [[ -n "$url" ]] && break
  kill -0 "$pid" 2>/dev/null || { cat "$log"; echo "server exited" >&2; exit 1; }
  sleep 0.1
done
[[ -n "$url" ]] || { cat "$log"; echo "server did not start" >&2; exit 1; }
echo "server at $url"
code="$(curl -s -o /dev/null -w '%{http_code}' "$url/v1/models")"
[[ "$code" == 401 ]] || { echo "expected 401 without the key, got $code" >&2; exit 1; }
"$venv/bin/python" scripts/server-openai-client.py "$url/v1" smol "$key"
kill -TERM "$pid"
wait "$pid"
echo "server stopped cleanly on SIGTERM"
trap - EXIT
