"""FlowSim: hand-computed values, the published implementation's quirks, and properties."""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wfutils.flows.flowsim import (
    EMPTY_FLOW, component_match, corpus_flow_similarity, edit_operations, encoded_query_tree,
    flow_similarity, flow_tree, reference_flow_similarity, trigger_match, tree_size,
)
from tests.flow_strategies import flows


def action(order: int, definition: str, block: int | None = None, **inputs: str) -> dict:
    component = {"order": order, "category": "action", "definition": definition, "scope": "global"}
    if block is not None:
        component["block"] = block
    if inputs:
        component["inputs"] = [{"name": k, "value": v} for k, v in inputs.items()]
    return component


def logic(order: int, definition: str, block: int | None = None) -> dict:
    component = {"order": order, "category": "flowlogic", "definition": definition}
    if block is not None:
        component["block"] = block
    return component


def flow(trigger: str, *components: dict, **trigger_inputs: str) -> dict:
    out = {"trigger": {"type": trigger}, "components": list(components)}
    if trigger_inputs:
        out["trigger"]["inputs"] = [{"name": k, "value": v} for k, v in trigger_inputs.items()]
    return out


THREE_STEPS = flow("record_create", action(1, "look_up_records"), action(2, "update_record"), action(3, "send_email"))


def test_identical_flows_score_one() -> None:
    assert flow_similarity(THREE_STEPS, copy.deepcopy(THREE_STEPS)) == 1.0
    assert flow_similarity(THREE_STEPS, THREE_STEPS, with_inputs=False) == 1.0


def test_empty_candidate_against_non_empty_reference_scores_zero() -> None:
    assert flow_similarity(EMPTY_FLOW, THREE_STEPS) == 0.0
    assert flow_similarity(EMPTY_FLOW, THREE_STEPS, with_inputs=False) == 0.0


def test_both_empty_score_one() -> None:
    assert flow_similarity(EMPTY_FLOW, {"trigger": None, "components": []}) == 1.0


def test_one_changed_action() -> None:
    # |T| = trigger type + 3 components = 4 on each side; relabelling a component costs 2.
    changed = copy.deepcopy(THREE_STEPS)
    changed["components"][1]["definition"] = "delete_record"
    assert flow_similarity(changed, THREE_STEPS, with_inputs=False) == pytest.approx(1 - 2 / 8)


def test_one_changed_trigger() -> None:
    changed = copy.deepcopy(THREE_STEPS)
    changed["trigger"]["type"] = "daily"
    assert flow_similarity(changed, THREE_STEPS, with_inputs=False) == pytest.approx(1 - 2 / 8)


def test_step_moved_out_of_its_block() -> None:
    # reference: IF { send_email }; candidate: IF, send_email side by side.
    # Ancestry must be kept by a mapping, so the step is deleted and inserted: distance 2, |T| = 3 + 3.
    reference = flow("daily", logic(1, "IF"), action(2, "send_email", block=1))
    candidate = flow("daily", logic(1, "IF"), action(2, "send_email"))
    assert flow_similarity(candidate, reference, with_inputs=False) == pytest.approx(1 - 2 / 6)
    assert flow_similarity(reference, candidate, with_inputs=False) == pytest.approx(1 - 2 / 6)


def test_step_moved_into_a_nested_foreach() -> None:
    reference = flow("daily", logic(1, "FOREACH"), logic(2, "IF", block=1), action(3, "log", block=2))
    candidate = flow("daily", logic(1, "FOREACH"), logic(2, "IF", block=1), action(3, "log", block=1))
    # log is a child of IF in one and its sibling in the other: delete + insert.
    assert flow_similarity(candidate, reference, with_inputs=False) == pytest.approx(1 - 2 / 8)


def test_flow_logic_definition_is_upper_cased() -> None:
    lower = flow("daily", logic(1, "foreach"), action(2, "log", block=1))
    upper = flow("daily", logic(1, "FOREACH"), action(2, "log", block=1))
    assert flow_similarity(lower, upper) == 1.0


def test_changed_input_value() -> None:
    reference = flow("daily", action(1, "log", message="hi"))
    candidate = flow("daily", action(1, "log", message="bye"))
    # |T| = daily, action, "message: hi" = 3 per side; relabel an input costs 1.
    assert flow_similarity(candidate, reference) == pytest.approx(1 - 1 / 6)
    assert flow_similarity(candidate, reference, with_inputs=False) == 1.0


def test_input_order_is_irrelevant() -> None:
    reference = flow("daily", action(1, "send_email", to="a@x.com", subject="Hi", body="Text"))
    candidate = copy.deepcopy(reference)
    candidate["components"][0]["inputs"].reverse()
    assert flow_similarity(candidate, reference) == 1.0


def test_encoded_query_part_order_is_irrelevant() -> None:
    reference = flow("record_create", condition="priority=1^active=true^ORstate!=6")
    candidate = flow("record_create", condition="state!=6^ORactive=true^priority=1")
    assert flow_similarity(candidate, reference) == 1.0


def test_encoded_query_value_change_costs_one_node() -> None:
    # record_create + (^, active, =, true, priority, =, 1) = 8 nodes per side.
    reference = flow("record_create", condition="priority=1^active=true")
    candidate = flow("record_create", condition="priority=2^active=true")
    assert tree_size(flow_tree(reference)) == 8
    assert flow_similarity(candidate, reference) == pytest.approx(1 - 1 / 16)


def test_encoded_query_tree_shape() -> None:
    tree = encoded_query_tree("b=2^a!=1")
    assert tree.pretty() == "^\n  a\n    !=\n    1\n  b\n    =\n    2"
    assert encoded_query_tree("not a query").label == ""
    assert encoded_query_tree("^EQ").label == ""


def test_unparseable_query_counts_an_empty_label() -> None:
    # Quirk of the published metric: the empty label counts in |T| but costs nothing to insert.
    candidate = flow("record_create", condition="garbage")
    reference = flow("record_create", condition="a=1")
    assert tree_size(flow_tree(candidate)) == 2
    assert flow_similarity(candidate, reference) == pytest.approx(1 - 3 / 6)


def test_invalid_json_is_scored_as_the_empty_flow() -> None:
    assert flow_similarity("Sure! Here is your flow: {", THREE_STEPS) == flow_similarity(EMPTY_FLOW, THREE_STEPS)
    assert flow_similarity("not json at all", EMPTY_FLOW) == 1.0


def test_fenced_json_block_is_extracted() -> None:
    text = "Here you go:\n```json\n" + json.dumps(THREE_STEPS) + "\n```\nAnything else?"
    assert flow_similarity(text, THREE_STEPS) == 1.0


def test_structures_the_published_code_cannot_handle_score_zero() -> None:
    assert flow_similarity({"trigger": {"type": 5}, "components": []}, THREE_STEPS) == 0.0
    assert flow_similarity({"trigger": {"type": "daily", "inputs": [{"name": None, "value": 1}]}, "components": []},
                           THREE_STEPS) == 0.0
    assert flow_similarity("42", THREE_STEPS) == 0.0
    assert flow_similarity({"trigger": "daily", "components": []}, THREE_STEPS) == 0.0


def test_missing_keys_are_tolerated() -> None:
    partial = {"components": [{"definition": "log"}]}
    assert 0.0 < flow_similarity(partial, flow("daily", action(1, "log"))) < 1.0


def test_corpus_score_is_the_macro_mean() -> None:
    changed = copy.deepcopy(THREE_STEPS)
    changed["trigger"]["type"] = "daily"
    score = corpus_flow_similarity([THREE_STEPS, changed], [THREE_STEPS, THREE_STEPS], with_inputs=False)
    assert score == pytest.approx((1.0 + 0.75) / 2)
    assert corpus_flow_similarity([], []) == 0.0


def test_trigger_and_component_match() -> None:
    changed = copy.deepcopy(THREE_STEPS)
    changed["components"][2]["definition"] = "log"
    changed["components"].append(action(4, "log"))
    assert trigger_match(changed, THREE_STEPS)
    assert not trigger_match(EMPTY_FLOW, THREE_STEPS)
    scores = component_match(changed, THREE_STEPS)
    assert scores["precision"] == pytest.approx(2 / 4)
    assert scores["recall"] == pytest.approx(2 / 3)
    assert scores["f1"] == pytest.approx(2 * (0.5 * 2 / 3) / (0.5 + 2 / 3))
    assert component_match("garbage", THREE_STEPS)["f1"] == 0.0


def test_edit_operations_name_the_changed_step() -> None:
    changed = copy.deepcopy(THREE_STEPS)
    changed["components"][1]["definition"] = "delete_record"
    ops = [op for op in edit_operations(changed, THREE_STEPS, with_inputs=False) if op.cost]
    assert [(op.kind, op.candidate, op.reference) for op in ops] == [
        ("update", "action___delete_record___global", "action___update_record___global")]
    assert ops[0].reference_path == ("flow", "components", "action___update_record___global")


def test_edit_operations_report_missing_and_extra_steps() -> None:
    reference = flow("daily", action(1, "look_up_records"), action(2, "send_email"))
    candidate = flow("daily", action(1, "look_up_records"), action(2, "log"), action(3, "create_task"))
    ops = [op for op in edit_operations(candidate, reference, with_inputs=False) if op.cost]
    kinds = sorted(op.kind for op in ops)
    assert kinds == ["delete", "update"]
    assert sum(op.cost for op in ops) == pytest.approx(3)


def test_matches_plain_zss_on_the_spec_example() -> None:
    example = flow("record_create", action(1, "look_up_records", table="sys_user_grmember",
                                            conditions="group={{trigger.current.assignment_group}}"),
                   logic(2, "FOREACH"), action(3, "send_email", block=2, to="{{2.item.user.email}}"),
                   table="incident", condition="priority=1^active=true")
    changed = copy.deepcopy(example)
    changed["components"][2]["definition"] = "send_notification"
    changed["trigger"]["inputs"][1]["value"] = "priority=2^active=true^ORstate=1"
    for with_inputs in (True, False):
        assert flow_similarity(changed, example, with_inputs=with_inputs) == pytest.approx(
            reference_flow_similarity(changed, example, with_inputs=with_inputs), abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(flows(max_components=5), flows(max_components=5), st.booleans())
def test_equals_plain_zhang_shasha(a: dict, b: dict, with_inputs: bool) -> None:
    fast = flow_similarity(a, b, with_inputs=with_inputs)
    slow = reference_flow_similarity(a, b, with_inputs=with_inputs, return_operations=False)
    assert abs(fast - slow) <= 1e-9


@settings(max_examples=150, deadline=None)
@given(flows(), flows(), st.booleans())
def test_bounds_and_symmetry(a: dict, b: dict, with_inputs: bool) -> None:
    ab = flow_similarity(a, b, with_inputs=with_inputs)
    assert 0.0 <= ab <= 1.0
    assert ab == pytest.approx(flow_similarity(b, a, with_inputs=with_inputs), abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(flows(), st.booleans())
def test_identity(a: dict, with_inputs: bool) -> None:
    assert flow_similarity(a, copy.deepcopy(a), with_inputs=with_inputs) == 1.0
    assert flow_similarity(json.dumps(a, indent=2), a, with_inputs=with_inputs) == 1.0


@settings(max_examples=80, deadline=None)
@given(flows(), flows(), st.booleans())
def test_edit_script_costs_add_up_to_the_distance(a: dict, b: dict, with_inputs: bool) -> None:
    ops = edit_operations(a, b, with_inputs=with_inputs)
    t1, t2 = flow_tree(a, with_inputs=with_inputs), flow_tree(b, with_inputs=with_inputs)
    size = tree_size(t1) + tree_size(t2)
    distance = sum(op.cost for op in ops)
    expected = 1.0 if size == 0 else 1 - distance / size
    assert flow_similarity(a, b, with_inputs=with_inputs) == pytest.approx(expected, abs=1e-12)
    assert sum(op.candidate is not None for op in ops) == len(t1.render().split("\n"))
    assert sum(op.reference is not None for op in ops) == len(t2.render().split("\n"))


# --------------------------------------------------------------------------- caps (wfutils.flows.limits)

_ORDERS = st.one_of(st.integers(-1, 4), st.sampled_from([1.0, 2.5, True, False, None, "1", "2", "a", float("nan")]),
                    st.lists(st.integers(0, 2), max_size=1))


@st.composite
def _odd_components(draw) -> list:
    out = []
    for _ in range(draw(st.integers(0, 7))):
        component = {"definition": draw(st.sampled_from(["log", "IF"]))}
        if draw(st.booleans()):
            component["order"] = draw(_ORDERS)
        if draw(st.booleans()):
            component["block"] = draw(_ORDERS)
        if draw(st.integers(0, 3)) == 0:
            component["inputs"] = [{"name": "condition", "value": "a=1"}]
        out.append(component)
    return out


@settings(max_examples=300, deadline=None)
@given(_odd_components(), st.booleans())
def test_bounded_tree_is_the_published_tree(components: list, with_inputs: bool) -> None:
    """The bounded construction (indexed children, node budget) builds the published tree or fails where it fails."""
    flow_ = {"trigger": {"type": "daily"}, "components": components}
    try:
        expected = flow_tree(flow_, with_inputs=with_inputs).render()
    except RecursionError:  # pragma: no cover - not with 7 components
        raise
    except Exception:  # noqa: BLE001 - the published code fails: so must the bounded one
        with pytest.raises(Exception):  # noqa: B017 - whatever the published code raised
            flow_tree(flow_, with_inputs=with_inputs, bounded=True)
        return
    assert flow_tree(flow_, with_inputs=with_inputs, bounded=True).render() == expected


def test_caps_give_zero_and_name_the_cap() -> None:
    from wfutils.flows import limits
    from wfutils.flows.flowsim import TreeError, prepared

    deep = {"trigger": {"type": "daily"}, "components": [{"order": 1, "definition": "log", "inputs": [
        {"name": "message", "value": [[[[["x"]]]]] * 2}]}]}
    assert flow_similarity(deep, copy.deepcopy(deep)) == 1.0  # JSON depth 9: fine
    too_deep = json.loads(json.dumps(deep))
    value = "x"
    for _ in range(limits.MAX_JSON_DEPTH):
        value = [value]
    too_deep["components"][0]["inputs"][0]["value"] = value
    for candidate in (too_deep, json.dumps(too_deep)):
        assert flow_similarity(candidate, THREE_STEPS) == 0.0 == flow_similarity(THREE_STEPS, candidate)
        assert flow_similarity(candidate, copy.deepcopy(too_deep)) == 0.0
        assert edit_operations(candidate, THREE_STEPS) == []
        tree = prepared(candidate)
        assert isinstance(tree, TreeError) and tree.reason == "too_deep" and "MAX_JSON_DEPTH" in str(tree)
    huge = json.dumps(THREE_STEPS) + " " * limits.MAX_FLOW_CHARS
    assert prepared(huge).reason == "too_large" and flow_similarity(huge, THREE_STEPS) == 0.0
    assert not trigger_match(huge, THREE_STEPS) and component_match(huge, THREE_STEPS)["f1"] == 0.0
    big_int = '{"trigger": {"type": "daily"}, "components": [{"order": ' + "1" * (limits.MAX_INT_DIGITS + 1) + "}]}"
    assert prepared(big_int).reason == "too_large" and "MAX_INT_DIGITS" in str(prepared(big_int))
    # under the caps the published structure errors are still "invalid" failures
    assert prepared({"trigger": {"type": 5}, "components": []}).reason == "invalid"


def test_long_encoded_queries_are_linear_and_exact() -> None:
    # the published code tests each part against the list of operators (quadratic); a set gives the same parts
    query = "^".join(f"f{i}=v{i}" for i in range(8))
    reference = flow("record_create", condition=query)
    candidate = flow("record_create", condition=query.replace("f7=v7", "f7!=v7"))
    assert flow_similarity(candidate, reference) == pytest.approx(
        reference_flow_similarity(candidate, reference, return_operations=False), abs=1e-12)
    assert flow_similarity(candidate, reference) < 1.0
