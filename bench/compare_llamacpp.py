#!/usr/bin/env python3
"""Side-by-side prompt-processing and generation speed: outcore vs llama.cpp (llama-cpp-python).

Runs are alternated (outcore, llama.cpp, outcore, ...) so both see the same machine state, each
tool does one warm-up first, and the same token ids, lengths and thread count are used. Prints
per-tool mean +- stddev and the outcore/llama.cpp ratio. Called by bench/compare-llamacpp.sh.
"""
import argparse, json, statistics, subprocess, sys, time

LLAMA_CHILD = r'''
import sys, time, json, llama_cpp
m, p, n, t, reps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
llm = llama_cpp.Llama(model_path=m, n_ctx=max(p + n + 16, 512), n_threads=t, n_threads_batch=t,
                      n_batch=max(p, 32), n_ubatch=max(p, 32), verbose=False)
toks = [1 + (i * 7) % 1000 for i in range(p)]
def clear():
    llm.reset()
    llm._ctx.kv_cache_clear()
def pp():
    clear(); t0 = time.perf_counter(); llm.eval(toks); return p / (time.perf_counter() - t0)
def tg():
    clear(); t0 = time.perf_counter()
    for i in range(n):
        llm.eval([1 + (i * 13) % 1000])
    return n / (time.perf_counter() - t0)
# warm-up once, then one measured run per line of stdin ("pp" or "tg"), answered on stdout
if p: pp()
if n: tg()
print("ready", flush=True)
for line in sys.stdin:
    what = line.strip()
    print(json.dumps({"what": what, "tps": pp() if what == "pp" else tg()}), flush=True)
'''


def outcore_run(binary, model, what, p, n, t, numerics="llamacpp"):
    args = [binary, "bench", "-m", model, "-t", str(t), "-r", "1", "--json", "--numerics", numerics]
    args += ["-p", str(p), "-n", "0"] if what == "pp" else ["-p", "0", "-n", str(n)]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    j = json.loads(out)
    return j["pp_tokens_per_s" if what == "pp" else "tg_tokens_per_s"]["mean"]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("-p", type=int, default=512)
    ap.add_argument("-n", type=int, default=128)
    ap.add_argument("-t", type=int, default=2)
    ap.add_argument("-r", type=int, default=5)
    ap.add_argument("--numerics", default="llamacpp", help="outcore's --numerics (llamacpp or fast)")
    ap.add_argument("--outcore", default="target/release/outcore")
    ap.add_argument("--python", default=sys.executable, help="interpreter with llama_cpp")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()

    child = subprocess.Popen([a.python, "-c", LLAMA_CHILD, a.model, str(a.p), str(a.n), str(a.t), str(a.r)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready", "llama.cpp child failed to start"
    tests = [w for w, k in (("pp", a.p), ("tg", a.n)) if k]
    # outcore warm-up (page cache, CPU clocks)
    for w in tests:
        outcore_run(a.outcore, a.model, w, a.p, a.n, a.t, a.numerics)
    res = {(tool, w): [] for tool in ("outcore", "llama.cpp") for w in tests}
    for r in range(a.r):
        for w in tests:
            order = ("outcore", "llama.cpp") if r % 2 == 0 else ("llama.cpp", "outcore")
            for tool in order:
                if tool == "outcore":
                    v = outcore_run(a.outcore, a.model, w, a.p, a.n, a.t, a.numerics)
                else:
                    child.stdin.write(w + "\n"); child.stdin.flush()
                    v = json.loads(child.stdout.readline())["tps"]
                res[(tool, w)].append(v)
    child.stdin.close(); child.wait()

    rows = []
    for w in tests:
        label = f"pp{a.p}" if w == "pp" else f"tg{a.n}"
        o, l = res[("outcore", w)], res[("llama.cpp", w)]
        mo, ml = statistics.mean(o), statistics.mean(l)
        rows.append({"test": label, "outcore": mo, "outcore_sd": statistics.pstdev(o), "llama_cpp": ml,
                     "llama_cpp_sd": statistics.pstdev(l), "ratio": mo / ml, "outcore_runs": o, "llama_cpp_runs": l})
    if a.json:
        print(json.dumps({"model": a.model, "threads": a.t, "reps": a.r, "rows": rows}, indent=1))
        return
    print(f"model {a.model}, {a.t} threads, {a.r} alternating runs each (after one warm-up)")
    print(f"| test | outcore t/s | llama.cpp t/s | ratio |")
    print(f"| --- | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['test']} | {r['outcore']:.2f} ± {r['outcore_sd']:.2f} | {r['llama_cpp']:.2f} ± {r['llama_cpp_sd']:.2f} | {r['ratio']:.2f}x |")


if __name__ == "__main__":
    main()
