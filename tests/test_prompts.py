"""wfutils.llm.strategies: templates, messages, assembly (property-based) and real runs on the local server."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.llm_server import shared_server
from wfutils.data.synthetic import build_synthetic
from wfutils.data.predictions import read_predictions
from wfutils.llm.strategies import (
    STRATEGIES,
    assemble_flow,
    build_messages,
    fixed_examples,
    generate,
    run_system,
    system_name,
    template_text,
)
from wfutils.llm.retrieval import Retriever
from wfutils.flows.schema import FLOW_LOGIC_DEFINITIONS, TRIGGER_TYPES, validate_flow


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


def test_system_names():
    assert system_name("gpt-4o", "rag_few_shot") == "gpt-4o-rag-few-shot"
    assert system_name("/root/.cache/models/SmolLM2-135M", "zero_shot") == "smollm2-135m-zero-shot"
    assert system_name("gemini-2.0-flash", "decomposed", "oracle") == "gemini-2.0-flash-decomposed-oracle"


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
    client = server.client(cache_dir=tmp_path / "cache")
    row = data["test"][1]
    got = retriever.retrieve(row["request"], k=1)  # one retrieved outline, no catalogue: a short prompt
    gen = generate(client, "decomposed", row["request"], examples=got.examples, max_tokens=40, step_max_tokens=6)
    assert gen.error is None and gen.calls >= 2  # outline + trigger (+ steps)
    assert gen.calls == 2 + len(json.loads(gen.output)["components"])
    assert validate_flow(json.loads(gen.output)) == []
    assert len(gen.raw_outputs) == gen.calls and gen.retrieved_ids == [e.id for e in got.examples]


def test_run_system_writes_predictions_and_a_rerun_makes_no_call(server, retriever, data, tmp_path):
    client = server.client(cache_dir=tmp_path / "llm" / "cache")
    rows = data["test"].select(range(2))
    kwargs = dict(run_dir=tmp_path, split="test", system="smollm2-135m-zero-shot", retriever=retriever,
                  concurrency=2, max_tokens=6, progress=False)
    first = run_system(client, "zero_shot", rows, **kwargs)
    assert first["written"] == 2 and first["calls"] == 2 and first["cache_hits"] == 0 and not first["errors"]
    preds = read_predictions(tmp_path / "predictions" / "smollm2-135m-zero-shot.jsonl")
    assert sorted(p.id for p in preds) == sorted(rows["id"])
    assert all(p.system == "smollm2-135m-zero-shot" and p.split == "test" and p.output for p in preds)
    assert all(p.prompt_tokens > 0 and 0 < p.completion_tokens <= 6 and p.latency_s > 0 for p in preds)
    assert {p.reference for p in preds} == set(rows["flow"])
    again = run_system(client, "zero_shot", rows, **kwargs)
    assert again["already_done"] == 2 and again["calls"] == 0 and again["written"] == 0
    # a lost predictions file is rebuilt from the response cache without new calls
    (tmp_path / "predictions" / "smollm2-135m-zero-shot.jsonl").unlink()
    before = client.stats.network_calls
    rebuilt = run_system(client, "zero_shot", rows, **kwargs)
    assert rebuilt["written"] == 2 and rebuilt["cache_hits"] == 2 and client.stats.network_calls == before
    traces = (tmp_path / "llm" / "traces" / "smollm2-135m-zero-shot.jsonl").read_text().splitlines()
    assert len(traces) == 4 and all(json.loads(t)["written"] for t in traces)


def test_run_system_checks_its_inputs(retriever, tmp_path):
    from wfutils.llm.client import LLMClient

    client = LLMClient("m", base_url="http://127.0.0.1:9/v1")
    with pytest.raises(ValueError, match="record 0: field 'flow'"):
        run_system(client, "zero_shot", [{"id": "a", "request": "r"}], run_dir=tmp_path, split="s", system="x")
    with pytest.raises(ValueError, match="needs a retriever"):
        run_system(client, "rag_few_shot", [{"id": "a", "request": "r", "flow": "{}"}], run_dir=tmp_path,
                   split="s", system="x")


@pytest.mark.slow
def test_notebook_03_runs_and_a_rerun_makes_zero_calls(tmp_path):
    import papermill as pm

    from wfutils.data.store import build_all

    repo = __import__("pathlib").Path(__file__).resolve().parents[1]
    run_dir = tmp_path / "run"
    build_all(run_dir, n_train=60, n_test=2, n_ood=1, corpora=())
    params = dict(run_dir=str(run_dir), strategies=["zero_shot", "decomposed"], eval_splits=["synthetic/test"],
                  max_examples=2, max_tokens=32, step_max_tokens=8, concurrency=2, k=1)
    for attempt in range(2):
        pm.execute_notebook(str(repo / "notebooks" / "03_llm_prompting.ipynb"), str(tmp_path / f"out{attempt}.ipynb"),
                            parameters=params, cwd=str(repo), progress_bar=False, kernel_name="python3")
        summary = json.loads((run_dir / "llm" / "summary.json").read_text())
        stats = summary["models"]["smollm2-135m"]["client_stats"]
        if attempt == 0:
            assert stats["network_calls"] >= 4
        else:
            assert stats["network_calls"] == 0  # the rerun answers from predictions files and the cache
    table = __import__("pandas").read_csv(run_dir / "llm" / "systems_table.csv")
    assert set(table["system"]) == {"smollm2-135m-zero-shot", "smollm2-135m-decomposed"}
    assert {"parse_rate", "flowsim", "flowsim_inputs", "cost_usd", "latency_s"} <= set(table.columns)
    assert (run_dir / "llm" / "flowsim_by_system.png").exists()
    assert "OPENAI_API_KEY" not in (run_dir / "llm" / "summary.json").read_text()
