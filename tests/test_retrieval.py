"""wfutils.llm.retrieval on the real synthetic corpus and catalogue."""

from __future__ import annotations

import json

import pytest

from wfutils.data.catalog import load_catalog
from wfutils.data.synthetic import build_synthetic
from wfutils.llm.retrieval import Retriever, flow_signature, flow_tables, tokenize


@pytest.fixture(scope="module")
def data():
    return build_synthetic(seed=3, n_train=200, n_test=20, n_ood=5)


@pytest.fixture(scope="module")
def retriever(data):
    return Retriever(data["train"])


def test_tokenize_splits_names_and_drops_stopwords():
    assert tokenize("Send the email to the look_up_records step") == ["send", "email", "look", "up", "records", "step"]
    assert tokenize("") == ["_empty_"]


def test_similar_examples_are_ranked_and_share_words(retriever, data):
    for row in data["test"].select(range(10)):
        got = retriever.similar_examples(row["request"], k=3)
        assert len(got) == 3 and len({e.id for e in got}) == 3
        assert [e.score for e in got] == sorted((e.score for e in got), reverse=True)
        assert set(tokenize(row["request"])) & set(tokenize(got[0].request))
        assert all(json.loads(e.flow)["components"] is not None for e in got)


def test_a_training_request_finds_its_near_duplicates_but_never_itself(retriever, data):
    row = data["train"][0]
    got = retriever.similar_examples(row["request"], k=5, exclude_ids=[row["id"]])
    assert row["id"] not in {e.id for e in got} and row["request"] not in {e.request for e in got}


def test_catalog_entries_follow_the_request(retriever):
    ctx = retriever.catalog_entries("Post a message to the #ops Slack channel whenever a problem is created",
                                    k_actions=5, k_tables=2)
    assert "post_slack_message" in [a.name for a in ctx.actions]
    assert "problem" in [t.name for t in ctx.tables]
    assert len(ctx.actions) <= 5 and len(ctx.tables) <= 2
    text = ctx.render()
    assert "post_slack_message" in text and "inputs(channel, message)" in text


def test_retrieve_merges_example_actions(retriever, data):
    row = data["test"][0]
    got = retriever.retrieve(row["request"], k=3)
    catalog = load_catalog()
    used = [c["definition"] for e in got.examples for c in json.loads(e.flow)["components"]
            if c["definition"] in catalog.actions]
    expected = list(dict.fromkeys(used))[:8]
    names = [a.name for a in got.catalog.actions]
    assert names[: len(expected)] == expected and len(names) <= 8
    assert got.mode == "bm25"


def test_oracle_returns_what_the_reference_uses(retriever, data):
    catalog = load_catalog()
    agree = 0
    for row in data["test"]:
        flow = json.loads(row["flow"])
        got = retriever.oracle(row["flow"], k=3, request=row["request"])
        wanted = [c["definition"] for c in flow["components"] if c["definition"] in catalog.actions]
        assert [a.name for a in got.catalog.actions] == list(dict.fromkeys(wanted))
        assert [t.name for t in got.catalog.tables] == flow_tables(flow, catalog.tables)
        assert got.mode == "oracle" and len(got.examples) == 3
        agree += json.loads(got.examples[0].flow)["trigger"]["type"] == flow["trigger"]["type"]
    # flow-signature retrieval finds flows with the same trigger far more often than chance (1/13)
    assert agree >= 0.7 * len(data["test"])


def test_flow_signature():
    flow = {"trigger": {"type": "daily", "inputs": [{"name": "time", "value": "08:00"}]},
            "components": [{"order": 1, "definition": "look_up_records", "inputs": [{"name": "table", "value": "incident"}]}]}
    assert flow_signature(flow, load_catalog().tables) == ["trigger:daily", "step:look_up_records", "table:incident"]
    assert flow_signature("not json") == ["trigger:None"]


def test_bad_training_rows_are_named():
    with pytest.raises(ValueError, match="record 1: field 'flow'"):
        Retriever([{"id": "a", "request": "r", "flow": "{}"}, {"id": "b", "request": "r2"}])


def test_fingerprint_follows_the_example_pool(data):
    a, b = Retriever(data["train"]), Retriever(list(data["train"]))
    assert a.fingerprint == b.fingerprint and len(a.fingerprint) == 16
    rows = data["train"].to_list()
    rows[0] = {**rows[0], "request": rows[0]["request"] + " Then close it."}
    assert Retriever(rows).fingerprint != a.fingerprint
