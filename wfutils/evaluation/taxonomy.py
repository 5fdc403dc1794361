"""Automatic error taxonomy of generated flows, from the FlowSim edit script and the flows.

:func:`error_tags` gives every example a set of tags (an example with no tag is a perfect
flow). The tags, in :data:`ERROR_TAGS` order:

``invalid_json``
    no JSON object could be recovered from the output (parse status ``invalid`` / ``empty``, or
    ``too_large`` / ``too_deep``: beyond a cap of :mod:`wfutils.flows.limits`); no other tag is
    given, there is nothing to compare.
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
    (``block``) in the prediction and in the reference, or a step was deleted in one place
    and inserted with the same label in another (a moved step).
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
Nothing here raises on model output: a flow beyond the caps is ``invalid_json``, and one whose
FlowSim tree is beyond them (no edit script) is compared by its bags of steps.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from wfutils.flows import limits
from wfutils.flows.flowsim import EditOperation, edit_operations
from wfutils.flows.parsing import UNPARSED_STATUSES
from wfutils.flows.vocabulary import (COMPONENT_CATEGORIES, FLOW_LOGIC_DEFINITIONS, TABLE_INPUTS, TRIGGER_TYPES,
                                      components, flow_definitions, flow_tables, inputs, trigger_type, vocabulary)

ERROR_TAGS: tuple[str, ...] = (
    "invalid_json", "truncated", "wrong_trigger_type", "wrong_trigger_condition", "missing_step",
    "extra_step", "wrong_action", "wrong_flow_logic", "wrong_nesting", "wrong_table",
    "hallucinated_step", "hallucinated_table", "wrong_input_value",
)
#: Tags that describe the model output as a whole rather than a structural mistake.
FORMAT_TAGS = frozenset({"invalid_json", "truncated"})


# --------------------------------------------------------------------------- flow inspection

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


# --------------------------------------------------------------------------- edit-script analysis

def _is_component(label: str | None) -> bool:
    return isinstance(label, str) and label.startswith(COMPONENT_CATEGORIES)  # FlowSim labels: category___definition___scope


def _component_prefix(path: Sequence[str]) -> tuple[str, ...] | None:
    """Path down to the component that owns the node at ``path`` (None when under no component)."""
    for index in range(len(path) - 1, -1, -1):
        if _is_component(path[index]):
            return tuple(path[: index + 1])
    return None


def _ancestor_components(path: Sequence[str]) -> tuple[str, ...]:
    return tuple(label for label in path[:-1] if _is_component(label))


def _owners(operations: Sequence[EditOperation], side: str) -> dict[int, EditOperation]:
    """For each operation on one side (``candidate`` / ``reference``), the operation of its nearest component ancestor.

    The edit script lists each side's nodes in post-order, so a node's descendants are the
    deeper nodes just before it; paths alone are ambiguous (two equal steps have equal paths).
    """
    skip = "insert" if side == "candidate" else "delete"
    owners: dict[int, EditOperation] = {}
    stack: list[tuple[int, EditOperation, list[EditOperation]]] = []
    for op in operations:
        if op.kind == skip:
            continue
        depth = len(op.candidate_path if side == "candidate" else op.reference_path)
        descendants: list[EditOperation] = []
        while stack and stack[-1][0] > depth:
            _, child, below = stack.pop()
            descendants.extend(below)
            descendants.append(child)
        if _is_component(op.candidate if side == "candidate" else op.reference):
            for node in descendants:
                owners.setdefault(id(node), op)
        stack.append((depth, op, descendants))
    return owners


def script_tags(operations: Sequence[EditOperation]) -> set[str]:
    """Tags that follow from the edit script alone (see the module docstring).

    A component deleted on one side and inserted with the same label on the other is a moved
    step (``wrong_nesting``), not a missing plus an extra one.
    """
    tags: set[str] = set()
    owners = {"candidate": _owners(operations, "candidate"), "reference": _owners(operations, "reference")}
    trigger_ok = any(op.kind == "match" and op.candidate in TRIGGER_TYPES and op.candidate_path[:2] == ("flow", "trigger")
                     for op in operations)
    deleted: Counter[str] = Counter()
    inserted: Counter[str] = Counter()
    for op in operations:
        label_c, label_r = op.candidate, op.reference
        if _is_component(label_c) or _is_component(label_r):
            if op.kind == "match":
                if _ancestor_components(op.candidate_path) != _ancestor_components(op.reference_path):
                    tags.add("wrong_nesting")
            elif op.kind == "insert":
                inserted[label_r] += 1
            elif op.kind == "delete":
                deleted[label_c] += 1
            elif label_c.startswith("flowlogic") or label_r.startswith("flowlogic"):
                tags.add("wrong_flow_logic")
            else:
                tags.add("wrong_action")
            continue
        if op.cost == 0:
            continue
        path = op.reference_path if op.kind == "insert" else op.candidate_path
        if len(path) >= 3 and path[1] == "trigger":
            if len(path) == 3:
                tags.add("wrong_trigger_type")
            elif trigger_ok and "inputs" in path and not any(p.split(": ", 1)[0] in TABLE_INPUTS for p in path[3:]):
                tags.add("wrong_trigger_condition")
            continue
        prefix = _component_prefix(path)
        if prefix is None or "inputs" not in path[len(prefix):]:
            continue
        owner = owners["reference" if op.kind == "insert" else "candidate"].get(id(op))
        if owner is None or owner.kind != "match":
            continue  # inputs of a missing, extra or replaced step are not counted again
        if any(p.split(": ", 1)[0] in TABLE_INPUTS for p in path[len(prefix) + 1:len(prefix) + 2]):
            continue  # a table input: reported as wrong_table from the flows
        tags.add("wrong_input_value")
    moved = deleted & inserted
    if moved:
        tags.add("wrong_nesting")
    for label in (inserted - moved):
        tags.add("wrong_flow_logic" if label.startswith("flowlogic") else "missing_step")
    for label in (deleted - moved):
        tags.add("wrong_flow_logic" if label.startswith("flowlogic") else "extra_step")
    return tags


def _bag_tags(flow: Any, reference: Any) -> set[str]:
    """Fallback when no edit script exists (a flow FlowSim cannot turn into a tree): compare step bags."""
    logic = set(FLOW_LOGIC_DEFINITIONS)
    pred, ref = Counter(flow_definitions(flow)), Counter(flow_definitions(reference))
    tags: set[str] = set()
    for name in ref - pred:
        tags.add("wrong_flow_logic" if name in logic else "missing_step")
    for name in pred - ref:
        tags.add("wrong_flow_logic" if name in logic else "extra_step")
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
    if flow is None or parse_status in UNPARSED_STATUSES or limits.value_problem(flow) is not None:
        return ["invalid_json"]
    tags: set[str] = set()
    if parse_status == "truncated":
        tags.add("truncated")
    if flow != reference:
        operations = edit_operations(flow, reference, with_inputs=True)
        tags |= script_tags(operations) if operations else _bag_tags(flow, reference)
        if trigger_type(flow) != trigger_type(reference):
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


def describe_edit_script(operations: Sequence[EditOperation], limit: int | None = 20) -> list[str]:
    """The non-matching steps of an edit script as short lines (``insert``: missing, ``delete``: extra).

    Free structural nodes (``inputs``, ``condition``...) that cost nothing are left out.
    """
    lines = []
    for op in operations:
        if op.kind == "match" or op.cost == 0:
            continue
        if op.kind == "update":
            text = f"relabel {op.candidate!r} -> {op.reference!r}"
            where = op.reference_path[:-1]
        elif op.kind == "insert":
            text = f"missing {op.reference!r}"
            where = op.reference_path[:-1]
        else:
            text = f"extra {op.candidate!r}"
            where = op.candidate_path[:-1]
        lines.append(f"{text} (under {'/'.join(where[1:]) or 'flow'}; cost {op.cost:g})")
    if limit is not None and len(lines) > limit:
        lines = lines[:limit] + [f"... {len(lines) - limit} more"]
    return lines
