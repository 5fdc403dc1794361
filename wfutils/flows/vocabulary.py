"""The flow vocabulary, defined once: trigger types, flow-logic definitions, component categories,
special input names, tolerant accessors, the one flow-to-text form, and structural feature tags.

Everything else in the package (schema, FlowSim, the generator, converters, retrieval, prompts,
the error taxonomy) imports these names from here. Accessors never raise on malformed flows:
model output of any shape goes through them (a flow beyond the caps of
:mod:`wfutils.flows.limits`, which only a flow built in Python can be, gives an empty outline and
no feature tags).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from wfutils.flows import limits

RECORD_TRIGGERS = ("record_create", "record_update", "record_create_or_update")
SCHEDULED_TRIGGERS = ("daily", "weekly", "monthly", "repeat", "run_once")
APPLICATION_TRIGGERS = ("email", "sla_task", "service_catalog", "metric", "rest_async")
TRIGGER_TYPES = RECORD_TRIGGERS + SCHEDULED_TRIGGERS + APPLICATION_TRIGGERS

FLOW_LOGIC_DEFINITIONS = (
    "IF", "ELSEIF", "ELSE", "FOREACH", "DOUNTIL", "PARALLEL",
    "TRYCATCH", "END", "WAITFORDURATION", "SETFLOWVARIABLES",
)
#: Flow-logic definitions that open a block other components can be nested in.
BLOCK_DEFINITIONS = ("IF", "ELSEIF", "ELSE", "FOREACH", "DOUNTIL", "PARALLEL", "TRYCATCH")
#: A component's ``category``; FlowSim labels components ``<category>___<definition>___<scope>``.
COMPONENT_CATEGORIES = ("action", "flowlogic", "subflow")

#: Inputs whose value is an encoded query (FlowSim decomposes them into a tree).
CONDITION_INPUTS = frozenset({"condition", "conditions", "email_conditions"})
#: Inputs whose value is a list of field assignments (FlowSim decomposes them into a tree).
VALUE_INPUTS = frozenset({"values", "fields", "field_values"})
#: Inputs that name a table.
TABLE_INPUTS = frozenset({"table", "task_table", "table_name"})

FEATURE_TAGS = (
    "flow_logic", "nested_logic", "implicit_step", "implicit_condition", "scheduled_trigger",
    "record_trigger", "application_trigger", "encoded_query", "data_pill", "long_flow",
    "spoke", "subflow",
)
LONG_FLOW_MIN_COMPONENTS = 6
_RICH_QUERY_RE = re.compile(r"\^|ISEMPTY|ISNOTEMPTY|VALCHANGES|CHANGESTO|STARTSWITH|LIKE|!=|>=|<=|>|<| IN")


def trigger_kind(trigger_type: Any) -> str | None:
    """``record`` / ``scheduled`` / ``application`` for a trigger type, None if unknown."""
    if trigger_type in RECORD_TRIGGERS:
        return "record"
    if trigger_type in SCHEDULED_TRIGGERS:
        return "scheduled"
    if trigger_type in APPLICATION_TRIGGERS:
        return "application"
    return None


# --------------------------------------------------------------------------- tolerant accessors

def as_flow_dict(flow: Any) -> dict[str, Any]:
    """A flow given as dict or JSON text, as a dict; ``{}`` for anything else."""
    if isinstance(flow, dict):
        return flow
    if isinstance(flow, (str, bytes)):
        try:
            flow = json.loads(flow)
        except (ValueError, RecursionError):
            return {}
        return flow if isinstance(flow, dict) else {}
    return {}


def trigger_of(flow: Any) -> dict[str, Any]:
    """The flow's trigger object (``{}`` when missing or malformed)."""
    trigger = flow.get("trigger") if isinstance(flow, dict) else None
    return trigger if isinstance(trigger, dict) else {}


def trigger_type(flow: Any) -> Any:
    """The flow's trigger type (None when missing)."""
    return trigger_of(flow).get("type")


def components(flow: Any) -> list[dict[str, Any]]:
    """The flow's components that are objects (malformed entries skipped)."""
    items = flow.get("components") if isinstance(flow, dict) else None
    return [c for c in items if isinstance(c, dict)] if isinstance(items, list) else []


def inputs(holder: Any) -> list[dict[str, Any]]:
    """The ``inputs`` objects of a trigger or component (malformed entries skipped)."""
    items = holder.get("inputs") if isinstance(holder, dict) else None
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []


def flow_definitions(flow: Any) -> list[str]:
    """Definitions of the flow's components (flow logic upper-cased; non-strings as their repr; missing ones skipped)."""
    out = []
    for component in components(flow):
        definition = component.get("definition")
        if definition is None:
            continue
        if not isinstance(definition, str):
            out.append(repr(definition))
        elif component.get("category") == "flowlogic":
            out.append(definition.upper())
        else:
            out.append(definition)
    return out


def flow_tables(flow: Any) -> list[str]:
    """Table names the flow uses: trigger and component inputs named table / task_table / table_name."""
    holders: list[Any] = []
    if isinstance(flow, dict):
        holders.append(flow.get("trigger"))
    holders.extend(components(flow))
    tables = []
    for holder in holders:
        for item in inputs(holder):
            name = item.get("name")
            if isinstance(name, str) and name in TABLE_INPUTS and isinstance(item.get("value"), str) and item["value"]:
                tables.append(item["value"])
    return tables


def vocabulary(flows: Iterable[Any]) -> tuple[set[str], set[str]]:
    """Definitions and tables used by a collection of flows (dicts or JSON strings)."""
    definitions: set[str] = set()
    tables: set[str] = set()
    for flow in flows:
        if isinstance(flow, str):
            try:
                flow = json.loads(flow)
            except json.JSONDecodeError:
                continue
        definitions.update(flow_definitions(flow))
        tables.update(flow_tables(flow))
    return definitions, tables


def flow_depth(flow: Any) -> int:
    """Deepest nesting level of a flow's components (0 = no component, 1 = all top level)."""
    by_order: dict[Any, dict[str, Any]] = {}
    for c in components(flow):
        try:
            by_order[c.get("order")] = c
        except TypeError:  # unhashable order
            continue
    depth = 0
    for c in by_order.values():
        d, seen, cur = 1, set(), c
        while True:
            block = cur.get("block")
            try:
                if block not in by_order or block in seen:
                    break
            except TypeError:
                break
            seen.add(block)
            cur = by_order[block]
            d += 1
        depth = max(depth, d)
    return depth


# --------------------------------------------------------------------------- text

def flow_text(flow: Any) -> str:
    """The one text form of a flow: compact JSON (data files, fine-tuning targets, prompts).

    JSON text is re-serialised compactly; text that is not JSON is returned unchanged.
    """
    if isinstance(flow, str):
        try:
            flow = json.loads(flow)
        except (ValueError, RecursionError):
            return flow
    return json.dumps(flow, ensure_ascii=False, separators=(",", ":"))


def flow_outline(flow: Any) -> str:
    """An indented, human-readable outline of a flow (trigger, then components by nesting)."""
    flow = as_flow_dict(flow)
    problem = limits.value_problem(flow, size=False)
    if problem is not None:
        return f"(no outline: {problem})"
    trig = trigger_of(flow)

    def fmt(holder: Any) -> str:
        return ", ".join(f"{i.get('name')}={i.get('value')}" for i in inputs(holder))

    lines = [f"TRIGGER {trig.get('type')}({fmt(trig)})"]
    children: dict[Any, list[dict[str, Any]]] = {}
    for c in components(flow):
        block = c.get("block")
        children.setdefault(block if isinstance(block, (int, str, type(None))) else repr(block), []).append(c)
    seen: set[Any] = set()
    stack = [(None, iter(children.get(None, [])))]  # (parent order, its remaining children); depth-first
    while stack:
        parent, todo = stack[-1]
        c = next(todo, None)
        if c is None:
            stack.pop()
            continue
        indent = len(stack)
        scope = f" [{c['scope']}]" if c.get("scope") not in (None, "global") else ""
        lines.append(f"{'    ' * indent}{c.get('order')}. {c.get('definition')}{scope}({fmt(c)})")
        order = c.get("order")
        if isinstance(order, (int, str)) and order not in seen and order is not parent:
            seen.add(order)
            stack.append((order, iter(children.get(order, []))))
    return "\n".join(lines)


# --------------------------------------------------------------------------- feature tags

def flow_features(flow: Any) -> set[str]:
    """Structural feature tags of a flow (every tag of :data:`FEATURE_TAGS` except the implicit ones)."""
    flow = as_flow_dict(flow)
    tags: set[str] = set()
    if limits.value_problem(flow, size=False) is not None:
        return tags
    trigger = trigger_of(flow)
    kind = trigger_kind(trigger.get("type"))
    if kind == "record":
        tags.add("record_trigger")
    elif kind == "scheduled":
        tags.add("scheduled_trigger")
    elif trigger.get("type"):
        tags.add("application_trigger")
    comps = components(flow)
    by_order: dict[Any, dict[str, Any]] = {}
    for c in comps:
        order = c.get("order")
        if isinstance(order, (int, str)):
            by_order[order] = c
    if len(comps) >= LONG_FLOW_MIN_COMPONENTS:
        tags.add("long_flow")
    all_inputs = inputs(trigger)
    for c in comps:
        all_inputs.extend(inputs(c))
        if c.get("category") == "flowlogic":
            tags.add("flow_logic")
            block = c.get("block")
            parent = by_order.get(block) if isinstance(block, (int, str)) else None
            if parent is not None and parent.get("category") == "flowlogic":
                tags.add("nested_logic")
        if c.get("category") == "subflow":
            tags.add("subflow")
        if c.get("scope") not in (None, "global"):
            tags.add("spoke")
    for i in all_inputs:
        value = i.get("value")
        if not isinstance(value, str):
            continue
        if "{{" in value:
            tags.add("data_pill")
        if isinstance(i.get("name"), str) and i["name"] in CONDITION_INPUTS and _RICH_QUERY_RE.search(value):
            tags.add("encoded_query")
    return tags
