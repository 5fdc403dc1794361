"""Hypothesis strategies for realistic flows (shared by the FlowSim property tests and benchmarks)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from wfutils.flows.schema import TRIGGER_TYPES

ACTIONS = ("look_up_records", "create_record", "update_record", "send_email", "log", "ask_for_approval", "create_task")
BLOCKS = ("IF", "ELSE", "FOREACH", "DOUNTIL")
FIELDS = ("priority", "state", "active", "assigned_to", "category")
OPERATORS = ("=", "!=", "ISEMPTY", "LIKE", ">=")
PLAIN_INPUTS = ("table", "to", "subject", "message", "record", "items")

query_parts = st.builds(lambda f, o, v: f + o + v, st.sampled_from(FIELDS), st.sampled_from(OPERATORS),
                        st.sampled_from(("1", "2", "true", "{{trigger.current.sys_id}}", "")))
encoded_queries = st.lists(query_parts, min_size=1, max_size=3).flatmap(
    lambda parts: st.lists(st.sampled_from(("^", "^OR", "^NQ")), min_size=len(parts) - 1, max_size=len(parts) - 1)
    .map(lambda ops: parts[0] + "".join(op + part for op, part in zip(ops, parts[1:]))))
plain_input = st.builds(lambda n, v: {"name": n, "value": v}, st.sampled_from(PLAIN_INPUTS),
                        st.sampled_from(("incident", "sys_user", "{{1.records}}", "Hello", "")))
query_input = st.builds(lambda n, v: {"name": n, "value": v}, st.sampled_from(("condition", "conditions", "values")), encoded_queries)
inputs = st.lists(st.one_of(plain_input, query_input), max_size=3)


@st.composite
def flows(draw: Any, max_components: int = 6) -> dict[str, Any]:
    trigger: dict[str, Any] = {"type": draw(st.sampled_from(TRIGGER_TYPES))}
    if draw(st.booleans()):
        trigger["inputs"] = draw(inputs)
    components: list[dict[str, Any]] = []
    open_blocks: list[int] = []
    for order in range(1, draw(st.integers(0, max_components)) + 1):
        if draw(st.integers(0, 3)) == 0:
            component: dict[str, Any] = {"order": order, "category": "flowlogic", "definition": draw(st.sampled_from(BLOCKS))}
        else:
            component = {"order": order, "category": "action", "definition": draw(st.sampled_from(ACTIONS)), "scope": "global"}
        if open_blocks and draw(st.booleans()):
            component["block"] = draw(st.sampled_from(open_blocks))
        if draw(st.booleans()):
            component["inputs"] = draw(inputs)
        if component["category"] == "flowlogic":
            open_blocks.append(order)
        components.append(component)
    return {"trigger": trigger, "components": components}
