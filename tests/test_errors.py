"""Error taxonomy on hand-made prediction / reference pairs."""

from __future__ import annotations

import copy
import json

import pytest

from wfutils.data.catalog import load_catalog
from wfutils.data.predictions import Prediction
from wfutils.evaluation.taxonomy import ERROR_TAGS, error_tags, flow_tables, hallucinations, vocabulary
from wfutils.flows.parsing import dumps_flow

REFERENCE = {
    "trigger": {"type": "record_create",
                "inputs": [{"name": "table", "value": "incident"},
                           {"name": "condition", "value": "priority=1^active=true"}]},
    "components": [
        {"order": 1, "category": "action", "definition": "look_up_records", "scope": "global",
         "inputs": [{"name": "table", "value": "sys_user_grmember"},
                    {"name": "conditions", "value": "group={{trigger.current.assignment_group}}"}]},
        {"order": 2, "category": "flowlogic", "definition": "FOREACH",
         "inputs": [{"name": "items", "value": "{{1.records}}"}]},
        {"order": 3, "block": 2, "category": "action", "definition": "send_email", "scope": "global",
         "inputs": [{"name": "to", "value": "{{2.item.user.email}}"}]},
        {"order": 4, "category": "action", "definition": "log", "scope": "global",
         "inputs": [{"name": "message", "value": "done"}]},
    ],
}
CATALOG = load_catalog()
KNOWN = {"known_definitions": CATALOG.definitions, "known_tables": set(CATALOG.tables)}


def edited(change) -> dict:
    flow = copy.deepcopy(REFERENCE)
    change(flow)
    return flow


def tags(flow, status: str = "ok", **kw) -> list[str]:
    return error_tags(flow, REFERENCE, status, **{**KNOWN, **kw})


def test_reference_uses_only_catalogue_names() -> None:
    assert hallucinations(REFERENCE, **KNOWN) == ([], [])
    assert flow_tables(REFERENCE) == ["incident", "sys_user_grmember"]


def test_perfect_flow_has_no_tag() -> None:
    assert tags(copy.deepcopy(REFERENCE)) == []
    assert error_tags(copy.deepcopy(REFERENCE), json.dumps(REFERENCE)) == []


def test_unparseable_output_is_invalid_json_only() -> None:
    record = Prediction.from_output(id="x", split="test", system="s", request="r", reference=json.dumps(REFERENCE),
                                    output="Sorry, I cannot build that flow.", latency_s=0, prompt_tokens=0,
                                    completion_tokens=0)
    assert record.parse_status == "invalid"
    assert tags(record.flow, record.parse_status) == ["invalid_json"]
    assert tags(None, "empty") == ["invalid_json"]


def test_truncated_output_is_tagged_and_still_analysed() -> None:
    text = dumps_flow(REFERENCE)
    cut = text[: text.index('{"order":4')]  # stops before the last step
    record = Prediction.from_output(id="x", split="test", system="s", request="r", reference=text, output=cut,
                                    latency_s=0, prompt_tokens=0, completion_tokens=0)
    assert record.parse_status == "truncated"
    assert tags(record.flow, record.parse_status) == ["truncated", "missing_step"]


def test_missing_and_extra_steps() -> None:
    assert tags(edited(lambda f: f["components"].pop(3))) == ["missing_step"]
    extra = {"order": 5, "category": "action", "definition": "log", "scope": "global",
             "inputs": [{"name": "message", "value": "again"}]}
    assert tags(edited(lambda f: f["components"].append(extra))) == ["extra_step"]


def test_wrong_action() -> None:
    def change(f):
        f["components"][3]["definition"] = "add_work_note"
    assert tags(edited(change)) == ["wrong_action"]


def test_wrong_trigger_type_is_not_also_a_condition_error() -> None:
    def change(f):
        f["trigger"]["type"] = "record_update"
        f["trigger"]["inputs"][1]["value"] = "priority=2"
    assert tags(edited(change)) == ["wrong_trigger_type"]


def test_wrong_trigger_condition() -> None:
    def change(f):
        f["trigger"]["inputs"][1]["value"] = "priority=2^active=true"
    assert tags(edited(change)) == ["wrong_trigger_condition"]


def test_dropped_loop_is_flow_logic_and_nesting() -> None:
    def change(f):
        del f["components"][1]
        del f["components"][1]["block"]
    assert tags(edited(change)) == ["wrong_flow_logic", "wrong_nesting"]


def test_wrong_nesting_alone() -> None:
    def change(f):  # the log step moves into the loop
        f["components"][3]["block"] = 2
    assert tags(edited(change)) == ["wrong_nesting"]


def test_wrong_and_hallucinated_table() -> None:
    def known_table(f):
        f["components"][0]["inputs"][0]["value"] = "sys_user"
    assert tags(edited(known_table)) == ["wrong_table"]

    def unknown_table(f):
        f["components"][0]["inputs"][0]["value"] = "u_made_up_table"
    assert tags(edited(unknown_table)) == ["wrong_table", "hallucinated_table"]


def test_hallucinated_step_and_wrong_input_value() -> None:
    def made_up(f):
        f["components"][3]["definition"] = "summon_the_dragon"
    assert tags(edited(made_up)) == ["wrong_action", "hallucinated_step"]
    assert tags(edited(made_up), known_definitions=None, known_tables=None) == ["wrong_action"]

    def value(f):
        f["components"][2]["inputs"][0]["value"] = "someone@example.com"
    assert tags(edited(value)) == ["wrong_input_value"]


def test_tags_come_in_taxonomy_order_and_vocabulary_reads_text() -> None:
    def many(f):
        f["trigger"]["type"] = "daily"
        f["components"].pop()
    result = tags(edited(many))
    assert result == sorted(result, key=ERROR_TAGS.index) == ["wrong_trigger_type", "missing_step"]
    definitions, tables = vocabulary([dumps_flow(REFERENCE), "not json"])
    assert definitions == {"look_up_records", "FOREACH", "send_email", "log"}
    assert tables == {"incident", "sys_user_grmember"}


@pytest.mark.parametrize("flow", [{"components": "nope"}, {"trigger": 3, "components": [None, 5]}, {}])
def test_odd_flows_never_crash(flow) -> None:
    result = tags(flow)
    assert set(result) <= set(ERROR_TAGS) and "missing_step" in result
