#!/usr/bin/env python3
"""Generates tests/data/tokenizer_reference.json: token ids and detokenized text from llama.cpp
itself, for the cases the SmolLM2 fixtures do not cover.

1. SPM ("llama" vocabulary): a small SentencePiece-style vocabulary trained here with a toy BPE
   (byte tokens <0x00>..<0xFF>, scores = -merge rank, a control and a user-defined token). It is
   stored in the output so the Rust test rebuilds the same vocabulary.
2. BPE pre-tokenizers: the demo model's vocabulary and merges with `tokenizer.ggml.pre` set to
   other names (llama-bpe, qwen2, gpt-2, default, deepseek-llm, ...), so each regex list and the
   llama.cpp scanners are checked against llama.cpp's own splitting. The Rust test takes the
   vocabulary from the demo GGUF and swaps the pre name, so only the ids are stored.

Needs: gguf (gguf-py), numpy, llama-cpp-python (any recent version; run with 0.3.36).
    python3 tests/gen_tokenizer_reference.py [DEMO.gguf] [OUT.json]
"""
import ctypes
import json
import os
import random
import sys
import tempfile
from collections import Counter

import gguf
import llama_cpp

DEMO = sys.argv[1] if len(sys.argv) > 1 else os.environ.get(
    "OUTCORE_DEMO_MODEL", os.path.expanduser("~/.cache/outcore/SmolLM2-135M-Instruct.Q4_1.gguf"))
OUT = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(__file__), "data", "tokenizer_reference.json")

BPE_PRES = ["llama-bpe", "qwen2", "gpt-2", "default", "deepseek-llm", "deepseek-coder", "falcon", "starcoder",
            "chatglm-bpe", "poro-chat", "viking", "tekken", "gpt-4o", "deepseek-v3", "bailingmoe", "seed-coder",
            "stablelm2", "chameleon"]

CORPUS = """The quick brown fox jumps over the lazy dog. It's a truth universally acknowledged, that a single
man in possession of a good fortune, must be in want of a wife. However little known the feelings or views of
such a man may be on his first entering a neighbourhood, this truth is so well fixed in the minds of the
surrounding families, that he is considered the rightful property of some one or other of their daughters.
Hello world! Hello there, hello again. The weather is nice today; tomorrow it will rain. Numbers: 1 2 3 10 100.
"""

PIECES = ["Hello", "hello", "world", "the", "The", " ", "  ", "   ", "\t", "\n", "\r\n", "\n\n", "'s", "'t", "'re",
          "'ve", "'m", "'ll", "'d", "'S", "'LL", "don't", "I'M", "123", "4567", "0", "٣٤٥", "१२३", "½", "²", "Ⅻ",
          "日本語", "中文", "한국어", "テキスト", "😀", "👍🏽", "❤️", "e\u0301", "café", "Straße", "İstanbul", "!!!",
          "...", "?", ",", ";", "<s>", "</s>", "<unk>", "<|im_start|>", "<|im_end|>", "<tool>", "\u00a0", "\u3000",
          "#", "$", "€", "—", "“", "”", "(", ")", "{", "}", "_", "-", "+", "=", "\\", "/", "`", "~", "^", "%",
          "x", "Y", "abc", "ABC", "aBc", " a", " 1", " !", " \n", "IMGIMGABZ", "<sentinel:12>", "http://a.b/c?d=1"]


def random_texts(seed, n):
    rng = random.Random(seed)
    out = ["", " ", "  ", "\n", "hello", " hello", "hello ", "Hello world", "  two  spaces  ", "a\r\nb",
           "<s>hello</s>", "<s> hello", "x<|im_start|>y<tool>z", "1234567 89", "It's 12:30, isn't it?"]
    while len(out) < n:
        out.append("".join(rng.choice(PIECES) for _ in range(rng.randint(1, 10))))
    return out


def toy_spm_vocab():
    """A SentencePiece-like BPE vocabulary: pieces with '▁' for spaces, scored by merge order."""
    words = Counter()
    for w in CORPUS.split():
        words[tuple("▁" + w)] += 1
    chars = sorted({c for w in words for c in w})
    merges = []
    for _ in range(250):
        pairs = Counter()
        for w, f in words.items():
            for a, b in zip(w, w[1:]):
                pairs[(a, b)] += f
        if not pairs:
            break
        (a, b), f = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))
        if f < 2:
            break
        merges.append(a + b)
        new = Counter()
        for w, fr in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            new[tuple(out)] += fr
        words = new
    tokens = [("<unk>", 0.0, 2), ("<s>", 0.0, 3), ("</s>", 0.0, 3)]
    tokens += [("<0x%02X>" % b, 0.0, 6) for b in range(256)]
    seen = set()
    for i, m in enumerate(merges):
        if m not in seen:
            seen.add(m)
            tokens.append((m, -float(i), 1))
    for i, c in enumerate(chars):
        if c not in seen:
            seen.add(c)
            tokens.append((c, -1000.0 - i, 1))
    tokens.append(("<|im_start|>", 0.0, 3))
    tokens.append(("<tool>", 0.0, 4))
    return tokens


def write_gguf(path, demo, tokenizer_kv):
    """A vocab-only GGUF: the demo model's llama hyperparameters, no tensors."""
    w = gguf.GGUFWriter(path, "llama")
    for key in ["llama.block_count", "llama.context_length", "llama.embedding_length", "llama.feed_forward_length",
                "llama.attention.head_count", "llama.attention.head_count_kv", "llama.rope.freq_base",
                "llama.attention.layer_norm_rms_epsilon", "llama.vocab_size", "llama.rope.dimension_count"]:
        f = demo.fields[key]
        v = f.parts[f.data[0]].tolist()[0]
        if isinstance(v, float):
            w.add_float32(key, v)
        else:
            w.add_uint32(key, v)
    for kind, key, value in tokenizer_kv:
        if kind == "string":
            w.add_string(key, value)
        elif kind == "bool":
            w.add_bool(key, value)
        elif kind == "uint32":
            w.add_uint32(key, value)
        elif kind == "array":
            w.add_array(key, value)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


class Vocab:
    def __init__(self, path):
        p = llama_cpp.llama_model_default_params()
        p.vocab_only = True
        self.model = llama_cpp.llama_model_load_from_file(path.encode(), p)
        assert self.model, path
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)

    def tokenize(self, text, add_special, parse_special):
        b = text.encode()
        buf = (llama_cpp.llama_token * (len(b) + 8))()
        n = llama_cpp.llama_tokenize(self.vocab, b, len(b), buf, len(buf), add_special, parse_special)
        assert n >= 0, (text, n)
        return list(buf[:n])

    def detokenize(self, ids, special):
        arr = (llama_cpp.llama_token * max(1, len(ids)))(*ids)
        cap = 64 + 16 * len(ids)
        out = ctypes.create_string_buffer(cap)
        n = llama_cpp.llama_detokenize(self.vocab, arr, len(ids), out, cap, False, special)
        assert n >= 0
        return out.raw[:n]

    def close(self):
        llama_cpp.llama_model_free(self.model)


def main():
    llama_cpp.llama_backend_init()
    demo = gguf.GGUFReader(DEMO)
    result = {"generator": "tests/gen_tokenizer_reference.py", "llama_cpp_python": llama_cpp.__version__}
    with tempfile.TemporaryDirectory() as tmp:
        # 1. SPM
        toks = toy_spm_vocab()
        path = os.path.join(tmp, "spm.gguf")
        write_gguf(path, demo, [
            ("string", "tokenizer.ggml.model", "llama"),
            ("array", "tokenizer.ggml.tokens", [t for t, _, _ in toks]),
            ("array", "tokenizer.ggml.scores", [s for _, s, _ in toks]),
            ("array", "tokenizer.ggml.token_type", [k for _, _, k in toks]),
            ("uint32", "tokenizer.ggml.bos_token_id", 1),
            ("uint32", "tokenizer.ggml.eos_token_id", 2),
            ("uint32", "tokenizer.ggml.unknown_token_id", 0),
        ])
        v = Vocab(path)
        rows = []
        for text in random_texts(7, 120):
            for add_special, parse_special in [(True, True), (False, False)]:
                ids = v.tokenize(text, add_special, parse_special)
                rows.append({"text": text, "add_special": add_special, "parse_special": parse_special, "ids": ids,
                             "detok_hex": v.detokenize(ids, False).hex(),
                             "detok_special_hex": v.detokenize(ids, True).hex()})
        v.close()
        result["spm"] = {"tokens": [t for t, _, _ in toks], "scores": [s for _, s, _ in toks],
                         "token_types": [k for _, _, k in toks], "rows": rows}

        # 2. BPE pre-tokenizers over the demo vocabulary
        f = demo.fields
        tokens = [bytes(f["tokenizer.ggml.tokens"].parts[i]).decode() for i in f["tokenizer.ggml.tokens"].data]
        types = [int(f["tokenizer.ggml.token_type"].parts[i][0]) for i in f["tokenizer.ggml.token_type"].data]
        merges = [bytes(f["tokenizer.ggml.merges"].parts[i]).decode() for i in f["tokenizer.ggml.merges"].data]
        result["bpe"] = {}
        texts = random_texts(11, 60)
        for pre in BPE_PRES:
            path = os.path.join(tmp, f"bpe-{pre}.gguf")
            write_gguf(path, demo, [
                ("string", "tokenizer.ggml.model", "gpt2"),
                ("string", "tokenizer.ggml.pre", pre),
                ("array", "tokenizer.ggml.tokens", tokens),
                ("array", "tokenizer.ggml.token_type", types),
                ("array", "tokenizer.ggml.merges", merges),
                ("uint32", "tokenizer.ggml.bos_token_id", 1),
                ("uint32", "tokenizer.ggml.eos_token_id", 2),
                ("uint32", "tokenizer.ggml.unknown_token_id", 0),
                ("bool", "tokenizer.ggml.add_bos_token", False),
            ])
            v = Vocab(path)
            rows = []
            for text in texts:
                ids = v.tokenize(text, False, True)
                rows.append({"text": text, "ids": ids, "detok_hex": v.detokenize(ids, False).hex()})
            v.close()
            result["bpe"][pre] = rows
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as fh:
        json.dump(result, fh, ensure_ascii=False, separators=(",", ":"))
        fh.write("\n")
    print(f"wrote {OUT}: {len(result['spm']['rows'])} SPM rows, {len(BPE_PRES)} pre-tokenizers")


if __name__ == "__main__":
    main()
