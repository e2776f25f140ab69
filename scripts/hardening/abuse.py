#!/usr/bin/env python3
"""Server abuse, bounded and loopback only: while the engine decodes long completions and
slowloris-style slow bodies, thousands of idle connections, huge max_tokens, deeply nested JSON and oversized bodies hit `outcore serve`, a
separate process probes GET /health every 20 ms on a fresh connection. The server must answer
every probe, with p99 latency under 100 ms.

  scripts/hardening/abuse.py [--outcore target/release/outcore] [--model DEMO] [--seconds 60]
                             [--idle 10000] [--slow 200] [--url http://127.0.0.1:PORT]

Without --url it starts `outcore serve -m MODEL --port P` itself (and stops it). Exit status 0 when
the health promise held, 1 otherwise. Prints a JSON summary on the last line.
"""
import argparse
import asyncio
import json
import multiprocessing as mp
import os
import resource
import socket
import statistics
import subprocess
import sys
import time

HOST = "127.0.0.1"


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def probe(port, seconds, out_q):
    """GET /health every 20 ms on a new connection; records latency (s) or None for a failure."""
    lat = []
    end = time.monotonic() + seconds
    req = f"GET /health HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode()
    while time.monotonic() < end:
        t = time.monotonic()
        try:
            with socket.create_connection((HOST, port), timeout=2) as s:
                s.sendall(req)
                data = b""
                while b"\r\n" not in data:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                ok = data.startswith(b"HTTP/1.1 200")
            lat.append(time.monotonic() - t if ok else None)
        except OSError:
            lat.append(None)
        time.sleep(max(0.0, 0.02 - (time.monotonic() - t)))
    out_q.put(lat)


async def request(port, method, path, body=b"", headers=None, timeout=30):
    """One request; returns the status code (or an exception name)."""
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection(HOST, port), timeout)
        head = f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n"
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        for k, v in (headers or {}).items():
            head += f"{k}: {v}\r\n"
        w.write(head.encode() + b"\r\n" + body)
        await w.drain()
        line = await asyncio.wait_for(r.readline(), timeout)
        w.close()
        return int(line.split()[1]) if line else "closed"
    except Exception as e:  # noqa: BLE001 - any failure is a result here
        return type(e).__name__


async def idle_connections(port, n, seconds, stats):
    conns = []
    for i in range(n):
        try:
            _, w = await asyncio.open_connection(HOST, port)
            conns.append(w)
        except OSError as e:
            stats["idle_error"] = f"{type(e).__name__} after {i}: {e}"
            break
        if i % 500 == 0:
            await asyncio.sleep(0)
    stats["idle_opened"] = len(conns)
    await asyncio.sleep(seconds)
    stats["idle_still_open"] = sum(1 for w in conns if not w.is_closing())
    for w in conns:
        w.close()


async def slowloris(port, n, seconds, stats):
    """n connections that send a POST body of 100 kB one byte per second."""

    async def one():
        try:
            r, w = await asyncio.open_connection(HOST, port)
            w.write(
                f"POST /v1/completions HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
                f"Content-Length: 100000\r\n\r\n".encode()
            )
            end = time.monotonic() + seconds
            sent = 0
            while time.monotonic() < end:
                w.write(b" ")
                await w.drain()
                sent += 1
                await asyncio.sleep(1)
            w.close()
            return "held"
        except Exception as e:  # noqa: BLE001
            return type(e).__name__

    res = await asyncio.gather(*(one() for _ in range(n)))
    stats["slowloris"] = {k: res.count(k) for k in set(res)}


async def hostile_requests(port, model, seconds, stats):
    nested = b'{"model":"m","messages":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    cases = {
        "huge_max_tokens": json.dumps(
            {"model": model, "prompt": "Hi", "max_tokens": 10**15}
        ).encode(),
        "max_tokens_over_ctx": json.dumps(
            {"model": model, "prompt": "Hi", "max_tokens": 1 << 31}
        ).encode(),
        "deeply_nested_json": nested,
        "nested_prompt_arrays": b'{"model":"m","prompt":' + b"[" * 5000 + b"]" * 5000 + b"}",
        "body_64mb": b'{"prompt":"' + b"a" * (64 << 20) + b'"}',
        "not_json": b"\xff\xfe{{{",
    }
    out = {}
    end = time.monotonic() + seconds
    rounds = 0
    while time.monotonic() < end:
        for name, body in cases.items():
            path = "/v1/chat/completions" if b"messages" in body else "/v1/completions"
            st = await request(port, "POST", path, body)
            out.setdefault(name, {}).setdefault(str(st), 0)
            out[name][str(st)] += 1
        rounds += 1
        await asyncio.sleep(0.5)
    stats["hostile"] = out
    stats["hostile_rounds"] = rounds


async def busy_generation(port, model, seconds, stats):
    """Keeps the engine decoding: valid completions of 512 tokens, one after another."""
    body = json.dumps({"model": model, "prompt": "Tell me a long story.", "max_tokens": 512,
                       "ignore_eos": True}).encode()
    end = time.monotonic() + seconds
    res = {}
    while time.monotonic() < end:
        st = str(await request(port, "POST", "/v1/completions", body, timeout=seconds + 60))
        res[st] = res.get(st, 0) + 1
    stats["busy_generations"] = res


async def abuse(port, model, args, stats):
    await asyncio.gather(
        busy_generation(port, model, args.seconds, stats),
        idle_connections(port, args.idle, args.seconds, stats),
        slowloris(port, args.slow, args.seconds, stats),
        hostile_requests(port, model, args.seconds, stats),
    )


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap = argparse.ArgumentParser()
    ap.add_argument("--outcore", default=os.path.join(root, "target/release/outcore"))
    ap.add_argument(
        "--model",
        default=os.environ.get(
            "OUTCORE_DEMO_MODEL",
            os.path.expanduser("~/.cache/outcore/SmolLM2-135M-Instruct.Q4_1.gguf"),
        ),
    )
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--idle", type=int, default=10000)
    ap.add_argument("--slow", type=int, default=200)
    ap.add_argument("--url", help="an already running server (loopback only)")
    args = ap.parse_args()

    limit = raise_fd_limit()
    # Leave room for the probe, slowloris and hostile connections within our own fd limit.
    args.idle = max(0, min(args.idle, limit - args.slow - 200))
    server = None
    if args.url:
        assert args.url.startswith(("http://127.0.0.1:", "http://localhost:")), "loopback only"
        port = int(args.url.rsplit(":", 1)[1].strip("/"))
    else:
        port = free_port()
        server = subprocess.Popen(
            [args.outcore, "serve", "-m", args.model, "--host", HOST, "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=open("/tmp/outcore-abuse-server.log", "w"),
        )
        for _ in range(600):
            try:
                socket.create_connection((HOST, port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
    model = "default"
    try:
        import urllib.request

        with urllib.request.urlopen(f"http://{HOST}:{port}/v1/models", timeout=10) as r:
            model = json.load(r)["data"][0]["id"]
    except Exception:  # noqa: BLE001
        pass

    q = mp.Queue()
    prober = mp.Process(target=probe, args=(port, args.seconds + 5, q))
    prober.start()
    stats = {"fd_limit": limit, "idle_requested": args.idle}
    time.sleep(2)
    asyncio.run(abuse(port, model, args, stats))
    lat = q.get()
    prober.join()
    ok = sorted(x for x in lat if x is not None)
    failed = sum(1 for x in lat if x is None)
    pct = lambda p: ok[min(len(ok) - 1, int(p * len(ok)))] * 1e3 if ok else float("nan")  # noqa: E731
    stats["health"] = {
        "probes": len(lat),
        "failed": failed,
        "p50_ms": round(pct(0.50), 2),
        "p99_ms": round(pct(0.99), 2),
        "max_ms": round(ok[-1] * 1e3, 2) if ok else None,
        "mean_ms": round(statistics.mean(ok) * 1e3, 2) if ok else None,
    }
    if server:
        stats["server_alive"] = server.poll() is None
        server.terminate()
        server.wait(timeout=30)
    held = failed == 0 and ok and pct(0.99) < 100 and stats.get("server_alive", True)
    stats["promise_held"] = bool(held)
    print(json.dumps(stats))
    sys.exit(0 if held else 1)


if __name__ == "__main__":
    main()
