#!/usr/bin/env python3
"""Load test for `outcore serve` on loopback (standard library only).

Starts the server (or uses --url), then for each concurrency level sends --requests completion
requests from that many threads and reports p50/p99 latency, aggregate generated tokens/s,
errors, and the server's RSS before and after. Every loop is bounded by the request count and
a per-request timeout, and only 127.0.0.1 is contacted.

    scripts/server-loadtest.py                      # demo model, 400 requests at 1, 4 and 8
    scripts/server-loadtest.py --requests 40 --levels 1,4
    scripts/server-loadtest.py --url http://127.0.0.1:8080 --pid 1234 --model smol
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
        subprocess.run(["cargo", "build", "--quiet", "--release", "-p", "outcore", "--bin", "outcore"], check=True)
        binary = os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "release", "outcore")
    cmd = [binary, "serve", "-m", args.model_path, "--alias", args.model, "--host", "127.0.0.1", "--port", "0",
           "--parallel", str(args.parallel), "--max-queue", str(max(64, 2 * max(args.levels)))]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        line = proc.stderr.readline()
        if not line:
            if proc.poll() is not None:
                sys.exit(f"server exited with {proc.returncode}")
            continue
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

    def post(self, path, body):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()


def run_level(client, model, concurrency, n_requests, max_tokens):
    lock = threading.Lock()
    next_i = [0]
    latencies, errors, tokens = [], {}, [0]

    def worker():
        while True:
            with lock:
                if next_i[0] >= n_requests:
                    return
                i = next_i[0]
                next_i[0] += 1
            body = {"model": model, "prompt": PROMPTS[i % len(PROMPTS)], "max_tokens": max_tokens,
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
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="use a running server (loopback) instead of starting one")
    ap.add_argument("--pid", type=int, help="the running server's pid, for RSS (with --url)")
    ap.add_argument("--bin", help="outcore binary (default: cargo build --release)")
    ap.add_argument("--model-path", default=DEFAULT_MODEL)
    ap.add_argument("--model", default="smol", help="model name to request")
    ap.add_argument("--parallel", type=int, default=8, help="slots when starting the server")
    ap.add_argument("--requests", type=int, default=400, help="requests per concurrency level")
    ap.add_argument("--levels", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4, 8])
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--timeout", type=float, default=300.0, help="per-request timeout (s)")
    ap.add_argument("--json", help="also write the results here")
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
    try:
        # Warm-up: loads the model.
        status, data = client.post("/v1/completions", {"model": args.model, "prompt": "Hi", "max_tokens": 1})
        if status != 200:
            sys.exit(f"warm-up failed: {status} {data[:200]!r}")
        rss_before = rss_bytes(pid) if pid else None
        results = []
        for c in args.levels:
            r = run_level(client, args.model, c, args.requests, args.max_tokens)
            r["rss_after"] = rss_bytes(pid) if pid else None
            results.append(r)
            print(f"concurrency {c:2d}: {r['ok']}/{r['requests']} ok, errors {r['errors'] or 0}, "
                  f"p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, {r['tokens_per_s']} tok/s, "
                  f"{r['requests_per_s']} req/s, RSS {mib(r['rss_after'])}", flush=True)
        rss_after = rss_bytes(pid) if pid else None
        print(f"server RSS before: {mib(rss_before)}, after: {mib(rss_after)}")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"url": url, "rss_before": rss_before, "rss_after": rss_after, "levels": results}, f, indent=2)
        failed = sum(sum(r["errors"].values()) for r in results)
        sys.exit(1 if failed else 0)
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
