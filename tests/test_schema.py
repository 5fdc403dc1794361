"""Flow schema: real JSON Schema validation plus the structural checks."""

from __future__ import annotations

import copy

from jsonschema import Draft202012Validator

from wfutils.flows.schema import FLOW_SCHEMA, TRIGGER_TYPES, validate_flow

VALID = {
    "trigger": {"type": "record_create", "inputs": [{"name": "table", "value": "incident"},
                                                    {"name": "condition", "value": "priority=1^active=true"}]},
    "components": [
        {"order": 1, "category": "action", "definition": "look_up_records", "scope": "global",
         "inputs": [{"name": "table", "value": "sys_user_grmember"}]},
        {"order": 2, "category": "flowlogic", "definition": "FOREACH", "inputs": [{"name": "items", "value": "{{1.records}}"}]},
        {"order": 3, "block": 2, "category": "action", "definition": "send_email", "scope": "global",
         "inputs": [{"name": "to", "value": "{{2.item.user.email}}"}]},
    ],
}


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    Draft202012Validator.check_schema(FLOW_SCHEMA)
    assert FLOW_SCHEMA["$schema"].endswith("2020-12/schema")
    assert set(FLOW_SCHEMA["$defs"]["trigger"]["properties"]["type"]["enum"]) == set(TRIGGER_TYPES)


def test_spec_example_is_valid() -> None:
    assert validate_flow(VALID) == []


def test_subflow_io_is_valid() -> None:
    flow = copy.deepcopy(VALID)
    flow["inputs"] = {"items": [{"name": "caller", "type": "reference", "reference": "sys_user"}]}
    flow["outputs"] = {"items": [{"name": "count", "type": "integer"}]}
    assert validate_flow(flow) == []


def test_not_a_dict() -> None:
    assert validate_flow([VALID]) == ["$: a flow must be a JSON object, got list"]
    assert validate_flow(None) == ["$: a flow must be a JSON object, got NoneType"]


def test_component_without_order() -> None:
    flow = copy.deepcopy(VALID)
    del flow["components"][0]["order"]
    assert validate_flow(flow) == ["$.components[0]: 'order' is a required property"]


def test_unknown_trigger_type_is_named() -> None:
    flow = copy.deepcopy(VALID)
    flow["trigger"]["type"] = "on_create"
    errors = validate_flow(flow)
    assert len(errors) == 1
    assert errors[0].startswith("$.trigger.type: unknown trigger type 'on_create' (known: record_create,")


def test_block_pointing_nowhere() -> None:
    flow = copy.deepcopy(VALID)
    flow["components"][2]["block"] = 7
    assert validate_flow(flow) == ["$.components[2].block: block 7 does not point at an earlier component's order"]


def test_block_pointing_at_an_action() -> None:
    flow = copy.deepcopy(VALID)
    flow["components"][2]["block"] = 1
    errors = validate_flow(flow)
    assert errors == ["$.components[2].block: block 1 points at component action/look_up_records, which is not a "
                      "flow-logic block (IF, ELSEIF, ELSE, FOREACH, DOUNTIL, PARALLEL, TRYCATCH)"]


def test_duplicate_and_decreasing_order() -> None:
    flow = copy.deepcopy(VALID)
    flow["components"][1]["order"] = 1
    flow["components"][2]["block"] = 1
    assert "$.components[1].order: duplicate order 1" in validate_flow(flow)
    flow = copy.deepcopy(VALID)
    flow["components"][0]["order"] = 5
    assert "$.components[1].order: order 2 is not increasing (previous component has 5)" in validate_flow(flow)


def test_wrong_types_and_unknown_keys_are_located() -> None:
    flow = copy.deepcopy(VALID)
    flow["components"][0]["inputs"][0] = {"name": "table"}
    flow["components"][1]["definition"] = "LOOP"
    flow["components"][2]["colour"] = "red"
    flow["trigger"]["inputs"] = "table=incident"
    errors = validate_flow(flow)
    assert "$.components[0].inputs[0]: 'value' is a required property" in errors
    assert any(e.startswith("$.components[1].definition: unknown flow-logic definition 'LOOP'") for e in errors)
    assert "$.components[2]: Additional properties are not allowed ('colour' was unexpected)" in errors
    assert "$.trigger.inputs: 'table=incident' is not of type 'array'" in errors


def test_missing_trigger_and_components() -> None:
    assert validate_flow({}) == ["$: 'components' is a required property", "$: 'trigger' is a required property"]


def test_flows_beyond_the_caps_get_one_error_naming_the_cap() -> None:
    from wfutils.flows import limits

    deep = copy.deepcopy(VALID)
    value = "x"
    for _ in range(limits.MAX_JSON_DEPTH):
        value = [value]
    deep["components"][0]["inputs"][0]["value"] = value
    assert validate_flow(deep) == [(f"$: too_deep: the flow is nested more than {limits.MAX_JSON_DEPTH} levels deep "
                                    "(or contains itself) (MAX_JSON_DEPTH)")]
    deeper = copy.deepcopy(deep)
    for _ in range(2000):  # far past the interpreter's recursion limit
        deeper["components"][0]["inputs"][0]["value"] = [deeper["components"][0]["inputs"][0]["value"]]
    assert validate_flow(deeper)[0].startswith("$: too_deep")
    looped = copy.deepcopy(VALID)
    looped["components"].append(looped)
    assert validate_flow(looped)[0].startswith("$: too_deep")
    many = {"trigger": {"type": "daily"}, "components": [{"order": i, "definition": "log"}
                                                          for i in range(1, limits.MAX_COMPONENTS + 2)]}
    assert validate_flow(many) == [(f"$.components: too_large: {limits.MAX_COMPONENTS + 1:,} components, more than "
                                    f"{limits.MAX_COMPONENTS:,} (MAX_COMPONENTS)")]
    many["components"].pop()
    assert validate_flow(many) == []
    huge = copy.deepcopy(VALID)
    huge["components"][0]["order"] = 10 ** limits.MAX_INT_DIGITS
    assert validate_flow(huge)[0].startswith("$: too_large") and "MAX_INT_DIGITS" in validate_flow(huge)[0]
    long = copy.deepcopy(VALID)
    long["components"][0]["inputs"][0]["value"] = "x" * limits.MAX_FLOW_CHARS
    assert "MAX_FLOW_CHARS" in validate_flow(long)[0]
