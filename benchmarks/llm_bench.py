"""Throughput of wfutils.llm.client.LLMClient against concurrency (1 -> 8 workers), with the 1-worker run as baseline.

Two endpoints, measured in the same run:

* ``remote-like``: a real HTTP server on 127.0.0.1 that answers every chat completion after a
  fixed delay (default 0.25 s), the way a remote API's latency dominates; here throughput
  should grow almost linearly with the number of workers (the client is the only limit);
* ``local``: ``transformers serve`` with SmolLM2-135M on this machine's CPU cores, where the
  model itself is the bottleneck, so extra workers help little.

Each measurement uses a fresh cache directory (no hits); a final pass re-runs the last
configuration on its warm cache and reports the cache-hit throughput. ``attempts`` counts the
HTTP requests sent (the openai client's retries included; equal to ``requests`` when nothing
failed).

Usage: python benchmarks/llm_bench.py [--requests 16] [--workers 1 2 4 8] [--delay 0.25]
       [--local-requests 8] [--max-tokens 8] [--skip-local]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from wfutils.llm.client import LLMClient, connect


class _FixedLatencyServer:
    """A minimal OpenAI-compatible chat endpoint that sleeps ``delay`` seconds per request."""

    def __init__(self, delay: float) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                time.sleep(outer.delay)
                payload = json.dumps({
                    "id": "bench", "object": "chat.completion", "created": 0, "model": body.get("model", "m"),
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": '{"trigger": null, "components": []}'}}],
                    "usage": {"prompt_tokens": 20, "completion_tokens": 8, "total_tokens": 28},
                }).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.delay = delay
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _conversations(n: int, tag: str) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": f"[{tag}] Request {i}: name one colour."}] for i in range(n)]


def _measure(make_client, n: int, workers: list[int], max_tokens: int, tag: str) -> list[dict]:
    rows = []
    last_cache = None
    for w in workers:
        cache = tempfile.mkdtemp(prefix=f"llm-bench-{tag}-{w}-")
        client = make_client(cache)
        t0 = time.perf_counter()
        results = client.chat_many(_conversations(n, f"{tag}-{w}"), concurrency=w, max_tokens=max_tokens)
        wall = time.perf_counter() - t0
        errors = [r.error for r in results if not r.ok]
        if errors:
            raise SystemExit(f"{tag}: {len(errors)} failed calls, first: {errors[0]}")
        rows.append({"endpoint": tag, "workers": w, "requests": n, "attempts": client.stats.network_calls,
                     "wall_s": round(wall, 3),
                     "req_per_s": round(n / wall, 3),
                     "tokens_per_s": round(sum(r.completion_tokens for r in results) / wall, 1)})
        last_cache, last_w = cache, w
    base = rows[0]["req_per_s"]
    for r in rows:
        r["speedup_vs_1"] = round(r["req_per_s"] / base, 2)
    # warm-cache rerun of the last configuration: zero network calls
    client = make_client(last_cache)
    t0 = time.perf_counter()
    client.chat_many(_conversations(n, f"{tag}-{last_w}"), concurrency=last_w, max_tokens=max_tokens)
    wall = time.perf_counter() - t0
    assert client.stats.network_calls == 0, client.stats
    rows.append({"endpoint": f"{tag} (cached rerun)", "workers": last_w, "requests": n, "attempts": 0,
                 "wall_s": round(wall, 4),
                 "req_per_s": round(n / wall, 1), "tokens_per_s": None,
                 "speedup_vs_1": round((n / wall) / base, 1)})
    return rows


def _print(rows: list[dict]) -> None:
    cols = ["endpoint", "workers", "requests", "attempts", "wall_s", "req_per_s", "tokens_per_s", "speedup_vs_1"]
    print(" | ".join(f"{c:>14}" for c in cols))
    for r in rows:
        print(" | ".join(f"{str(r[c]):>14}" for c in cols))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--delay", type=float, default=0.25)
    parser.add_argument("--local-requests", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--local-model", default="smollm2-135m")
    parser.add_argument("--skip-local", action="store_true")
    args = parser.parse_args(argv)

    fake = _FixedLatencyServer(args.delay)
    try:
        rows = _measure(lambda cache: LLMClient("remote-like", base_url=fake.base_url, cache_dir=cache),
                        args.requests, args.workers, args.max_tokens, "remote-like")
    finally:
        fake.close()
    print(f"remote-like endpoint: {args.delay:.2f} s per request; ideal speedup = workers")
    _print(rows)
    if not args.skip_local:
        from wfutils.engines.transformers_serve import local_server

        with local_server(args.local_model) as server:
            print(f"\nlocal transformers serve ({server.name}), server start {server.startup_s:.1f} s")
            local_rows = _measure(lambda cache: connect(server, cache_dir=cache), args.local_requests, args.workers,
                                  args.max_tokens, "local")
        _print(local_rows)
        rows += local_rows
    print(json.dumps({"params": vars(args), "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
