"""Test helpers: one real local OpenAI-compatible server per test process, and a real HTTP
proxy in front of it that can fail requests or reject ``response_format``.

The server (``transformers serve`` on SmolLM2-135M) starts on first use and stops when the
test process exits (``wfutils.engines.processes`` stops it from an atexit hook; the ExitStack here closes
the context manager first).
"""

from __future__ import annotations

import atexit
import json
import threading
import urllib.error
import urllib.request
from contextlib import ExitStack
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from wfutils.engines.transformers_serve import LocalServer, local_server

MODEL = "smollm2-135m"


@lru_cache(maxsize=1)
def shared_server() -> LocalServer:
    stack = ExitStack()
    server = stack.enter_context(local_server(MODEL, startup_timeout=240))
    atexit.register(stack.close)
    return server


class Proxy:
    """A real HTTP server on 127.0.0.1 that forwards to ``target`` (``.../v1``), but

    * answers the first ``fail_first`` POSTs with ``fail_status`` (e.g. 503 or 429; with
      ``retry-after-ms: 10`` so the openai client's retries wait 10 ms), and
    * answers HTTP 400 to any request whose body has ``response_format`` when
      ``reject_response_format`` is set.

    ``posts`` counts POST requests received; ``bodies`` keeps their JSON bodies.
    """

    def __init__(self, target: str, *, fail_first: int = 0, fail_status: int = 500,
                 reject_response_format: bool = False) -> None:
        self.target = target.rstrip("/")
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.reject_response_format = reject_response_format
        self.posts = 0
        self.bodies: list[dict] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def _send(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(payload)

            def _forward(self, method: str, body: bytes | None) -> None:
                path = self.path[len("/v1"):] if self.path.startswith("/v1") else self.path
                request = urllib.request.Request(proxy.target + path, data=body, method=method,
                                                 headers={"Content-Type": "application/json"})
                try:
                    with urllib.request.urlopen(request, timeout=300) as response:  # noqa: S310 - local
                        self._send(response.status, response.read())
                except urllib.error.HTTPError as exc:
                    self._send(exc.code, exc.read())

            def do_GET(self):  # noqa: N802
                self._forward("GET", None)

            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with proxy._lock:
                    proxy.posts += 1
                    n = proxy.posts
                    try:
                        proxy.bodies.append(json.loads(body))
                    except json.JSONDecodeError:
                        proxy.bodies.append({})
                if n <= proxy.fail_first:
                    message = {"error": {"message": "simulated failure", "type": "server_error"}}
                    # the openai client honours retry-after-ms: retry after 10 ms instead of its 0.5 s backoff
                    self._send(proxy.fail_status, json.dumps(message).encode(),
                               {"Retry-After": "0", "retry-after-ms": "10"})
                    return
                if proxy.reject_response_format and b"response_format" in body:
                    message = {"error": {"message": "Unrecognized request argument supplied: response_format",
                                         "type": "invalid_request_error"}}
                    self._send(400, json.dumps(message).encode())
                    return
                self._forward("POST", body)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> "Proxy":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
