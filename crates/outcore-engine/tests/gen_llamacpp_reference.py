#!/usr/bin/env python3
"""Greedy continuations and last-position logits of the demo model from llama.cpp as shipped in
llama-cpp-python 0.3.36 (pip install llama-cpp-python==0.3.36; CPU build), for the prompts of
../shared/fixtures/smollm2-135m-q4_1. Writes tests/data/llamacpp_0336_reference.json.

Why a second reference: the shared fixture was made with llama.cpp b4747; llama-cpp-python 0.3.36
reproduces its raw-prompt logits exactly but its decode steps (and 37-token prompts) differ, so its
own greedy continuations leave the fixture on rows 1, 3, 4, 8 and 9. outcore follows 0.3.36's CPU
arithmetic bit for bit; this file pins that.

Usage: python3 gen_llamacpp_reference.py MODEL.gguf FIXTURE_DIR OUT.json
"""
import hashlib, json, sys

import llama_cpp
import numpy as np

model, fixdir, out = sys.argv[1:4]
llm = llama_cpp.Llama(model, n_ctx=2048, n_batch=2048, n_ubatch=2048, n_threads=2, verbose=False)
nv = llm.n_vocab()


def logits():
    return np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(nv,)).copy()


rows = [json.loads(l) for l in open(f"{fixdir}/greedy.jsonl")]
greedy = []
for r in rows:
    llm.reset()
    llm.eval(r["prompt_ids"])
    ids = []
    for _ in range(32):
        t = int(np.argmax(logits()))  # lowest id on ties, like llama.cpp's greedy sampler
        ids.append(t)
        llm.eval([t])
    greedy.append({"prompt_ids": r["prompt_ids"], "greedy_ids": ids})

meta = json.load(open(f"{fixdir}/logits.json"))
last = []
for e in meta["entries"]:
    llm.reset()
    llm.eval(e["prompt_ids"])
    lg = logits()
    top = np.argsort(-lg, kind="stable")[:40]
    last.append({
        "prompt_ids": e["prompt_ids"],
        "sha256": hashlib.sha256(lg.astype("<f4").tobytes()).hexdigest(),
        "top": [[int(i), float(lg[i])] for i in top],
    })

json.dump({"producer": f"llama-cpp-python {llama_cpp.__version__}", "greedy": greedy, "last_logits": last},
          open(out, "w"), indent=1)
print("wrote", out)
