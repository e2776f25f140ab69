#!/usr/bin/env python3
"""Reference data for outcore-kernels' quantization tests, made with gguf-py (`gguf.quants`).

Writes into tests/data/quant/ (committed; rerun only to regenerate):

  blocks_<TYPE>.bin / blocks_<TYPE>.f32
      Random raw blocks of every ggml type outcore handles (random quant bytes, scales drawn
      from a sane range) and their dequantization by `gguf.quants.dequantize`.
      gguf-py 0.19 has no Q8_1 or Q8_K class; for those two the expected values are computed
      here with numpy as ggml's C code does (`d * q`, f32 multiply).
  quant_input.f32, quant_<TYPE>.bin
      Rows of f32 (normal, zeros, huge, tiny, negative-only, positive-only, constant, ...)
      and their quantization by `gguf.quants.quantize` for Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
      F16 and BF16 (gguf-py 0.19 has no k-quant quantizers).
  kquant_input.f32
      Rows of 512 f32 for the k-quant quantizers. gguf-py has none, so the expected bytes
      (kquant_<TYPE>.bin) come from ggml's own C `quantize_row_*_ref`, built from a ggml
      checkout by tests/gen_kquant_ref.c (see the comment at its top).
  demo_model_dequant.json  (only with --demo-model PATH)
      For every tensor of the demo model: name, type, ggml shape, absolute data offset, byte
      length and sha256 of `gguf.quants.dequantize(...)` as little-endian f32 bytes.

Usage: python3 gen_quant_fixtures.py [--demo-model ~/.cache/outcore/SmolLM2-135M-Instruct.Q4_1.gguf]
"""
import argparse
import hashlib
import json
import os

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize, quantize

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "data", "quant")
SEED = 20240611

# (type, n_blocks, block_bytes, block_elems)
TYPES = [
    (T.F32, 256, 4, 1),
    (T.F16, 256, 2, 1),
    (T.BF16, 256, 2, 1),
    (T.Q4_0, 48, 18, 32),
    (T.Q4_1, 48, 20, 32),
    (T.Q5_0, 48, 22, 32),
    (T.Q5_1, 48, 24, 32),
    (T.Q8_0, 48, 34, 32),
    (T.Q8_1, 48, 36, 32),
    (T.Q2_K, 6, 84, 256),
    (T.Q3_K, 6, 110, 256),
    (T.Q4_K, 6, 144, 256),
    (T.Q5_K, 6, 176, 256),
    (T.Q6_K, 6, 210, 256),
    (T.Q8_K, 6, 292, 256),
]

# byte offsets of the f16 scale fields in each block
F16_FIELDS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0], T.Q8_1: [0, 2],
    T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
}


def sane_f16(rng, n):
    mag = np.exp(rng.uniform(np.log(1e-4), np.log(2.0), n)).astype(np.float32)
    sign = np.where(rng.random(n) < 0.5, -1.0, 1.0).astype(np.float32)
    return (mag * sign).astype(np.float16)


def random_blocks(rng, qtype, nb, bb):
    if qtype == T.F32:
        x = rng.standard_normal(nb).astype(np.float32)
        x[:6] = [0.0, -0.0, np.inf, -np.inf, 1e-40, 3.4e38]
        return x.view(np.uint8).copy()
    if qtype in (T.F16, T.BF16):
        raw = rng.integers(0, 1 << 16, nb, dtype=np.uint32).astype(np.uint16)
        # a few specials: zeros, infinities, a NaN, subnormals
        specials = [0x0000, 0x8000, 0x7C00, 0xFC00, 0x0001, 0x03FF] if qtype == T.F16 else \
                   [0x0000, 0x8000, 0x7F80, 0xFF80, 0x0001, 0x007F]
        raw[: len(specials)] = specials
        # keep NaNs out of the rest so comparisons can be exact (NaN payloads are checked apart)
        if qtype == T.F16:
            raw = np.where((raw & 0x7C00) == 0x7C00, raw & 0x83FF, raw).astype(np.uint16)
            raw[2], raw[3] = 0x7C00, 0xFC00
        else:
            raw = np.where((raw & 0x7F80) == 0x7F80, raw & 0x807F, raw).astype(np.uint16)
            raw[2], raw[3] = 0x7F80, 0xFF80
        return raw.view(np.uint8).copy()
    blocks = rng.integers(0, 256, (nb, bb), dtype=np.uint32).astype(np.uint8)
    if qtype == T.Q8_K:
        d = np.exp(rng.uniform(np.log(1e-4), np.log(1.0), nb)).astype(np.float32)
        blocks[:, 0:4] = d.reshape(nb, 1).view(np.uint8)
        qs = blocks[:, 4:260].view(np.int8)
        bs = qs.reshape(nb, 16, 16).astype(np.int16).sum(axis=-1).astype(np.int16)
        blocks[:, 260:292] = bs.view(np.uint8)
        return blocks.reshape(-1).copy()
    for off in F16_FIELDS[qtype]:
        blocks[:, off:off + 2] = sane_f16(rng, nb).reshape(nb, 1).view(np.uint8)
    if qtype in (T.Q2_K, T.Q4_K, T.Q5_K):
        # d and dmin are positive in real files
        for off in F16_FIELDS[qtype]:
            f = blocks[:, off:off + 2].copy().view(np.float16)
            blocks[:, off:off + 2] = np.abs(f).view(np.uint8)
    if qtype == T.Q8_1:
        d = blocks[:, 0:2].copy().view(np.float16).astype(np.float32).reshape(nb)
        s = blocks[:, 4:36].view(np.int8).astype(np.int32).sum(axis=-1)
        blocks[:, 2:4] = (d * s.astype(np.float32)).astype(np.float16).reshape(nb, 1).view(np.uint8)
    return blocks.reshape(-1).copy()


def reference_dequant(qtype, raw, nb, bb):
    if qtype == T.Q8_1:
        b = raw.reshape(nb, bb)
        d = b[:, 0:2].copy().view(np.float16).astype(np.float32)
        q = b[:, 4:36].view(np.int8).astype(np.float32)
        return (q * d).reshape(-1)
    if qtype == T.Q8_K:
        b = raw.reshape(nb, bb)
        d = b[:, 0:4].copy().view(np.float32)
        q = b[:, 4:260].view(np.int8).astype(np.float32)
        return (d * q).reshape(-1)
    return dequantize(raw.reshape(1, -1), qtype).reshape(-1).astype(np.float32)


def quant_rows(rng):
    rows = []
    n = 32 * 8
    rows.append(rng.standard_normal(n))
    rows.append(rng.standard_normal(n) * 0.02)
    rows.append(np.zeros(n))
    z = rng.standard_normal(n)
    z[::3] = 0.0
    z[64:96] = 0.0
    rows.append(z)
    rows.append(rng.standard_normal(n) * 1e30)
    rows.append(rng.standard_normal(n) * 1e-6)
    rows.append(-np.abs(rng.standard_normal(n)) - 0.25)
    rows.append(np.abs(rng.standard_normal(n)) + 3.0)
    rows.append(np.full(n, 0.7))
    rows.append(rng.uniform(-1, 1, n))
    rows.append(np.round(rng.uniform(-8, 8, n)) / 8.0)  # many exact ties after scaling
    rows.append(rng.standard_t(2, n))  # heavy tails
    return np.stack(rows).astype(np.float32)


def kquant_rows(rng):
    n = 512
    rows = [
        rng.standard_normal(n),
        rng.standard_normal(n) * 0.02,
        rng.standard_normal(n) * 1e-3 + 0.01,
        np.zeros(n),
        rng.standard_t(3, n),
        -np.abs(rng.standard_normal(n)) - 0.1,
        np.abs(rng.standard_normal(n)) + 0.5,
        np.full(n, -0.3),
        rng.uniform(-1, 1, n),
        rng.standard_normal(n) * 50.0,
        np.round(rng.standard_normal(n) * 4) / 4,
        rng.laplace(0, 0.05, n),
    ]
    z = rng.standard_normal(n)
    z[::2] = 0.0
    z[256:300] = 0.0
    rows.append(z)
    for _ in range(19):  # plain "weight-like" rows for the RMSE comparison
        rows.append(rng.standard_normal(n) * rng.uniform(0.01, 0.2))
    return np.stack(rows).astype(np.float32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--demo-model")
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(SEED)

    for qtype, nb, bb, be in TYPES:
        raw = random_blocks(rng, qtype, nb, bb)
        assert raw.size == nb * bb
        ref = reference_dequant(qtype, raw, nb, bb)
        assert ref.size == nb * be and ref.dtype == np.float32
        raw.tofile(os.path.join(OUT, f"blocks_{qtype.name}.bin"))
        ref.astype("<f4").tofile(os.path.join(OUT, f"blocks_{qtype.name}.f32"))

    x = quant_rows(rng)
    x.astype("<f4").tofile(os.path.join(OUT, "quant_input.f32"))
    for qtype in (T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.F16, T.BF16):
        with np.errstate(over="ignore", invalid="ignore"):
            q = quantize(x, qtype)
        np.ascontiguousarray(q).view(np.uint8).tofile(os.path.join(OUT, f"quant_{qtype.name}.bin"))

    kquant_rows(rng).astype("<f4").tofile(os.path.join(OUT, "kquant_input.f32"))

    if args.demo_model:
        r = gguf.GGUFReader(args.demo_model)
        tensors = []
        for t in r.tensors:
            deq = dequantize(t.data, t.tensor_type).astype("<f4", copy=False)
            tensors.append({
                "name": t.name,
                "type": t.tensor_type.name,
                "shape": [int(v) for v in t.shape],
                "offset": int(t.data_offset),
                "n_bytes": int(t.n_bytes),
                "sha256": hashlib.sha256(np.ascontiguousarray(deq).tobytes()).hexdigest(),
            })
        with open(os.path.join(OUT, "demo_model_dequant.json"), "w") as f:
            head = {"model": os.path.basename(args.demo_model), "gguf_py": gguf.__version__ if hasattr(gguf, "__version__") else "0.19.0"}
            f.write(json.dumps(head)[:-1] + ', "tensors": [\n')
            f.write(",\n".join(json.dumps(t) for t in tensors))
            f.write("\n]}\n")


if __name__ == "__main__":
    main()
