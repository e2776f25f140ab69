#!/usr/bin/env python3
"""Seed corpora for the fuzz targets in fuzz/ (written to fuzz/corpus/<target>/, not committed).

GGUF seeds: the demo model's metadata with its token arrays cut to 256 entries and no tensors (the
real key set and value types in a few kB), the tiny fixture's metadata with small tensors, and small
synthetic files from gguf-py's writer covering every value type and a few tensor types.
safetensors seeds: small files from the `safetensors` package and the fixtures' index. Text seeds
for the tokenizer, chat messages for the template, OpenAI request bodies for the server.

  python3 scripts/hardening/fuzz_seeds.py      (needs gguf, numpy, safetensors)
"""
import json
import os
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "fuzz", "corpus")
FIXTURES = os.environ.get("OUTCORE_FIXTURES", os.path.join(ROOT, "..", "shared", "fixtures"))
DEMO = os.environ.get(
    "OUTCORE_DEMO_MODEL", os.path.expanduser("~/.cache/outcore/SmolLM2-135M-Instruct.Q4_1.gguf")
)


def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def gguf_bytes(build):
    import gguf

    with tempfile.TemporaryDirectory() as t:
        p = os.path.join(t, "s.gguf")
        w = gguf.GGUFWriter(p, "llama")
        build(w)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        return open(p, "rb").read()


def copy_metadata(w, reader, cut=256):
    import gguf

    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        vt = field.types[0]
        if vt == gguf.GGUFValueType.ARRAY:
            sub = field.types[1]
            vals = [field.parts[i] for i in field.data[:cut]]
            if sub == gguf.GGUFValueType.STRING:
                w.add_array(name, [bytes(v).decode("utf-8", "replace") for v in vals])
            else:
                w.add_array(name, [v.tolist()[0] for v in vals])
        elif vt == gguf.GGUFValueType.STRING:
            w.add_string(name, bytes(field.parts[field.data[0]]).decode("utf-8", "replace"))
        else:
            w.add_key_value(name, field.parts[field.data[0]].tolist()[0], vt)


def gguf_seeds():
    import gguf

    seeds = {}
    if os.path.isfile(DEMO):
        r = gguf.GGUFReader(DEMO)
        seeds["demo_metadata"] = gguf_bytes(lambda w: copy_metadata(w, r))
    else:
        print(f"NOTICE: demo model {DEMO} absent (scripts/fetch-demo-model.sh); seed skipped")
    tiny = os.path.join(FIXTURES, "tiny-llama", "tiny-llama.f32.gguf")
    if os.path.isfile(tiny):
        r = gguf.GGUFReader(tiny)

        def tiny_build(w):
            copy_metadata(w, r, cut=64)
            for t in r.tensors[:4]:
                w.add_tensor(t.name, np.zeros(8, dtype=np.float32))

        seeds["tiny_metadata"] = gguf_bytes(tiny_build)

    def all_types(w):
        w.add_uint8("t.u8", 1)
        w.add_int8("t.i8", -1)
        w.add_uint16("t.u16", 2)
        w.add_int16("t.i16", -2)
        w.add_uint32("llama.block_count", 1)
        w.add_int32("t.i32", -3)
        w.add_float32("t.f32", 1.5)
        w.add_uint64("t.u64", 4)
        w.add_int64("t.i64", -4)
        w.add_float64("t.f64", 2.5)
        w.add_bool("t.bool", True)
        w.add_string("t.str", "héllo")
        w.add_array("t.arr", [1, 2, 3])
        w.add_array("t.sarr", ["a", "b"])
        w.add_tensor("a", np.arange(8, dtype=np.float32))
        w.add_tensor("b", np.zeros((2, 32), dtype=np.float16))

    seeds["all_types"] = gguf_bytes(all_types)

    def quant(w):
        w.add_tensor(
            "q", np.zeros((2, 18), dtype=np.uint8), raw_dtype=gguf.GGMLQuantizationType.Q4_0
        )
        w.add_tensor(
            "k", np.zeros((1, 144), dtype=np.uint8), raw_dtype=gguf.GGMLQuantizationType.Q4_K
        )

    seeds["quant"] = gguf_bytes(quant)
    seeds["empty"] = gguf_bytes(lambda w: None)
    for name, b in seeds.items():
        put("gguf", name, b)
        put("gguf_views", name, b)


def safetensors_seeds():
    from safetensors.numpy import save

    put("safetensors", "f32", save({"x": np.arange(4, dtype=np.float32)}))
    put(
        "safetensors",
        "mixed",
        save(
            {"a": np.zeros((2, 3), dtype=np.float16), "b": np.ones(5, dtype=np.float32)},
            metadata={"format": "pt"},
        ),
    )
    put("safetensors", "empty", save({}))
    idx = os.path.join(FIXTURES, "tiny-llama", "model.safetensors.index.json")
    if os.path.isfile(idx):
        put("safetensors_index", "fixture", open(idx, "rb").read())
    put(
        "safetensors_index",
        "one_shard",
        json.dumps({"metadata": {"total_size": 16}, "weight_map": {"x": "a.safetensors", "y": "a.safetensors"}}),
    )
    put("safetensors_index", "escape", json.dumps({"weight_map": {"x": "../a.safetensors"}}))


def text_seeds():
    for i, s in enumerate(
        [
            "Hello world",
            "<|im_start|>user\nHi<|im_end|>\n",
            "  multiple   spaces\t\ttabs\n\n\nnewlines",
            "Ünïcödé 日本語 🤖 émojis",
            "12345678901234567890 3.14159 1e10",
            "def f(x):\n    return x ** 2  # code",
            "\u200b\ufeff\u0000zero width",
        ]
    ):
        put("tokenizer", f"t{i}", s)


def chat_seeds():
    msgs = [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": [{"type": "text", "text": "parts"}]},
    ]
    put("chat_template", "json0", bytes([0]) + json.dumps(msgs).encode())
    put("chat_template", "json1", bytes([0x81]) + json.dumps(msgs[:2]).encode())
    tool = [{"role": "assistant", "content": None, "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]}]
    put("chat_template", "tool", bytes([2]) + json.dumps(tool).encode())
    put("chat_template", "nul", b"\x03system\x00Be brief\x00user\x00Hello\x00assistant\x00Hi")


def request_seeds():
    reqs = [
        {"model": "m", "prompt": "Hello", "max_tokens": 16, "temperature": 0.7, "stop": ["\n"]},
        {"model": "m", "prompt": [1, 2, 3], "stream": True, "stream_options": {"include_usage": True}},
        {"model": "m", "prompt": ["a", "b"], "n": 2, "seed": 5, "top_p": 0.9, "top_k": 40},
        {"model": "m", "messages": [{"role": "user", "content": "Hi"}], "max_completion_tokens": 8},
        {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]},
        {"model": "m", "prompt": "x", "max_tokens": -1, "min_p": 2.0, "repeat_penalty": 0},
    ]
    for i, r in enumerate(reqs):
        put("server_request", f"r{i}", json.dumps(r))


def main():
    gguf_seeds()
    safetensors_seeds()
    text_seeds()
    chat_seeds()
    request_seeds()
    for t in sorted(os.listdir(OUT)):
        files = os.listdir(os.path.join(OUT, t))
        size = sum(os.path.getsize(os.path.join(OUT, t, f)) for f in files)
        print(f"{t}: {len(files)} seeds, {size} bytes")


if __name__ == "__main__":
    sys.exit(main())
