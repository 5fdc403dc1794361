"""wfutils.llm.client against a real local OpenAI-compatible server (transformers serve, SmolLM2-135M)."""

from __future__ import annotations

import json

import pytest

from tests.llm_server import Proxy, shared_server
from wfutils.llm.client import LLMClient, LLMConfigError, ResponseCache, check_base_url, connect, is_local_url, redact
from wfutils.llm.pricing import cost_usd
from wfutils.engines.processes import find_free_port

SECRET = "sk-test-do-not-leak-0123456789abcdef"
HELLO = [{"role": "user", "content": "Say hello."}]


@pytest.fixture(scope="module")
def server():
    return shared_server()


def test_round_trip_usage_latency_and_order(server, tmp_path):
    client = connect(server, cache_dir=tmp_path / "cache")
    convs = [HELLO, [{"role": "user", "content": "Name a colour."}]]
    results = client.chat_many(convs, concurrency=2, max_tokens=4)
    assert [r.ok for r in results] == [True, True], [r.error for r in results]
    for r in results:
        assert r.text.strip()
        assert r.prompt_tokens > 0 and 0 < r.completion_tokens <= 4
        assert r.latency_s > 0 and r.cost_usd == 0.0 and not r.cached and r.attempts == 1
    # results come back in the order of the conversations: the first one is the hello prompt
    again = client.chat(HELLO, max_tokens=4)
    assert again.cached and again.text == results[0].text
    assert client.stats.network_calls == 2 and client.stats.cache_hits == 1


def test_cache_hit_on_rerun_makes_zero_calls_and_never_stores_the_key(server, tmp_path):
    cache = tmp_path / "cache"
    first = connect(server, cache_dir=cache, api_key=SECRET)
    r1 = first.chat(HELLO, max_tokens=3, temperature=0.0)
    assert r1.ok and not r1.cached
    assert SECRET not in repr(first)
    # a "rerun": a fresh client (new process in real life) on the same cache directory
    second = connect(server, cache_dir=cache)
    r2 = second.chat(HELLO, max_tokens=3, temperature=0.0)
    assert r2.cached and r2.text == r1.text and r2.completion_tokens == r1.completion_tokens
    assert second.stats.network_calls == 0
    # a different parameter is a different cache entry
    r3 = second.chat(HELLO, max_tokens=2, temperature=0.0)
    assert not r3.cached and second.stats.network_calls == 1
    files = list(cache.rglob("*.json"))
    assert len(files) == 2
    for f in files:
        assert SECRET not in f.read_text()
        assert json.loads(f.read_text())["result"]["text"]


def test_the_openai_clients_retries_recover_from_503_twice_and_count_attempts(server, tmp_path):
    with Proxy(server.base_url, fail_first=2, fail_status=503) as proxy:
        client = LLMClient(server.model, base_url=proxy.base_url, max_retries=3, cache_dir=tmp_path)
        assert client._client.max_retries == 3  # the openai client does the retrying
        result = client.chat(HELLO, max_tokens=2)
    assert result.ok, result.error
    assert result.attempts == 3 and proxy.posts == 3 and client.stats.network_calls == 3
    assert result.text.strip()


def test_rate_limit_is_retried_and_exhausted_retries_are_classified(server, tmp_path):
    with Proxy(server.base_url, fail_first=1, fail_status=429) as proxy:
        client = LLMClient(server.model, base_url=proxy.base_url, cache_dir=tmp_path / "429")
        result = client.chat(HELLO, max_tokens=2)
    assert result.ok and result.attempts == 2 and proxy.posts == 2
    with Proxy(server.base_url, fail_first=10, fail_status=503) as proxy:
        client = LLMClient(server.model, base_url=proxy.base_url, max_retries=1, cache_dir=tmp_path / "503")
        failed = client.chat(HELLO, max_tokens=2)
        assert failed.error_kind == "server_error" and "503" in failed.error
        assert failed.attempts == 2 and proxy.posts == 2
        assert not list((tmp_path / "503").rglob("*.json"))  # failures are not cached
        # a server error is not fatal: the next call is made (and fails the same way)
        assert client.chat(HELLO, max_tokens=2).attempts == 2 and proxy.posts == 4


def test_json_mode_falls_back_when_the_endpoint_rejects_response_format(server, tmp_path):
    schema = {"type": "object", "properties": {"greeting": {"type": "string"}}}
    with Proxy(server.base_url, reject_response_format=True) as proxy:
        client = LLMClient(server.model, base_url=proxy.base_url, cache_dir=tmp_path)
        result = client.chat(HELLO, max_tokens=3, json_mode="schema", json_schema=schema)
        assert result.ok, result.error
        assert result.text.strip() and result.json_mode == "none"
        assert result.attempts == 3  # json_schema, json_object, then plain
        assert [("response_format" in b) for b in proxy.bodies] == [True, True, False]
        # remembered: the next call goes straight to plain mode
        second = client.chat([{"role": "user", "content": "Say hi."}], max_tokens=3, json_mode="schema",
                             json_schema=schema)
        assert second.ok and second.attempts == 1 and proxy.posts == 4


def test_unknown_model_is_a_clear_fatal_error(server):
    client = LLMClient("no-such-model", base_url=server.base_url)
    first = client.check()
    assert first.error_kind == "unknown_model" and "no-such-model" in first.error
    second = client.chat(HELLO, max_tokens=2)
    assert second.error.startswith("skipped:") and second.attempts == 0


def test_context_overflow_is_refused_before_calling(server):
    client = connect(server)
    result = client.chat([{"role": "user", "content": "word " * (server.context_window + 10)}], max_tokens=4)
    assert result.error_kind == "context_overflow" and "context window" in result.error
    assert result.attempts == 0 and client.stats.network_calls == 0


def test_unreachable_server_fails_fast_with_a_clear_message():
    url = f"http://127.0.0.1:{find_free_port()}/v1"
    client = LLMClient("m", base_url=url, max_retries=1)
    result = client.chat(HELLO, max_tokens=2)
    assert result.error_kind == "unreachable" and url in result.error and "running" in result.error
    assert result.attempts == 2  # the first attempt and the openai client's one retry
    later = client.chat(HELLO, max_tokens=2)
    assert later.attempts == 0 and later.error.startswith("skipped:")  # later calls are skipped
    assert client.fatal_error == result.error


def test_missing_key_for_a_remote_endpoint(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(LLMConfigError, match="OPENAI_API_KEY"):
        LLMClient("gpt-4o", base_url="https://api.openai.com/v1")
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    client = LLMClient("gpt-4o", base_url="https://api.openai.com/v1")  # constructing makes no call
    assert SECRET not in repr(client) and not client.local
    assert is_local_url("http://localhost:8000/v1") and not is_local_url("https://example.org/v1")
    with pytest.raises(LLMConfigError, match="http"):
        LLMClient("gpt-4o", base_url="api.openai.com")


def test_public_url_drops_credentials():
    from wfutils.llm.client import public_url

    assert public_url("https://user:pw@example.org:8443/v1?key=abc") == "https://example.org:8443/v1"


def test_credentials_or_a_query_in_the_url_are_refused_without_repeating_them(monkeypatch):
    import base64

    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    forms = ["secretpw", base64.b64encode(b"u:secretpw").decode(), base64.b64encode(b"secretpw").decode()]
    for url in ("http://u:secretpw@127.0.0.1:9/v1", "https://u:secretpw@example.org/v1", "http://:secretpw@host/v1",
                "http://secretpw@host/v1", "u:secretpw@host/v1", "http://u:secretpw@host:bad/v1",
                "http://u:secret%40pw@host/v1"):
        for make in (lambda: LLMClient("m", base_url=url, max_retries=0), lambda: check_base_url(url)):
            with pytest.raises(LLMConfigError) as info:
                make()
            message = str(info.value)
            assert not any(f in message for f in forms) and "secret%40pw" not in message, (url, message)
            assert "credentials" in message or "not a valid" in message or "not an http" in message, message
    monkeypatch.setenv("OPENAI_BASE_URL", "http://u:secretpw@127.0.0.1:9/v1")  # from the environment too
    with pytest.raises(LLMConfigError, match=r"http://\*\*\*@127.0.0.1:9/v1 carries credentials"):
        LLMClient("m")
    for url in ("https://example.org/v1?api-key=secretpw", "https://example.org/v1#secretpw"):
        with pytest.raises(LLMConfigError, match="query string") as info:
            check_base_url(url)
        assert "secretpw" not in str(info.value)
    assert check_base_url("http://127.0.0.1:8000/v1/") == "http://127.0.0.1:8000/v1" and check_base_url(None) is None


def test_only_loopback_addresses_are_local(monkeypatch):
    for url in ("http://127.0.0.1:8000/v1", "http://127.3.4.5/v1", "http://localhost/v1", "http://LOCALHOST:1/v1",
                "http://[::1]:8000/v1"):
        assert is_local_url(url), url
    for url in ("http://0.0.0.0:8000/v1", "http://[::]:8000/v1", "http://10.0.0.2/v1", "http://192.168.1.1/v1",
                "http://localhost.example.org/v1", "http://128.0.0.1/v1", "https://api.openai.com/v1", "nonsense"):
        assert not is_local_url(url), url
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(LLMConfigError, match="OPENAI_API_KEY is not set.*0.0.0.0 and other addresses are not local"):
        LLMClient("m", base_url="http://0.0.0.0:8000/v1")  # needs a key, is priced as hosted
    assert LLMClient("m", base_url="http://127.0.0.1:9/v1").local


def test_redact():
    import base64

    assert SECRET not in redact(f"bad key {SECRET} given", SECRET)
    assert "sk-abcdefghijkl" not in redact("Incorrect API key provided: sk-abcdefghijklmnop", None)
    b64 = base64.b64encode(SECRET.encode()).decode()
    basic = base64.b64encode(b"user:hunter2-password").decode()
    text = redact(f"echo: {b64} / Authorization: Basic {basic} / authorization=Bearer tok-123456", SECRET)
    assert b64 not in text and basic not in text and "tok-123456" not in text


def test_price_table(tmp_path):
    assert cost_usd("gpt-4o", 1_000_000, 1_000_000) == pytest.approx(12.5)
    assert cost_usd("gpt-4o-2024-08-06", 1_000_000, 0) == pytest.approx(2.5)
    assert cost_usd("gpt-4o-mini", 1_000_000, 1_000_000) == pytest.approx(0.75)
    assert cost_usd("gemini-2.0-flash", 2_000_000, 1_000_000) == pytest.approx(0.6)
    assert cost_usd("claude-3-5-sonnet-20241022", 1_000, 1_000) == pytest.approx(0.018)
    assert cost_usd("mystery-model", 10, 10) is None
    assert cost_usd("gpt-4o", 10**6, 10**6, local=True) == 0.0
    edited = tmp_path / "prices.json"
    edited.write_text(json.dumps({"models": {"my-model": {"input": 1.0, "output": 2.0}}}))
    assert cost_usd("my-model", 500_000, 500_000, prices=str(edited)) == pytest.approx(1.5)
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"models": {"bad": {"input": "x"}}}))
    with pytest.raises(ValueError, match="bad"):
        cost_usd("bad", 1, 1, prices=str(broken))
    for price in ("NaN", "-5", "1e308", "Infinity"):
        broken.write_text('{"models": {"odd": {"input": %s, "output": 1}}}' % price)
        with pytest.raises(ValueError, match="odd.*negative, not finite"):
            cost_usd("odd", 1, 1, prices=str(broken))
        from wfutils.llm.pricing import load_prices

        load_prices.cache_clear()


def test_response_cache_is_atomic_and_tolerates_damaged_entries(tmp_path):
    cache = ResponseCache(tmp_path)
    body = {"model": "m", "messages": HELLO, "temperature": 0}
    key = ResponseCache.key("e", body)
    assert key != ResponseCache.key("e", {**body, "temperature": 0.5})
    assert key != ResponseCache.key("other", body)
    assert cache.get(key) is None
    cache.put(key, {"result": {"text": "hi"}})
    assert cache.get(key)["result"]["text"] == "hi"
    assert not list(tmp_path.rglob("*.tmp"))
    cache.path(key).write_text('{"result": {"text": "h')  # a torn write from some other tool
    assert cache.get(key) is None
    cache.put(key, {"result": {"text": "again"}})
    assert cache.get(key)["result"]["text"] == "again" and cache.count() == 1


@pytest.mark.parametrize("entry", [None, [], "text", 3, {"key": "k"}, {"result": None}, {"result": []},
                                   {"result": "hi"}, {"result": {"text": None}}, {"result": {"text": 5}},
                                   {"result": {"text": "x", "prompt_tokens": "12"}},
                                   {"result": {"text": "x", "completion_tokens": -1}},
                                   {"result": {"text": "x", "latency_s": float("nan")}},
                                   {"result": {"text": "x", "json_mode": "yaml"}},
                                   {"result": {"text": "x", "error": "boom"}}])
def test_a_cache_entry_of_any_shape_is_a_miss_never_a_crash(entry, tmp_path):
    url = f"http://127.0.0.1:{find_free_port()}/v1"  # nothing listens: a miss becomes an unreachable error
    client = LLMClient("m", base_url=url, max_retries=0, cache_dir=tmp_path)
    client.cache.get = lambda key: entry  # whatever ResponseCache.get hands back
    result = client.chat(HELLO, max_tokens=2)
    assert result.error_kind == "unreachable" and not result.cached
    client.cache.get = lambda key: (_ for _ in ()).throw(OSError("disk gone"))
    assert not client.chat(HELLO, max_tokens=2).cached
    client.cache.get = lambda key: {"key": key, "result": {"text": "ok", "prompt_tokens": 3, "completion_tokens": 1}}
    hit = client.chat(HELLO, max_tokens=2)
    assert hit.cached and hit.text == "ok" and hit.cost_usd == 0.0 and hit.attempts == 0


def test_the_cache_key_follows_every_part_of_the_request_sent():
    client = LLMClient("m", base_url="http://127.0.0.1:9/v1", max_retries=0)
    schema = {"type": "object", "properties": {"trigger": {}}}

    def key(**kwargs):
        args = {"messages": HELLO, "max_tokens": 8, **kwargs}
        return ResponseCache.key(client.cache_id, client.request_body(**args))

    variants = [key(), key(messages=[{"role": "user", "content": "Say hello!"}]), key(max_tokens=9),
                key(temperature=0.3), key(json_mode="object"), key(json_mode="schema", json_schema=schema),
                key(json_mode="schema", json_schema={**schema, "required": ["trigger"]}), key(seed=1),
                key(stop=["}"]), key(top_p=0.9)]
    assert len(set(variants)) == len(variants)
    assert key() == key()  # deterministic
    other = LLMClient("m2", base_url="http://127.0.0.1:9/v1", max_retries=0)
    assert ResponseCache.key(other.cache_id, other.request_body(HELLO, max_tokens=8)) != key()


def test_refresh_skips_cache_reads_and_overwrites_the_entry(server, tmp_path):
    cache = tmp_path / "cache"
    warm = connect(server, cache_dir=cache)
    first = warm.chat(HELLO, max_tokens=3)
    assert first.ok and not first.cached
    entry = next(cache.rglob("*.json"))
    before = json.loads(entry.read_text())["created"]
    forced = connect(server, cache_dir=cache, refresh=True)
    again = forced.chat(HELLO, max_tokens=3)
    assert again.ok and not again.cached and again.attempts == 1 and forced.stats.network_calls == 1
    assert json.loads(entry.read_text())["result"]["latency_s"] == again.latency_s and before
    # per call: refresh=False reads the cache even on a refreshing client, refresh=True skips it on a normal one
    assert forced.chat(HELLO, max_tokens=3, refresh=False).cached
    assert not warm.chat(HELLO, max_tokens=3, refresh=True).cached
    assert warm.chat(HELLO, max_tokens=3).cached and warm.stats.network_calls == 2
