#!/usr/bin/env python3
"""Greedy token ids of llama2.c's runq.c on outcore's llama2.c exports of the demo model.

Writes tests/data/runq_reference.json, which tests/runq_reference.rs checks
`--numerics runq` against (every generated id equal).

The scratch build (nothing of llama2.c is kept in this repository):

    git clone https://github.com/karpathy/llama2.c /tmp/llama2c   # master; runq.c dated 2024-05-29
    # runq_ids.c = runq.c with three small edits:
    #  1. RoPE base from the environment: in forward(), `powf(10000.0f, ...)` becomes
    #     `powf(getenv("ROPE_THETA") ? atof(getenv("ROPE_THETA")) : 10000.0f, ...)`
    #     (llama2.c's format has no field for it; the demo model uses 100000);
    #  2. in generate(), when PROMPT_IDS="1,2,3" is set, those ids replace encode()'s
    #     (runq.c's SentencePiece encoder does not tokenize a GPT-2 byte-level vocabulary);
    #  3. in generate(), when PRINT_IDS is set, each sampled id is written to stderr as "id,".
    gcc -O3 -o runq_ids runq_ids.c -lm     # llama2.c's Makefile `runq` target: no -march,
                                           # no fast-math, no OpenMP

This script compiles a copy of runq_ids.c with one more edit, to the generation loop only:
runq.c stops at id 1 (llama2.c's BOS) even when the prompt forces it, and the demo model's id 1
is `<|im_start|>`, which the two chat prompts hold mid-prompt; the copy stops only when it
*samples* id 1 (`&& pos >= num_prompt_tokens` on that test). The forward pass is untouched.
When runq stops that way, "stopped" is true and the sampled id 1 is the last entry of "ids".

Usage: python3 crates/outcore-engine/tests/gen_runq_reference.py
  env LLAMA2C_DIR (default /tmp/llama2c; skipped with a notice when runq_ids.c is absent),
  OUTCORE_BIN (default: `cargo run -q -p outcore --`), OUTCORE_DEMO_MODEL (default
  ~/.cache/outcore/SmolLM2-135M-Instruct.Q4_1.gguf, from scripts/fetch-demo-model.sh).
"""

import hashlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent.parent
FIXTURES = Path(os.environ.get("OUTCORE_FIXTURES", REPO.parent / "shared" / "fixtures"))
OUT = HERE / "data" / "runq_reference.json"
GROUP_SIZES = [64, 32, 192]  # 64: export.py's and outcore's default; 192 = 3 * 64
N_PREDICT = 48
ROPE_THETA = "100000"


def dump(doc: dict) -> str:
    """JSON with one line per prompt row."""
    head = {k: v for k, v in doc.items() if k != "group_sizes"}
    lines = ["{"] + [f" {json.dumps(k)}: {json.dumps(v)}," for k, v in head.items()]
    lines.append(' "group_sizes": {')
    for gi, (gs, rows) in enumerate(doc["group_sizes"].items()):
        lines.append(f"  {json.dumps(gs)}: [")
        for ri, row in enumerate(rows):
            lines.append("   " + json.dumps(row) + ("," if ri + 1 < len(rows) else ""))
        lines.append("  ]" + ("," if gi + 1 < len(doc["group_sizes"]) else ""))
    lines += [" }", "}"]
    return "\n".join(lines) + "\n"


def main() -> int:
    l2c = Path(os.environ.get("LLAMA2C_DIR", "/tmp/llama2c"))
    if not (l2c / "runq_ids.c").is_file():
        print(f"skipped: {l2c}/runq_ids.c is absent (see this script's docstring)")
        return 0
    demo = Path(
        os.environ.get(
            "OUTCORE_DEMO_MODEL",
            Path.home() / ".cache/outcore/SmolLM2-135M-Instruct.Q4_1.gguf",
        )
    )
    if not demo.is_file():
        print(f"demo model {demo} missing: run scripts/fetch-demo-model.sh", file=sys.stderr)
        return 1
    outcore = shlex.split(os.environ.get("OUTCORE_BIN", "cargo run -q -p outcore --"))
    prompts = []
    for line in (FIXTURES / "smollm2-135m-q4_1" / "greedy.jsonl").read_text().splitlines():
        if line.strip():
            j = json.loads(line)
            prompts.append((j["prompt"], j["prompt_ids"]))

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        runq = tmp / "runq_ids"
        src = (l2c / "runq_ids.c").read_text()
        stop = "if (next == 1) {"
        if src.count(stop) != 1:
            print(f"{l2c}/runq_ids.c: expected one `{stop}`", file=sys.stderr)
            return 1
        (tmp / "runq_ids.c").write_text(
            src.replace(stop, "if (next == 1 && pos >= num_prompt_tokens) {")
        )
        subprocess.run(
            ["gcc", "-O3", "-o", str(runq), str(tmp / "runq_ids.c"), "-lm"], check=True
        )
        tok = tmp / "tokenizer.bin"
        runs = {}
        for gs in GROUP_SIZES:
            model = tmp / f"gs{gs}.bin"
            subprocess.run(
                outcore
                + ["export", "-m", str(demo), "--format", "llama2c", "--group-size", str(gs),
                   "-o", str(model), "--tokenizer-out", str(tok), "--force"],
                check=True,
                cwd=REPO,
            )
            rows = []
            for text, ids in prompts:
                env = dict(
                    os.environ,
                    ROPE_THETA=ROPE_THETA,
                    PROMPT_IDS=",".join(map(str, ids)),
                    PRINT_IDS="1",
                )
                steps = len(ids) + N_PREDICT - 1  # positions: the prompt, then N_PREDICT samples
                r = subprocess.run(
                    [str(runq), str(model), "-z", str(tok), "-t", "0", "-n", str(steps)],
                    env=env, capture_output=True, check=True,
                )
                err = r.stderr.decode("utf-8", "replace")
                got = [int(t) for t in err.split("achieved")[0].strip().split(",") if t.strip()]
                stopped = len(got) < N_PREDICT
                if stopped:
                    got.append(1)
                rows.append({"prompt": text, "prompt_ids": ids, "ids": got, "stopped": stopped})
                print(f"gs {gs}: {text!r}: {len(got)} ids{' (stopped on id 1)' if stopped else ''}")
            runs[str(gs)] = rows

    doc = {
        "what": "llama2.c runq.c (gcc -O3, greedy, -t 0) on `outcore export --format llama2c` of the demo model",
        "generator": "crates/outcore-engine/tests/gen_runq_reference.py",
        "demo_model": demo.name,
        "demo_model_sha256": hashlib.sha256(demo.read_bytes()).hexdigest(),
        "rope_theta": float(ROPE_THETA),
        "n_predict": N_PREDICT,
        "group_sizes": runs,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(dump(doc))
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
