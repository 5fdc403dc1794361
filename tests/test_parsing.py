"""Parsing messy model output into flows."""

from __future__ import annotations

import json

import pytest

from wfutils.flows.parsing import dumps_flow, parse_flow

FLOW = {"trigger": {"type": "daily", "inputs": [{"name": "time", "value": "08:00"}]},
        "components": [{"order": 1, "definition": "log", "inputs": [{"name": "message", "value": "a } and a ]"}]},
                       {"order": 2, "definition": "send_email", "inputs": [{"name": "to", "value": "x@y.z"}]}]}
TEXT = json.dumps(FLOW)


def test_plain_json() -> None:
    parsed = parse_flow(TEXT)
    assert (parsed.flow, parsed.status) == (FLOW, "ok")


@pytest.mark.parametrize("text", [
    f"```json\n{TEXT}\n```",
    f"Here is the flow:\n```json\n{json.dumps(FLOW, indent=2)}\n```\nLet me know!",
    f"```\n{TEXT}\n```",
])
def test_fenced_blocks(text: str) -> None:
    parsed = parse_flow(text)
    assert parsed.flow == FLOW and parsed.status == "ok"


def test_prose_around_the_object() -> None:
    parsed = parse_flow(f"Sure! {TEXT} Hope this helps {{:)}}")
    assert parsed.flow == FLOW
    assert parsed.status == "repaired"
    assert "leading prose" in parsed.message and "trailing prose" in parsed.message


def test_trailing_commas() -> None:
    text = '{"trigger": {"type": "daily",}, "components": [{"order": 1, "definition": "log, ok",},],}'
    parsed = parse_flow(text)
    assert parsed.status == "repaired"
    assert parsed.flow == {"trigger": {"type": "daily"}, "components": [{"order": 1, "definition": "log, ok"}]}


def test_truncated_output_drops_the_unfinished_element() -> None:
    cut = TEXT[: TEXT.index('"send_email"') + 5]
    parsed = parse_flow(cut)
    assert parsed.status == "truncated"
    assert parsed.flow["trigger"] == FLOW["trigger"]
    assert parsed.flow["components"][0] == FLOW["components"][0]
    assert parsed.flow["components"][1] == {"order": 2}
    assert "truncated" in parsed.message


def test_truncated_inside_a_string_with_brackets() -> None:
    cut = TEXT[: TEXT.index("a } and") + 4]
    parsed = parse_flow(cut)
    assert parsed.status == "truncated"
    assert parsed.flow["trigger"] == FLOW["trigger"]


@pytest.mark.parametrize("text,status,fragment", [
    ("", "empty", "empty"),
    ("   \n", "empty", "empty"),
    ("I cannot help with that.", "invalid", "no JSON object"),
    ("[1, 2, 3]", "invalid", "list, not an object"),
    ("{", "invalid", "truncated"),
    (None, "invalid", "must be text"),
])
def test_unusable_output_is_reported_not_raised(text: object, status: str, fragment: str) -> None:
    parsed = parse_flow(text)
    assert parsed.flow is None
    assert parsed.status == status
    assert fragment in parsed.message


def test_dumps_flow_is_compact_and_round_trips() -> None:
    text = dumps_flow(FLOW)
    assert ", " not in text.replace("a } and a ]", "") and ": " not in text.replace("08:00", "")
    assert json.loads(text) == FLOW


def test_statuses_naming_the_caps() -> None:
    from wfutils.flows import limits
    from wfutils.flows.parsing import PARSE_STATUSES, UNPARSED_STATUSES

    assert {"too_large", "too_deep"} <= set(PARSE_STATUSES) and {"too_large", "too_deep"} <= set(UNPARSED_STATUSES)
    cases = {
        "[" * 1000: ("too_deep", "MAX_JSON_DEPTH"),
        "Sure: {" + '"a": [' * (limits.MAX_JSON_DEPTH + 5): ("too_deep", "MAX_JSON_DEPTH"),  # truncated and deep
        '{"order": ' + "9" * (limits.MAX_INT_DIGITS + 1) + "}": ("too_large", "MAX_INT_DIGITS"),
        TEXT + " " * limits.MAX_FLOW_CHARS: ("too_large", "MAX_FLOW_CHARS"),
    }
    for text, (status, cap) in cases.items():
        parsed = parse_flow(text)
        assert (parsed.flow, parsed.status) == (None, status) and cap in parsed.message
    # at the caps: still parsed
    at_depth = '{"a": ' + "[" * (limits.MAX_JSON_DEPTH - 1) + "]" * (limits.MAX_JSON_DEPTH - 1) + "}"
    assert parse_flow(at_depth).status == "ok"
    assert parse_flow('{"order": ' + "9" * limits.MAX_INT_DIGITS + "}").status == "ok"
    assert parse_flow(TEXT + " " * (limits.MAX_FLOW_CHARS - len(TEXT))).status == "ok"
    # brackets inside strings are text, not nesting
    assert parse_flow('{"a": "' + "[" * 5000 + '"}').status == "ok"
    # a dict given as the output is checked too
    deep: object = 1
    for _ in range(limits.MAX_JSON_DEPTH + 1):
        deep = {"a": deep}
    assert parse_flow(deep).status == "too_deep"


def test_repairs_stay_linear_on_long_outputs() -> None:
    import time

    for text in ('{"a": [' + "1," * 90_000, '{"a": "' + '\\"' * 90_000, "{" + '"' * 190_000, '{"a": ' + '"' * 190_000,
                 '{"a": ' + '"' * 300_000):
        start = time.perf_counter()
        parsed = parse_flow(text)
        assert time.perf_counter() - start < 1.0, parsed.status
        assert parsed.status in ("truncated", "invalid", "too_large")
