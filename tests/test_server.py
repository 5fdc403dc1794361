"""wfutils.engines.transformers_serve: a real `transformers serve` process is started, answers, and leaves no orphan."""

from __future__ import annotations

import json
import os
import socket
import urllib.request

import pytest

from tests.llm_server import MODEL, shared_server
from wfutils.models import ModelNotFoundError
from wfutils.engines.processes import find_free_port
from wfutils.engines.transformers_serve import ServerStartError, local_server
from wfutils.llm.client import connect


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return any(_alive(int(p)) for p in os.listdir("/proc") if p.isdigit() and _pgid(int(p)) == pgid)


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def test_find_free_port_is_bindable():
    port = find_free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_shared_server_lists_its_model():
    server = shared_server()
    with urllib.request.urlopen(f"{server.base_url}/models", timeout=10) as response:
        ids = [m["id"] for m in json.loads(response.read())["data"]]
    assert server.model in ids
    assert server.base_url.startswith("http://127.0.0.1:") and server.name == MODEL
    assert server.cache_id == f"local:{MODEL}"  # no port: reruns on another port hit the cache
    assert server.context_window == 8192
    from wfutils.provenance import package_version

    info = server.info()  # what SystemMeta.engine records
    assert (info.name, info.version, info.local, info.threads) == ("transformers", package_version("transformers"),
                                                                   True, 1)
    assert server.endpoint().info == info and server.endpoint().cache_id == server.cache_id


def test_server_is_stopped_on_interrupt_with_no_orphan(tmp_path):
    log = tmp_path / "serve.log"
    with pytest.raises(KeyboardInterrupt):
        with local_server(MODEL, log_path=log) as server:
            pid = server.pid
            assert _alive(pid) and os.getpgid(pid) == pid  # its own process group
            raise KeyboardInterrupt
    assert not _group_alive(pid)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{server.base_url}/models", timeout=2)
    assert "Uvicorn running" in log.read_text()


def test_unknown_model_fails_before_starting_anything():
    with pytest.raises(ModelNotFoundError):
        with local_server("/nonexistent/model-dir"):
            pass


@pytest.mark.slow
def test_a_server_that_cannot_load_its_model_reports_its_log(tmp_path):
    model_dir = tmp_path / "broken"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"]}))
    (model_dir / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ServerStartError, match="exited with code"):
        with local_server(model_dir, startup_timeout=120, log_path=tmp_path / "log"):
            pass


@pytest.mark.integration
def test_concurrent_requests_get_the_answers_of_sequential_ones():
    from concurrent.futures import ThreadPoolExecutor

    server = shared_server()
    with open(f"/proc/{server.pid}/cmdline", "rb") as handle:
        assert b"--no-continuous-batching" in handle.read().split(b"\0")  # the CPU default
    client = connect(server)
    questions = ["Name a colour.", "Say hello.", "What is two plus two?", "Name a fruit."]

    def ask(question: str) -> str:
        result = client.chat([{"role": "user", "content": question}], max_tokens=16, use_cache=False)
        assert result.ok, result.error
        return result.text

    sequential = [ask(q) for q in questions]
    with ThreadPoolExecutor(len(questions)) as pool:
        concurrent = list(pool.map(ask, questions))
    assert concurrent == sequential and all(sequential)
