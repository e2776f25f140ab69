#!/usr/bin/env python3
"""Load test for `outcore serve` on loopback (standard library only).

Starts the server (or uses --url), then for each concurrency level sends --requests completion
requests from that many threads and prints one table row per level: p50/p99 latency, aggregate
generated tokens/s (and its ratio to the single-stream figure), errors, the mean number of
tokens sampled per batched forward step (from /metrics; prompt chunks ride in those steps), and
the server's RSS at the start of the level, once the level is warm (its first
max(2 x concurrency, 10%) requests done: every slot it uses has allocated its KV cache) and at
its end. Then the targets of issue #7: 4 streams >= 2x
the single-stream tokens/s, zero errors, memory flat (at every level RSS at the end within 5% +
8 MiB of RSS once warm; growth between levels is the KV cache of slots used for the first time,
bounded by the planner's figure the server prints at start). Every loop is bounded by
the request count and a per-request timeout, and only loopback addresses are contacted.

    scripts/server-loadtest.py                      # demo model, 400 requests at 1, 4 and 8
    scripts/server-loadtest.py --requests 40        # a quick check
    scripts/server-loadtest.py --bin target/release/outcore --threads 2
    scripts/server-loadtest.py --url http://127.0.0.1:8080 --pid 1234 --model smol
    scripts/server-loadtest.py --unique-prompts     # no prompt repeats (no kept-prompt reuse)
    scripts/server-loadtest.py --levels 1,4 --rounds 5   # 1 and 4 streams in turn, five times
"""
import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse

DEFAULT_MODEL = os.environ.get("OUTCORE_DEMO_MODEL", os.path.expanduser("~/.cache/outcore/SmolLM2-135M-Instruct.Q4_1.gguf"))
PROMPTS = [
    "The capital of France is",
    "Once upon a time, there was a",
    "The three primary colors are",
    "Water boils at a temperature of",
    "The largest planet in the solar system is",
]


def rss_bytes(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def mib(b):
    return "n/a" if b is None else f"{b / 2**20:.1f} MiB"


def start_server(args):
    binary = args.bin
    if binary is None:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        subprocess.run(["cargo", "build", "--quiet", "--release", "-p", "outcore", "--bin", "outcore"], check=True, cwd=root)
        binary = os.path.join(root, os.environ.get("CARGO_TARGET_DIR", "target"), "release", "outcore")
    cmd = [binary, "serve", "-m", args.model_path, "--alias", args.model, "--host", "127.0.0.1", "--port", "0",
           "--parallel", str(args.parallel), "--max-queue", str(max(64, 2 * max(args.levels)))]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    print("server:", " ".join(cmd), flush=True)
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        line = proc.stderr.readline()
        if not line:
            if proc.poll() is not None:
                sys.exit(f"server exited with {proc.returncode}")
            continue
        sys.stderr.write(line)
        planned = re.search(r"the planner puts it at ([0-9.]+ MiB)", line)
        if planned:
            args.planned = planned.group(1)
        m = re.search(r"http://([0-9.]+):(\d+)", line)
        if m:
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
            return proc, f"http://{m.group(1)}:{m.group(2)}"
    proc.kill()
    sys.exit("server did not report its address within 60 s")


class Client:
    def __init__(self, url, timeout):
        u = urllib.parse.urlparse(url)
        if u.hostname not in ("127.0.0.1", "localhost", "::1"):
            sys.exit("the load test only targets loopback addresses")
        self.host, self.port, self.timeout = u.hostname, u.port, timeout

    def headers(self):
        h = {"Content-Type": "application/json"}
        if getattr(self, "key", None):
            h["Authorization"] = f"Bearer {self.key}"
        return h

    def post(self, path, body):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.request("POST", path, json.dumps(body), self.headers())
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def get(self, path):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.request("GET", path, headers=self.headers())
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def metrics(self, model):
        """Decode counters of `model` from /metrics: steps, tokens."""
        status, data = self.get("/metrics")
        out = {"steps": None, "tokens": None}
        if status != 200:
            return out
        for line in data.decode().splitlines():
            for key, name in (("steps", "outcore_decode_steps_total"), ("tokens", "outcore_decode_tokens_total")):
                prefix = f'{name}{{model="{model}"}} '
                if line.startswith(prefix):
                    out[key] = float(line[len(prefix):])
        return out


def run_level(client, model, concurrency, n_requests, max_tokens, pid, unique=False):
    lock = threading.Lock()
    next_i = [0]
    latencies, errors, tokens = [], {}, [0]
    warm_n = min(n_requests, max(2 * concurrency, n_requests // 10))
    rss_warm = [None]

    def worker():
        while True:
            with lock:
                if next_i[0] >= n_requests:
                    return
                i = next_i[0]
                next_i[0] += 1
            prompt = PROMPTS[i % len(PROMPTS)]
            if unique:
                # A prefix no other request has: nothing for a slot's kept prompt to match.
                prompt = f"Request {i}. {prompt}"
            body = {"model": model, "prompt": prompt, "max_tokens": max_tokens,
                    "temperature": 0.8, "seed": i}
            t0 = time.perf_counter()
            try:
                status, data = client.post("/v1/completions", body)
            except Exception as e:  # noqa: BLE001 - counted as an error
                status, data = type(e).__name__, b""
            dt = time.perf_counter() - t0
            with lock:
                if status == 200:
                    latencies.append(dt)
                    tokens[0] += json.loads(data)["usage"]["completion_tokens"]
                else:
                    errors[str(status)] = errors.get(str(status), 0) + 1
                if len(latencies) + sum(errors.values()) == warm_n and pid:
                    rss_warm[0] = rss_bytes(pid)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    latencies.sort()

    def pct(p):
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] if latencies else float("nan")

    return {
        "concurrency": concurrency,
        "requests": n_requests,
        "ok": len(latencies),
        "errors": errors,
        "wall_s": round(wall, 3),
        "p50_ms": round(pct(0.50) * 1000, 1),
        "p99_ms": round(pct(0.99) * 1000, 1),
        "mean_ms": round(statistics.mean(latencies) * 1000, 1) if latencies else None,
        "completion_tokens": tokens[0],
        "tokens_per_s": round(tokens[0] / wall, 2) if wall > 0 else None,
        "requests_per_s": round(len(latencies) / wall, 2) if wall > 0 else None,
        "rss_warm": rss_warm[0],
        "latencies": latencies,
    }


def merge(runs):
    """One row per concurrency from its runs in every round: totals over the summed wall time,
    percentiles over all latencies; RSS at the start and once warm of the first run, at the end of
    the last; and the largest growth within any one run (for the memory check)."""
    lat = sorted(x for r in runs for x in r["latencies"])
    wall = sum(r["wall_s"] for r in runs)
    tokens = sum(r["completion_tokens"] for r in runs)
    errors = {}
    for r in runs:
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + v

    def pct(p):
        return lat[min(len(lat) - 1, int(p * len(lat)))] if lat else float("nan")

    steps = [r["decode_steps"] for r in runs]
    batch_tokens = [r["mean_batch"] * r["decode_steps"] for r in runs if r["decode_steps"]]
    grew = [r["rss_end"] - r["rss_warm"] for r in runs if r["rss_warm"] and r["rss_end"]]
    flat = all(r["rss_end"] <= r["rss_warm"] * 1.05 + 8 * 2**20 for r in runs if r["rss_warm"] and r["rss_end"])
    return {
        "concurrency": runs[0]["concurrency"],
        "requests": sum(r["requests"] for r in runs),
        "ok": len(lat),
        "errors": errors,
        "wall_s": round(wall, 3),
        "p50_ms": round(pct(0.50) * 1000, 1),
        "p99_ms": round(pct(0.99) * 1000, 1),
        "mean_ms": round(statistics.mean(lat) * 1000, 1) if lat else None,
        "completion_tokens": tokens,
        "tokens_per_s": round(tokens / wall, 2) if wall > 0 else None,
        "requests_per_s": round(len(lat) / wall, 2) if wall > 0 else None,
        "mean_batch": round(sum(batch_tokens) / sum(steps), 2) if None not in steps and sum(steps) else None,
        "rss_start": runs[0]["rss_start"],
        "rss_warm": runs[0]["rss_warm"],
        "rss_end": runs[-1]["rss_end"],
        "max_growth": max(grew) if grew else None,
        "flat": flat,
        "round_tokens_per_s": [r["tokens_per_s"] for r in runs],
    }


def print_report(args, results, rss_before, rss_after):
    """The table and the issue's targets; returns whether there were no errors."""
    base = next((r["tokens_per_s"] for r in results if r["concurrency"] == 1), None)
    head = ["conc", "requests", "ok", "errors", "p50 ms", "p99 ms", "gen tok/s", "x 1-stream",
            "req/s", "mean batch", "RSS start", "RSS warm", "RSS end"]
    rows = []
    for r in results:
        errs = sum(r["errors"].values())
        ratio = f"{r['tokens_per_s'] / base:.2f}" if base and r["tokens_per_s"] else "-"
        rows.append([str(r["concurrency"]), str(r["requests"]), str(r["ok"]),
                     str(errs) if not errs else f"{errs} {r['errors']}", f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}",
                     f"{r['tokens_per_s']:.2f}", ratio, f"{r['requests_per_s']:.2f}",
                     "-" if r["mean_batch"] is None else f"{r['mean_batch']:.2f}",
                     mib(r["rss_start"]), mib(r["rss_warm"]), mib(r["rss_end"])])
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    line = lambda cells: "| " + " | ".join(c.rjust(w) for c, w in zip(cells, widths)) + " |"
    print()
    rounds = f" in {args.rounds} alternating rounds" if args.rounds > 1 else ""
    print(f"outcore serve load test: {args.requests} requests per level{rounds}, max_tokens {args.max_tokens}, "
          f"model {args.model}, slots {args.parallel}")
    print(line(head))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print(line(row))
    print()
    failed = sum(sum(r["errors"].values()) for r in results)
    four = next((r["tokens_per_s"] for r in results if r["concurrency"] == 4), None)
    if base and four:
        verdict = "met" if four >= 2 * base else "NOT met"
        print(f"4 streams vs 1: {four / base:.2f}x aggregate generated tok/s (target >= 2x): {verdict}")
    print(f"errors: {failed} (target 0): {'met' if failed == 0 else 'NOT met'}")
    levels = [r for r in results if r["max_growth"] is not None]
    if levels:
        grew = [r for r in levels if not r["flat"]]
        worst = max(r["max_growth"] for r in levels)
        print(f"memory flat within every level (end <= warm + 5% + 8 MiB; largest change {worst / 2**20:+.1f} MiB): "
              f"{'met' if not grew else 'NOT met at concurrency ' + ','.join(str(r['concurrency']) for r in grew)}")
    if args.rounds > 1:
        for r in results:
            print(f"concurrency {r['concurrency']}: tok/s per round {r['round_tokens_per_s']}")
    if rss_before and rss_after:
        planned = f"; planner's figure for the model {args.planned}" if getattr(args, "planned", None) else ""
        print(f"server RSS: {mib(rss_before)} after the warm-up request, {mib(rss_after)} at the end{planned}")
    return failed == 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="use a running server (loopback) instead of starting one")
    ap.add_argument("--pid", type=int, help="the running server's pid, for RSS (with --url)")
    ap.add_argument("--bin", help="outcore binary (default: cargo build --release)")
    ap.add_argument("--model-path", default=DEFAULT_MODEL)
    ap.add_argument("--model", default="smol", help="model name to request")
    ap.add_argument("--parallel", type=int, default=8, help="slots when starting the server")
    ap.add_argument("--threads", type=int, help="compute threads when starting the server (default: all cores)")
    ap.add_argument("--api-key", help="Bearer key of a running server (with --url)")
    ap.add_argument("--requests", type=int, default=400, help="requests per concurrency level")
    ap.add_argument("--levels", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4, 8])
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--timeout", type=float, default=300.0, help="per-request timeout (s)")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--rounds", type=int, default=1,
                    help="run the levels this many times in turn, --requests/ROUNDS each (a noisy machine "
                         "then slows every level alike); rows sum the rounds")
    ap.add_argument("--unique-prompts", action="store_true",
                    help="start every prompt with its request number, so no slot's kept prompt matches")
    args = ap.parse_args()

    proc = None
    if args.url:
        url, pid = args.url, args.pid
    else:
        if not os.path.isfile(args.model_path):
            sys.exit(f"{args.model_path} is missing: run scripts/fetch-demo-model.sh")
        proc, url = start_server(args)
        pid = proc.pid
    client = Client(url, args.timeout)
    client.key = args.api_key
    try:
        # Warm-up: loads the model.
        status, data = client.post("/v1/completions", {"model": args.model, "prompt": "Hi", "max_tokens": 1})
        if status != 200:
            sys.exit(f"warm-up failed: {status} {data[:200]!r}")
        rss_before = rss_bytes(pid) if pid else None
        runs = []
        rounds = max(1, args.rounds)
        per_run = max(1, args.requests // rounds)
        for k in range(rounds):
            for c in args.levels:
                m0 = client.metrics(args.model)
                r = run_level(client, args.model, c, per_run, args.max_tokens, pid, args.unique_prompts)
                m1 = client.metrics(args.model)
                r["rss_start"] = runs[-1]["rss_end"] if runs else rss_before
                r["rss_end"] = rss_bytes(pid) if pid else None
                if None not in (m0["steps"], m1["steps"], m0["tokens"], m1["tokens"]) and m1["steps"] > m0["steps"]:
                    r["decode_steps"] = m1["steps"] - m0["steps"]
                    r["mean_batch"] = round((m1["tokens"] - m0["tokens"]) / r["decode_steps"], 2)
                else:
                    r["decode_steps"], r["mean_batch"] = None, None
                runs.append(r)
                tag = f"round {k + 1}, " if rounds > 1 else ""
                print(f"{tag}concurrency {c}: done, {r['ok']}/{r['requests']} ok, {r['tokens_per_s']} tok/s", flush=True)
        results = [merge([r for r in runs if r["concurrency"] == c]) for c in dict.fromkeys(args.levels)]
        rss_after = rss_bytes(pid) if pid else None
        ok = print_report(args, results, rss_before, rss_after)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"url": url, "rss_before": rss_before, "rss_after": rss_after, "levels": results,
                           "runs": [{k: v for k, v in r.items() if k != "latencies"} for r in runs]}, f, indent=2)
        sys.exit(0 if ok else 1)
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
