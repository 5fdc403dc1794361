"""Automatic error taxonomy of generated flows, from the FlowSim edit script and the flows.

:func:`error_tags` gives every example a set of tags (an example with no tag is a perfect
flow). The tags, in :data:`ERROR_TAGS` order:

``invalid_json``
    no JSON object could be recovered from the output (parse status ``invalid`` / ``empty``);
    no other tag is given, there is nothing to compare.
``truncated``
    the output stopped mid-object (parse status ``truncated``); the repaired flow is still
    analysed for the tags below.
``wrong_trigger_type``
    the trigger type differs from the reference (or one of the two has no trigger).
``wrong_trigger_condition``
    same trigger type, but a trigger input other than the table differs (condition, schedule...).
``missing_step`` / ``extra_step``
    an action or subflow of the reference is absent from the prediction / the prediction has
    one the reference does not (edit script: component node inserted / deleted).
``wrong_action``
    an action or subflow was replaced by another one (edit script: component relabelled).
``wrong_flow_logic``
    a flow-logic component (IF, FOREACH, ...) was inserted, deleted or relabelled.
``wrong_nesting``
    a component matched by the edit script sits under different flow-logic parents
    (``block``) in the prediction and in the reference.
``wrong_table``
    the set of tables the flow touches (trigger and component ``table`` inputs) differs.
``hallucinated_step`` / ``hallucinated_table``
    a component definition / a table that is not in the known vocabulary (the catalogue, plus
    for real corpora the vocabulary of their reference flows); see :func:`hallucinations`.
``wrong_input_value``
    an input of a component that the edit script matched differs (tables excluded: they are
    ``wrong_table``).

The analysis runs on the *repaired* parse (``Prediction.flow``), not on the raw text the
paper's FlowSim scores: a flow with prose around it is analysed as the flow it contains.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any, Iterable, Sequence

from wfutils.flowsim import COMPONENT_PREFIXES, TRIGGER_TYPES, EditOperation, edit_operations

ERROR_TAGS: tuple[str, ...] = (
    "invalid_json", "truncated", "wrong_trigger_type", "wrong_trigger_condition", "missing_step",
    "extra_step", "wrong_action", "wrong_flow_logic", "wrong_nesting", "wrong_table",
    "hallucinated_step", "hallucinated_table", "wrong_input_value",
)
#: Input names that hold a table name.
TABLE_INPUTS = frozenset({"table", "task_table", "table_name"})
#: Tags that describe the model output as a whole rather than a structural mistake.
FORMAT_TAGS = frozenset({"invalid_json", "truncated"})


# --------------------------------------------------------------------------- flow inspection

def _components(flow: Any) -> list[dict[str, Any]]:
    if not isinstance(flow, dict) or not isinstance(flow.get("components"), list):
        return []
    return [c for c in flow["components"] if isinstance(c, dict)]


def _inputs(holder: Any) -> list[dict[str, Any]]:
    if not isinstance(holder, dict) or not isinstance(holder.get("inputs"), list):
        return []
    return [i for i in holder["inputs"] if isinstance(i, dict)]


def flow_definitions(flow: Any) -> list[str]:
    """Definitions of the flow's components (flow logic upper-cased; non-strings as their repr; missing ones skipped)."""
    out = []
    for component in _components(flow):
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
    holders.extend(_components(flow))
    tables = []
    for holder in holders:
        for item in _inputs(holder):
            if item.get("name") in TABLE_INPUTS and isinstance(item.get("value"), str) and item["value"]:
                tables.append(item["value"])
    return tables


def hallucinations(flow: Any, known_definitions: Iterable[str], known_tables: Iterable[str]
                   ) -> tuple[list[str], list[str]]:
    """Definitions and tables of ``flow`` that are not in the known sets (each listed once per use).

    Data pills such as ``{{1.table_name}}`` are not table names and are never counted.
    """
    definitions = set(known_definitions)
    tables = set(known_tables)
    bad_steps = [d for d in flow_definitions(flow) if d not in definitions]
    bad_tables = [t for t in flow_tables(flow) if t not in tables and "{{" not in t]
    return bad_steps, bad_tables


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


def _trigger_type(flow: Any) -> Any:
    trigger = flow.get("trigger") if isinstance(flow, dict) else None
    return trigger.get("type") if isinstance(trigger, dict) else None


# --------------------------------------------------------------------------- edit-script analysis

def _is_component(label: str | None) -> bool:
    return isinstance(label, str) and label.startswith(COMPONENT_PREFIXES)


def _component_prefix(path: Sequence[str]) -> tuple[str, ...] | None:
    """Path down to the component that owns the node at ``path`` (None when under no component)."""
    for index in range(len(path) - 1, -1, -1):
        if _is_component(path[index]):
            return tuple(path[: index + 1])
    return None


def _ancestor_components(path: Sequence[str]) -> tuple[str, ...]:
    return tuple(label for label in path[:-1] if _is_component(label))


def _input_label(op: EditOperation) -> str:
    return (op.candidate if op.kind == "delete" else op.reference) or op.candidate or ""


def script_tags(operations: Sequence[EditOperation]) -> set[str]:
    """Tags that follow from the edit script alone (see the module docstring)."""
    tags: set[str] = set()
    matched_cand = {op.candidate_path for op in operations if op.kind == "match" and _is_component(op.candidate)}
    matched_ref = {op.reference_path for op in operations if op.kind == "match" and _is_component(op.reference)}
    trigger_ok = any(op.kind == "match" and op.candidate in TRIGGER_TYPES and op.candidate_path[:2] == ("flow", "trigger")
                     for op in operations)
    for op in operations:
        label_c, label_r = op.candidate, op.reference
        if _is_component(label_c) or _is_component(label_r):
            logic = any(isinstance(x, str) and x.startswith("flowlogic") for x in (label_c, label_r))
            if op.kind == "match":
                if _ancestor_components(op.candidate_path) != _ancestor_components(op.reference_path):
                    tags.add("wrong_nesting")
            elif logic:
                tags.add("wrong_flow_logic")
            elif op.kind == "insert":
                tags.add("missing_step")
            elif op.kind == "delete":
                tags.add("extra_step")
            else:
                tags.add("wrong_action")
            continue
        if op.cost == 0:
            continue
        path = op.reference_path if op.kind == "insert" else op.candidate_path
        if len(path) >= 3 and path[1] == "trigger":
            if len(path) == 3 or (op.kind == "update" and (label_c in TRIGGER_TYPES or label_r in TRIGGER_TYPES)):
                tags.add("wrong_trigger_type")
            elif trigger_ok and "inputs" in path and not any(p.split(": ", 1)[0] in TABLE_INPUTS for p in path[3:]):
                tags.add("wrong_trigger_condition")
            continue
        prefix = _component_prefix(path)
        if prefix is None or "inputs" not in path[len(prefix):]:
            continue
        owner_matched = prefix in (matched_ref if op.kind == "insert" else matched_cand)
        if not owner_matched:
            continue
        below = path[len(prefix):]
        if any(p.split(": ", 1)[0] in TABLE_INPUTS for p in below[1:2]):
            continue  # a table input: reported as wrong_table from the flows
        tags.add("wrong_input_value")
    return tags


def error_tags(flow: Any, reference: Any, parse_status: str = "ok", *,
               known_definitions: Iterable[str] | None = None,
               known_tables: Iterable[str] | None = None) -> list[str]:
    """Error tags of one prediction (its repaired ``flow``, None if unparseable) against the reference flow.

    ``reference`` is a flow dict or its JSON text. Without ``known_definitions`` /
    ``known_tables`` the hallucination tags are not computed.
    """
    if isinstance(reference, str):
        reference = json.loads(reference)
    if flow is None or parse_status in ("invalid", "empty"):
        return ["invalid_json"]
    tags: set[str] = set()
    if parse_status == "truncated":
        tags.add("truncated")
    if flow != reference:
        tags |= script_tags(edit_operations(flow, reference, with_inputs=True))
        if _trigger_type(flow) != _trigger_type(reference):
            tags.add("wrong_trigger_type")
            tags.discard("wrong_trigger_condition")
        if Counter(flow_tables(flow)) != Counter(flow_tables(reference)):
            tags.add("wrong_table")
    if known_definitions is not None or known_tables is not None:
        steps, tables = hallucinations(flow, known_definitions or (), known_tables or ())
        if steps and known_definitions is not None:
            tags.add("hallucinated_step")
        if tables and known_tables is not None:
            tags.add("hallucinated_table")
    return [tag for tag in ERROR_TAGS if tag in tags]
