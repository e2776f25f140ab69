#!/usr/bin/env python3
"""Writes tests/data/demo_reference.json: what gguf-py (GGUFReader) sees in the demo model.

Usage: python3 gen_demo_reference.py [MODEL.gguf] > data/demo_reference.json
Long arrays are summarised by element type, length and an FNV-1a 64 hash of their GGUF encoding
(strings: u64 little-endian length + bytes; numbers: little-endian bytes), which the Rust test
recomputes from our parse. Tensors: name, type id, shape (ggml order), byte size, absolute offset,
and FNV-1a 64 of the first and last 256 bytes of their data.
"""
import json
import os
import struct
import sys

import numpy as np
from gguf import GGUFReader, GGUFValueType

FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
MASK = (1 << 64) - 1


def fnv1a(data: bytes, h: int = FNV_OFFSET) -> int:
    for b in data:
        h = ((h ^ b) * FNV_PRIME) & MASK
    return h


TYPE_NAMES = {t: t.name.lower() for t in GGUFValueType}
NAME_FIX = {"uint8": "u8", "int8": "i8", "uint16": "u16", "int16": "i16", "uint32": "u32", "int32": "i32",
            "float32": "f32", "bool": "bool", "string": "string", "array": "array", "uint64": "u64",
            "int64": "i64", "float64": "f64"}


def tname(t):
    return NAME_FIX[TYPE_NAMES[t]]


def main():
    default = os.path.expanduser("~/.cache/outcore/SmolLM2-135M-Instruct.Q4_1.gguf")
    path = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("OUTCORE_DEMO_MODEL", default)
    r = GGUFReader(path)
    meta = []
    for key, f in r.fields.items():
        if key.startswith("GGUF."):
            continue
        t = f.types[0]
        entry = {"key": key, "type": tname(t)}
        if t == GGUFValueType.ARRAY:
            et = f.types[1]
            entry["elem_type"] = tname(et)
            entry["len"] = len(f.data)
            if et == GGUFValueType.STRING:
                items = [bytes(f.parts[i]) for i in f.data]
                enc = b"".join(struct.pack("<Q", len(s)) + s for s in items)
                if len(items) <= 16:
                    entry["value"] = [s.decode("utf-8") for s in items]
            else:
                arr = np.concatenate([f.parts[i] for i in f.data]) if f.data else np.array([])
                enc = arr.tobytes()
                if len(f.data) <= 16:
                    entry["value"] = arr.tolist()
            entry["fnv"] = "%016x" % fnv1a(enc)
        elif t == GGUFValueType.STRING:
            entry["value"] = bytes(f.parts[f.data[0]]).decode("utf-8")
        else:
            v = f.parts[f.data[0]][0]
            entry["value"] = bool(v) if t == GGUFValueType.BOOL else v.item()
        meta.append(entry)
    tensors = []
    for t in r.tensors:
        raw = np.asarray(r.data[t.data_offset : t.data_offset + t.n_bytes]).tobytes()
        tensors.append({
            "name": t.name,
            "type": int(t.tensor_type),
            "shape": [int(x) for x in t.shape],
            "n_bytes": int(t.n_bytes),
            "offset": int(t.data_offset),
            "fnv_head": "%016x" % fnv1a(raw[:256]),
            "fnv_tail": "%016x" % fnv1a(raw[-256:]),
        })
    out = {
        "file_size": os.path.getsize(path),
        "alignment": int(r.alignment),
        "data_offset": int(r.data_offset),
        "metadata": meta,
        "tensors": tensors,
    }
    json.dump(out, sys.stdout, indent=1, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
