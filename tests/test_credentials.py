"""No credential reaches a file: a real small prompted run with a planted API key and a user:password URL.

The key (``$OPENAI_API_KEY``) goes, as a Bearer token, to a real HTTP proxy in front of the real local
server (``tests.llm_server``); the proxy forwards it to the server and echoes it back, as it is and
base64-encoded, in completions and in an error body (the worst an endpoint can do). A base URL with
``user:password@`` is refused before any work. Then every file of the run directory (response cache,
traces, predictions, sidecars, summary, data), the server's log and the captured log records and
output are searched for the key, the password and their base64 forms.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.llm_server import shared_server
from wfutils.data.predictions import predictions_path, read_predictions
from wfutils.data.store import build_all
from wfutils.llm.arm import run_arm
from wfutils.llm.config import PromptConfig
from wfutils.llm.client import LLMClient, LLMConfigError, check_base_url
from wfutils.llm.runner import trace_path

KEY = "sk-planted-" + secrets.token_hex(12)
USER, PASSWORD = "wfuser", "pw-" + secrets.token_hex(10)


def forms(secret: str) -> list[str]:
    """A secret as it is and in the encodings it could be stored in (base64, URL-safe base64, as Basic auth)."""
    out = {secret}
    for raw in (secret, f":{secret}", f"{USER}:{secret}"):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            out.add(encode(raw.encode()).decode().rstrip("="))
    return sorted(out)


FORBIDDEN = forms(KEY) + forms(PASSWORD)


class EchoProxy:
    """A real HTTP server on 127.0.0.1 forwarding to ``target`` (with the Authorization header it got)
    and echoing that header, as it is and base64-encoded, into every completion; the ``fail_first``
    POSTs get HTTP 400 with the header echoed in the error body instead."""

    def __init__(self, target: str, *, fail_first: int = 1) -> None:
        self.target = target.rstrip("/")
        self.fail_first = fail_first
        self.seen: list[str] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, status: int, payload: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_POST(self):  # noqa: N802
                auth = self.headers.get("Authorization", "")
                token = auth.split(" ", 1)[-1]
                echo = f" [echo Authorization: {auth} | {base64.b64encode(token.encode()).decode()}]"
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with proxy._lock:
                    proxy.seen.append(auth)
                    n = len(proxy.seen)
                if n <= proxy.fail_first:
                    self._send(400, json.dumps({"error": {"message": "bad request" + echo,
                                                          "type": "invalid_request_error"}}).encode())
                    return
                path = self.path[len("/v1"):] if self.path.startswith("/v1") else self.path
                request = urllib.request.Request(proxy.target + path, data=body, method="POST",
                                                 headers={"Content-Type": "application/json", "Authorization": auth})
                try:
                    with urllib.request.urlopen(request, timeout=300) as response:  # noqa: S310 - local
                        payload = json.loads(response.read())
                except urllib.error.HTTPError as exc:
                    self._send(exc.code, exc.read())
                    return
                for choice in payload.get("choices") or []:
                    choice["message"]["content"] = (choice["message"].get("content") or "") + echo
                self._send(200, json.dumps(payload).encode())

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> "EchoProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def leaks(text: bytes | str, where: str) -> list[str]:
    data = text.encode("utf-8", "replace") if isinstance(text, str) else text
    return [f"{where}: {form[:12]}..." for form in FORBIDDEN if form.encode() in data]


@pytest.fixture(scope="module")
def server():
    return shared_server()


def test_a_user_password_url_is_refused_before_any_work(server, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    run = tmp_path / "run"
    url = server.base_url.replace("http://", f"http://{USER}:{PASSWORD}@")
    attempts = [lambda: check_base_url(url), lambda: LLMClient(server.model, base_url=url),
                lambda: run_arm(run, PromptConfig(base_url=url, models=[server.model]), progress=False)]
    for attempt in attempts:
        with pytest.raises(LLMConfigError, match="carries credentials") as info:
            attempt()
        assert not leaks(str(info.value), "message") and USER not in str(info.value)
    monkeypatch.setenv("OPENAI_BASE_URL", url)
    for attempt in (lambda: LLMClient(server.model), lambda: run_arm(run, PromptConfig(models=[server.model]), progress=False)):
        with pytest.raises(LLMConfigError, match="carries credentials") as info:
            attempt()
        assert not leaks(str(info.value), "message")
    assert not run.exists()  # refused before anything was read, started or written


def test_no_credential_reaches_any_file_of_a_prompted_run(server, tmp_path, monkeypatch, caplog, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    caplog.set_level(logging.DEBUG)
    run = tmp_path / "run"
    build_all(run, n_train=30, n_test=2, n_ood=1, corpora=())
    with EchoProxy(server.base_url) as proxy:
        config = PromptConfig(base_url=proxy.base_url, models=[server.model], strategies=["zero_shot", "decomposed"],
                              k=1, eval_splits=["synthetic/test"], max_examples=2, max_tokens=8, step_max_tokens=4,
                              concurrency=1)
        summary = run_arm(run, config, progress=False)
    # the credential was planted: it travelled, and came back echoed, on every call
    assert proxy.seen and all(auth == f"Bearer {KEY}" for auth in proxy.seen)
    systems = summary["systems"]
    assert len(systems) == 2 and sum(s["written"] for s in systems.values()) == 4
    assert sum(s["errors"].get("bad_request", 0) for s in systems.values()) == 1  # the echoed error body
    outputs = [p.output for name in systems for p in read_predictions(predictions_path(run, name))]
    assert any("[echo Authorization: Bearer ***" in o for o in outputs)  # the echo is kept, the key is not
    traces = [json.loads(line) for name in systems for line in trace_path(run, name).read_text().splitlines()]
    assert any("bad request" in (t["error"] or "") for t in traces)
    files = [p for p in run.rglob("*") if p.is_file()]
    assert any("cache" in p.parts for p in files) and any("traces" in p.parts for p in files)
    found = [hit for p in files for hit in leaks(p.read_bytes(), str(p.relative_to(run)))]
    found += leaks(Path(server.log_path).read_bytes(), "server log")
    found += leaks(caplog.text, "log records")
    captured = capsys.readouterr()
    found += leaks(captured.out + captured.err, "output")
    assert not found, found
