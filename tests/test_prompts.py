"""wfutils.llm strategies, assembly, systems and runner: templates, messages, assembly (property-based),
system metadata, and real runs on the local server (resume keys, force, sidecars)."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.llm_server import MODEL, shared_server
from wfutils.data.predictions import (FINE_TUNED, PROMPTED, EngineInfo, SystemMeta, predictions_path, read_predictions,
                                      read_sidecar, read_system_meta, system_name)

from wfutils.data.synthetic import build_synthetic
from wfutils.flows.schema import FLOW_LOGIC_DEFINITIONS, TRIGGER_TYPES, validate_flow
from wfutils.llm.assembly import assemble_flow
from wfutils.llm.generation import generate
from wfutils.llm.retrieval import Retriever
from wfutils.llm.runner import run_system, trace_path
from wfutils.llm.strategies import (
    STRATEGIES,
    Strategy,
    build_messages,
    fixed_examples,
    get_strategy,
    register_strategy,
    template_text,
)
from wfutils.llm.client import connect
from wfutils.llm.config import Decoding
from wfutils.llm.systems import decoding_label, prompted_meta
from wfutils.models import local_model_facts

REMOTE = EngineInfo(name="openai-compatible", local=False, endpoint="https://api.openai.com/v1")


@pytest.fixture(scope="module")
def data():
    return build_synthetic(seed=5, n_train=120, n_test=6, n_ood=2)


@pytest.fixture(scope="module")
def retriever(data):
    return Retriever(data["train"])


def test_every_template_exists_and_fills_completely(retriever, data):
    for s in STRATEGIES.values():
        for name in s.templates:
            assert template_text(name, s.version).strip()
    request = data["test"][0]["request"]
    got = retriever.retrieve(request, k=2)
    for name in STRATEGIES:
        messages = build_messages(name, request, examples=got.examples, catalog=got.catalog)
        text = "\n".join(m["content"] for m in messages)
        assert "$" not in text.replace("$$", "")  # every placeholder was filled
        assert messages[0]["role"] == "system" and messages[-1]["content"].endswith(request)
        assert all(t in messages[0]["content"] for t in ("record_create", "FOREACH"))
    zero = build_messages("zero_shot", request, examples=got.examples, catalog=got.catalog)
    assert len(zero) == 2 and "Catalogue" not in zero[0]["content"]
    few = build_messages("few_shot", request, examples=got.examples)
    assert len(few) == 2 + 2 * 2 and few[2]["content"] == got.examples[0].flow
    rag = build_messages("rag_few_shot", request, examples=got.examples, catalog=got.catalog)
    assert "Catalogue entries" in rag[0]["content"] and got.catalog.actions[0].name in rag[0]["content"]
    outline = build_messages("decomposed", request, examples=got.examples, catalog=got.catalog)
    shown = json.loads(outline[2]["content"])
    assert "inputs" not in shown["trigger"] and all("inputs" not in c for c in shown["components"])


def test_unknown_strategy_is_named():
    with pytest.raises(ValueError, match="unknown prompt strategy 'chain'"):
        build_messages("chain", "x")


def test_fixed_examples_are_deterministic_and_diverse(data):
    a = fixed_examples(data["train"], 3)
    b = fixed_examples(list(reversed(data["train"].to_list())), 3)
    assert [e.id for e in a] == [e.id for e in b] and len({e.id for e in a}) == 3
    rows = {r["id"]: r for r in data["train"]}
    covered = set().union(*(rows[e.id]["features"] for e in a))
    assert len(covered) > max(len(rows[e.id]["features"]) for e in a)


def test_assemble_flow_repairs_and_reports():
    outline = {"trigger": {"type": "record_created"},
               "components": [{"order": 3, "category": "flowlogic", "definition": "foreach"},
                              {"order": 4, "block": 3, "definition": "send_email"},
                              {"order": 5, "block": 4, "category": "flowlogic", "definition": "notify_all"},
                              {"definition": ""}]}
    flow, notes = assemble_flow(outline, [{"name": "table", "value": "incident"}],
                                {1: {"inputs": [{"name": "to", "value": {"a": 1}}, {"value": "x"}]}})
    assert validate_flow(flow) == []
    assert flow["trigger"] == {"type": "record_create", "inputs": [{"name": "table", "value": "incident"}]}
    c = flow["components"]
    assert [x["order"] for x in c] == [1, 2, 3]
    assert c[0] == {"order": 1, "category": "flowlogic", "definition": "FOREACH"}
    assert c[1]["block"] == 1 and c[1]["scope"] == "global" and c[1]["inputs"] == [{"name": "to", "value": '{"a": 1}'}]
    assert "block" not in c[2] and c[2]["category"] == "action"
    text = " ".join(notes)
    for fragment in ("'record_created' unknown", "not flow logic", "not an earlier flow-logic block", "no definition",
                     "dropped an input without a name"):
        assert fragment in text


def test_a_block_pointing_at_itself_or_later_is_removed_not_followed():
    # Seen from SmolLM2 in the default run: a step naming its own order as its block.
    outline = {"trigger": "record_create",
               "components": [{"order": 1, "block": 1, "category": "flowlogic", "definition": "IF"},
                              {"order": 2, "block": 3, "definition": "send_email"},
                              {"order": [3], "block": {"x": 1}, "definition": "log"}]}
    flow, notes = assemble_flow(outline)
    assert validate_flow(flow) == []
    assert all("block" not in c for c in flow["components"]) and len(flow["components"]) == 3
    assert sum("not an earlier flow-logic block" in n for n in notes) == 3


_json = st.recursive(st.none() | st.booleans() | st.integers(-3, 9) | st.text(max_size=6)
                     | st.sampled_from(list(TRIGGER_TYPES) + list(FLOW_LOGIC_DEFINITIONS) + ["send_email", "action", "flowlogic"]),
                     lambda children: st.lists(children, max_size=4)
                     | st.dictionaries(st.sampled_from(["type", "order", "block", "category", "definition", "scope",
                                                        "inputs", "name", "value", "trigger", "components"]),
                                       children, max_size=5), max_leaves=25)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(outline=_json, trigger_inputs=_json, step=_json)
def test_assembled_flows_are_always_schema_valid(outline, trigger_inputs, step):
    flow, notes = assemble_flow(outline, trigger_inputs, {0: step, 1: step})
    assert validate_flow(flow) == [], notes


@pytest.fixture(scope="module")
def server():
    return shared_server()


def test_decomposed_strategy_gives_a_schema_valid_flow(server, retriever, data, tmp_path):
    client = connect(server, cache_dir=tmp_path / "cache")
    row = data["test"][1]
    got = retriever.retrieve(row["request"], k=1)  # one retrieved outline, no catalogue: a short prompt
    gen = generate(client, "decomposed", row["request"], examples=got.examples,
                   decoding=Decoding(max_tokens=40, step_max_tokens=6))
    assert gen.error is None and gen.calls >= 2  # outline + trigger (+ steps)
    assert gen.calls == 2 + len(json.loads(gen.output)["components"])
    assert validate_flow(json.loads(gen.output)) == []
    assert len(gen.raw_outputs) == gen.calls and gen.retrieved_ids == [e.id for e in got.examples]


def _meta(strategy: str = "zero_shot", retrieval: str = "none", k: int = 0, system: str | None = None) -> SystemMeta:
    return prompted_meta(system or system_name(PROMPTED, MODEL, strategy, retrieval), strategy, base_model=MODEL,
                         n_params=134515008, k=k, retrieval=retrieval, engine=EngineInfo(name="transformers"),
                         decoding="greedy")


def test_prompted_meta_per_strategy():
    expected = {  # (strategy, arm's retrieval mode) -> (k in the prompt, retrieval recorded)
        ("zero_shot", "bm25"): (0, "none"), ("few_shot", "bm25"): (3, "none"),
        ("rag_few_shot", "bm25"): (3, "bm25"), ("rag_few_shot", "oracle"): (3, "oracle"),
        ("decomposed", "bm25"): (3, "bm25"), ("decomposed", "oracle"): (3, "oracle"),
    }
    for (strategy, mode), (k, retrieval) in expected.items():
        meta = prompted_meta(f"s-{strategy}-{mode}", strategy, base_model="gpt-4o", n_params=None, k=3, retrieval=mode,
                             engine=REMOTE, decoding="greedy")
        assert (meta.arm, meta.strategy, meta.k, meta.retrieval) == (PROMPTED, strategy, k, retrieval)
        assert meta.adapter is None and meta.n_params is None and meta.model_sha256 is None  # not published
        assert meta.engine == REMOTE
    with pytest.raises(ValueError, match="bm25' or 'oracle"):
        prompted_meta("x", "rag_few_shot", base_model="m", n_params=None, k=3, retrieval="none", engine=REMOTE,
                      decoding="greedy")
    assert decoding_label(0.0) == "greedy" and decoding_label(0, "schema") == "greedy+json_schema"
    assert decoding_label(0.7, "object") == "sampling(temperature=0.7)+json_object"


def test_registering_a_strategy_is_one_call():
    s = register_strategy(Strategy("rag_zero_catalog", "v1", ("system", "catalog", "request"), "retrieved", True,
                                   "single", "1", "catalogue and examples, single call"))
    try:
        assert get_strategy("rag_zero_catalog") is s and s.retrieval_modes == ("bm25", "oracle")
        assert build_messages("rag_zero_catalog", "r")[-1]["content"].endswith("r")
        with pytest.raises(ValueError, match="already registered"):
            register_strategy(s)
    finally:
        STRATEGIES.pop("rag_zero_catalog")
    with pytest.raises(FileNotFoundError, match="nope.v1.txt"):
        register_strategy(Strategy("bad", "v1", ("nope",), "none", False, "single", "1", "missing template"))
    assert "bad" not in STRATEGIES


def test_local_model_facts_count_parameters_and_hash_the_gguf():
    facts = local_model_facts(MODEL)
    assert facts["n_params"] == 134_515_008  # SmolLM2-135M, tied embeddings counted once
    assert len(facts["model_sha256"]) == 64 and int(facts["model_sha256"], 16) >= 0


def test_run_system_writes_predictions_sidecar_and_a_rerun_makes_no_call(server, retriever, data, tmp_path):
    client = connect(server, cache_dir=tmp_path / "llm" / "cache")
    rows = data["test"].select(range(2))
    meta = _meta()
    kwargs = dict(run_dir=tmp_path, retriever=retriever, concurrency=2, decoding=Decoding(max_tokens=6), progress=False)
    first = run_system(client, meta, {"synthetic/test": rows}, **kwargs)
    assert first["written"] == 2 and first["calls"] == 2 and first["cache_hits"] == 0 and not first["errors"]
    assert first["splits"]["synthetic/test"] == {"examples": 2, "written": 2, "already_done": 0, "failed": 0}
    path = predictions_path(tmp_path, meta.system)
    assert read_system_meta(path) == meta
    assert read_sidecar(path)["resume_key"]
    preds = read_predictions(path)
    assert sorted(p.id for p in preds) == sorted(rows["id"])
    assert all(p.system == meta.system and p.split == "test" and p.output for p in preds)
    assert all(p.prompt_tokens > 0 and 0 < p.completion_tokens <= 6 and p.latency_s > 0 for p in preds)
    again = run_system(client, meta, {"synthetic/test": rows}, **kwargs)
    assert again["already_done"] == 2 and again["calls"] == 0 and again["written"] == 0 and again["restarted"] is None
    # a lost predictions file is rebuilt from the response cache without new calls
    path.unlink()
    before = client.stats.network_calls
    rebuilt = run_system(client, meta, {"synthetic/test": rows}, **kwargs)
    assert rebuilt["written"] == 2 and rebuilt["cache_hits"] == 2 and client.stats.network_calls == before
    traces = trace_path(tmp_path, meta.system).read_text().splitlines()
    assert len(traces) == 4 and all(json.loads(t)["written"] for t in traces)


@pytest.mark.integration
def test_a_changed_resume_key_or_data_restarts_and_force_recomputes(server, retriever, data, tmp_path):
    client = connect(server, cache_dir=tmp_path / "llm" / "cache")
    rows = data["test"].select(range(2)).to_list()
    meta = _meta()
    kwargs = dict(run_dir=tmp_path, retriever=retriever, concurrency=2, decoding=Decoding(max_tokens=5), progress=False)
    run_system(client, meta, {"synthetic/test": rows}, **kwargs)
    key_before = read_sidecar(predictions_path(tmp_path, meta.system))["resume_key"]
    calls = client.stats.network_calls
    # the caller's key changed: the file restarts, and the unchanged requests replay from the cache
    changed = run_system(client, meta, {"synthetic/test": rows}, key={"note": "v2"}, **kwargs)
    assert changed["restarted"] and changed["written"] == 2 and changed["cache_hits"] == 2
    assert client.stats.network_calls == calls
    assert read_sidecar(predictions_path(tmp_path, meta.system))["resume_key"] != key_before
    assert len(trace_path(tmp_path, meta.system).read_text().splitlines()) == 2  # the trace restarted too
    # a decoding parameter changed: restart, and new requests (a different cache key)
    fewer = run_system(client, meta, {"synthetic/test": rows}, key={"note": "v2"}, **{**kwargs, "decoding": Decoding(max_tokens=4)})
    assert fewer["restarted"] and fewer["written"] == 2 and fewer["cache_hits"] == 0
    assert all(p.completion_tokens <= 4 for p in read_predictions(predictions_path(tmp_path, meta.system)))
    # the run's data was rebuilt: same id, another request -> restart
    edited = [dict(rows[0], request=rows[0]["request"] + " Also log it."), rows[1]]
    stale = run_system(client, meta, {"synthetic/test": edited}, key={"note": "v2"}, **{**kwargs, "decoding": Decoding(max_tokens=4)})
    assert stale["restarted"].startswith("data changed") and stale["written"] == 2 and stale["cache_hits"] == 1
    # force: restart and skip cache reads (every call goes to the server)
    calls = client.stats.network_calls
    forced = run_system(client, meta, {"synthetic/test": edited}, key={"note": "v2"}, force=True,
                        **{**kwargs, "decoding": Decoding(max_tokens=4)})
    assert forced["restarted"] == "force" and forced["cache_hits"] == 0 and forced["calls"] == 2
    assert client.stats.network_calls == calls + 2


def test_run_system_on_two_splits_and_retrieval_from_metadata(server, retriever, data, tmp_path):
    client = connect(server, cache_dir=tmp_path / "llm" / "cache")
    meta = _meta("rag_few_shot", "oracle", k=1)
    splits = {"synthetic/test": data["test"].select([0]), "synthetic/ood": data["ood"].select([0])}
    out = run_system(client, meta, splits, run_dir=tmp_path, retriever=retriever, decoding=Decoding(max_tokens=3),
                     progress=False)
    assert out["written"] == 2 and set(out["splits"]) == set(splits)
    preds = read_predictions(predictions_path(tmp_path, meta.system))
    assert sorted(p.split for p in preds) == ["ood", "test"]
    assert read_system_meta(predictions_path(tmp_path, meta.system)).retrieval == "oracle"
    traces = [json.loads(t) for t in trace_path(tmp_path, meta.system).read_text().splitlines()]
    for t in traces:  # oracle retrieval: the examples whose flows look like the reference
        row = next(r for r in data["test"].to_list() + data["ood"].to_list() if r["id"] == t["id"])
        assert t["retrieved_ids"] == [e.id for e in retriever.oracle(row["flow"], 1, exclude_ids=[row["id"]],
                                                                      request=row["request"]).examples]


def test_a_trace_line_cut_by_a_kill_is_never_glued_to_the_next_record(server, retriever, data, tmp_path):
    from wfutils.data.predictions import DataWarning
    from wfutils.evaluation.costs import trace_costs

    client = connect(server, cache_dir=tmp_path / "llm" / "cache")
    rows = data["test"].select(range(2)).to_list()
    meta = _meta()
    kwargs = dict(run_dir=tmp_path, retriever=retriever, concurrency=1, decoding=Decoding(max_tokens=3), progress=False)
    run_system(client, meta, {"synthetic/test": rows}, **kwargs)
    # the kill: the second example's prediction never made it, its trace line was cut mid-write
    path, traces = predictions_path(tmp_path, meta.system), trace_path(tmp_path, meta.system)
    lines = path.read_text().splitlines()
    path.write_text(lines[0] + "\n")
    last = json.loads(lines[1])["id"]
    trace_lines = traces.read_text().splitlines()
    kept = [t for t in trace_lines if json.loads(t)["id"] != last]
    traces.write_text("\n".join(kept) + "\n" + '{"id": "%s", "split": "synthetic/test", "cost_' % last)
    with pytest.warns(DataWarning, match=r"%s.jsonl:2: the last line is incomplete" % meta.system):
        again = run_system(client, meta, {"synthetic/test": rows}, **kwargs)
    assert again["written"] == 1 and again["cache_hits"] == 1
    records = [json.loads(t) for t in traces.read_text().splitlines()]  # every line is a whole record
    assert [r["id"] for r in records] == [json.loads(lines[0])["id"], last]
    assert trace_costs(tmp_path, meta.system)[last] == 0.0  # the traced cost, not the list price


@pytest.mark.integration
def test_run_system_survives_cache_entries_of_any_shape_and_internal_errors(server, retriever, data, tmp_path):
    from wfutils.llm.client import ResponseCache
    from wfutils.llm.strategies import build_messages

    client = connect(server, cache_dir=tmp_path / "llm" / "cache")
    row = data["test"][0]
    body = client.request_body(build_messages("zero_shot", row["request"]), max_tokens=3)
    key = ResponseCache.key(client.cache_id, body)
    meta = _meta()
    kwargs = dict(run_dir=tmp_path, retriever=retriever, decoding=Decoding(max_tokens=3), progress=False)
    for entry in ({"result": None}, {"result": {"text": None}}, {"result": {"text": 7, "prompt_tokens": "x"}},
                  {"result": ["a"]}):
        client.cache.put(key, entry)  # what a damaged or foreign cache entry holds
        out = run_system(client, meta, {"synthetic/test": [row]}, force=False, key=str(entry), **kwargs)
        assert out["written"] == 1 and out["cache_hits"] == 0 and not out["errors"], out
        (pred,) = read_predictions(predictions_path(tmp_path, meta.system))
        assert isinstance(pred.output, str) and pred.output and pred.completion_tokens > 0
        assert isinstance(client.cache.get(key)["result"]["text"], str)  # the entry was rewritten
    original = client.cache.get
    for shape in (None, [], "x", 3, {"result": None}, {"key": key, "result": None}):
        client.cache.get = lambda k, shape=shape: shape  # whatever ResponseCache.get may return
        out = run_system(client, meta, {"synthetic/test": [row]}, key=f"get {shape!r}", **kwargs)
        assert out["written"] == 1 and not out["errors"], (shape, out)
    client.cache.get = original

    def broken(*args, **kw):
        raise RuntimeError("a bug somewhere below run_system")

    client.chat, chat = broken, client.chat
    out = run_system(client, meta, {"synthetic/test": [row]}, key="broken", **kwargs)
    assert out["written"] == 0 and out["failed"] == 1 and out["errors"] == {"internal": 1}
    assert "RuntimeError: a bug somewhere below run_system" in out["first_error"]
    client.chat = chat
    out = run_system(client, meta, {"synthetic/test": [row]}, key="broken", **kwargs)  # retried on the next run
    assert out["written"] == 1 and out["cache_hits"] == 1


def test_trace_values_are_checked_before_they_are_written():
    from wfutils.llm.generation import Generation
    from wfutils.llm.runner import _checked

    for cost in (float("nan"), -5.0, 1e308, float("inf"), "0.1", True):
        gen = _checked(Generation(output="x", cost_usd=cost))
        assert gen.cost_usd is None and any("not a cost" in n for n in gen.notes), cost
        json.dumps({"cost_usd": gen.cost_usd}, allow_nan=False)
    assert _checked(Generation(output="x", cost_usd=0.25)).cost_usd == 0.25
    odd = _checked(Generation(output=None, prompt_tokens=-3, latency_s=float("nan")))  # type: ignore[arg-type]
    assert (odd.output, odd.prompt_tokens, odd.latency_s) == ("", 0, 0.0) and len(odd.notes) == 3


def test_run_system_checks_its_inputs(retriever, tmp_path):
    from wfutils.llm.client import LLMClient

    client = LLMClient("m", base_url="http://127.0.0.1:9/v1", max_retries=0)
    with pytest.raises(ValueError, match="record 0: field 'flow'"):
        run_system(client, _meta(system="x"), {"s": [{"id": "a", "request": "r"}]}, run_dir=tmp_path)
    with pytest.raises(ValueError, match="needs a retriever"):
        run_system(client, _meta("rag_few_shot", "bm25", 3, system="x"), {"s": [{"id": "a", "request": "r", "flow": "{}"}]},
                   run_dir=tmp_path)
    with pytest.raises(ValueError, match="ids repeat"):
        row = {"id": "a", "request": "r", "flow": "{}"}
        run_system(client, _meta(system="x"), {"s": [row], "t": [row]}, run_dir=tmp_path)
    fine_tuned = SystemMeta(system="x", arm=FINE_TUNED, base_model="m", n_params=1)
    with pytest.raises(ValueError, match="prompted"):
        run_system(client, fine_tuned, {"s": []}, run_dir=tmp_path)
    with pytest.raises(TypeError, match="split names"):
        run_system(client, _meta(system="x"), [{"id": "a", "request": "r", "flow": "{}"}], run_dir=tmp_path)


@pytest.mark.slow
def test_notebook_03_runs_a_rerun_makes_zero_calls_and_force_recomputes(tmp_path, monkeypatch):
    import base64
    import secrets

    import papermill as pm

    key = "sk-nb03-" + secrets.token_hex(12)  # planted: the kernel's client sends it to the local server
    monkeypatch.setenv("OPENAI_API_KEY", key)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)

    from wfutils.data.store import build_all

    repo = __import__("pathlib").Path(__file__).resolve().parents[1]
    run_dir = tmp_path / "run"
    build_all(run_dir, n_train=60, n_test=2, n_ood=1, corpora=())
    params = dict(run_dir=str(run_dir), local_model="smollm2-135m", local_engine="transformers",
                  strategies=["zero_shot", "few_shot", "decomposed"],
                  retrieval=["bm25", "oracle"], eval_splits=["synthetic/test"], max_examples=2, max_tokens=32,
                  step_max_tokens=8, concurrency=2, k=1)
    systems = {"smollm2-135m-zero-shot": ("zero_shot", 0, "none"), "smollm2-135m-few-shot": ("few_shot", 1, "none"),
               "smollm2-135m-decomposed": ("decomposed", 1, "bm25"),
               "smollm2-135m-decomposed-oracle": ("decomposed", 1, "oracle")}
    for attempt, force in enumerate((False, False, True)):
        out = tmp_path / f"out{attempt}.ipynb"
        pm.execute_notebook(str(repo / "notebooks" / "03_llm_prompting.ipynb"), str(out),
                            parameters={**params, "force": force}, cwd=str(repo), progress_bar=False,
                            kernel_name="python3")
        summary = json.loads((run_dir / "llm" / "summary.json").read_text())
        stats = summary["models"]["smollm2-135m"]["client_stats"]
        if attempt == 1:
            assert stats["network_calls"] == 0  # the rerun answers from predictions files and the cache
        else:
            assert stats["network_calls"] >= 8
        if force:
            assert stats["cache_hits"] == 0  # force skips every cache read
        assert set(summary["systems"]) == set(systems)
    for system, (strategy, k, retrieval) in systems.items():
        meta = read_system_meta(predictions_path(run_dir, system))
        assert (meta.arm, meta.strategy, meta.k, meta.retrieval) == ("prompted", strategy, k, retrieval)
        assert meta.base_model == "smollm2-135m" and meta.n_params == 134_515_008 and len(meta.model_sha256) == 64
        assert (meta.engine.name, meta.engine.local, meta.engine.threads) == ("transformers", True, 1)
        assert meta.decoding == "greedy"
        assert summary["systems"][system]["restarted"] == "force"
    text = out.read_text()
    assert "flowsim_with_inputs" in text and "flowsim_no_inputs" in text and '"flowsim"' not in text
    assert not (run_dir / "llm" / "scores.parquet").exists()  # notebook 04 owns the scores
    assert "OPENAI_API_KEY" not in (run_dir / "llm" / "summary.json").read_text()
    forms = [key.encode(), base64.b64encode(key.encode()).rstrip(b"="), base64.b64encode(b":" + key.encode()).rstrip(b"=")]
    files = [p for p in [*run_dir.rglob("*"), *tmp_path.glob("out*.ipynb")] if p.is_file()]
    assert not [str(p) for p in files for f in forms if f in p.read_bytes()]  # notebooks, cache, traces, server log
