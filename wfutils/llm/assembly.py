"""Decomposed prompting's flow assembly: outline + per-part inputs -> one schema-valid flow.

The decomposed strategy (:mod:`wfutils.llm.strategies`) asks the model for an outline
(trigger type + ordered steps), then for the inputs of each part; this module turns whatever
came back into a flow in code, so the result is schema-valid by construction. Everything
that had to be repaired or dropped is returned as ``notes`` (kept in the trace). It also
supplies what the per-part calls show: the catalogue's input names of a part
(:func:`part_inputs`) and a worked example of the same part from a retrieved flow
(:func:`example_shot`), and reads a part's answer (:func:`parse_part_inputs`).
"""

from __future__ import annotations

import difflib
import json
from typing import Any, Mapping, Sequence

from wfutils.data.catalog import Catalog, load_catalog
from wfutils.flows.parsing import parse_flow
from wfutils.flows.schema import validate_flow
from wfutils.flows.vocabulary import (
    BLOCK_DEFINITIONS,
    FLOW_LOGIC_DEFINITIONS,
    TRIGGER_TYPES,
    as_flow_dict,
    components,
    inputs,
    trigger_of,
)
from wfutils.llm.retrieval import Example
from wfutils.llm.strategies import outline_of

__all__ = ["DEFAULT_TRIGGER", "assemble_flow", "example_shot", "outline_steps", "parse_part_inputs", "part_inputs"]

DEFAULT_TRIGGER = "record_create"


def outline_steps(outline: Any) -> list[Any] | None:
    """The step list of an outline (``components``, or ``steps`` as models sometimes write); None if absent."""
    if not isinstance(outline, dict):
        return None
    steps = outline.get("components", outline.get("steps"))
    return steps if isinstance(steps, list) else None


def _clean_inputs(raw: Any, notes: list[str], where: str) -> list[dict[str, Any]]:
    if isinstance(raw, dict) and "inputs" in raw:
        raw = raw["inputs"]
    if isinstance(raw, dict):  # {"name": "value", ...} shorthand
        raw = [{"name": k, "value": v} for k, v in raw.items()]
    if not isinstance(raw, list):
        notes.append(f"{where}: inputs are not a list; left empty")
        return []
    out: list[dict[str, Any]] = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"].strip():
            notes.append(f"{where}: dropped an input without a name")
            continue
        value = item.get("value")
        if not (value is None or isinstance(value, (str, int, float, bool))):
            value = json.dumps(value, ensure_ascii=False)
            notes.append(f"{where}: input {item['name']!r} value serialised to a string")
        out.append({"name": item["name"].strip(), "value": value})
    return out


def _order_key(value: Any) -> int | str | None:
    """An outline's ``order`` / ``block`` value usable as a key (model output may hold anything)."""
    return value if isinstance(value, (int, str)) and not isinstance(value, bool) else None


def assemble_flow(outline: Any, trigger_inputs: Any = None, step_inputs: Mapping[int, Any] | None = None,
                  *, catalog: Catalog | None = None) -> tuple[dict[str, Any], list[str]]:
    """Build a schema-valid flow from an outline and per-part inputs; return (flow, notes).

    Repairs (each listed in ``notes``): an unknown trigger type becomes the closest known one
    (or ``record_create``); components without a definition are dropped; categories and
    flow-logic names are normalised; orders are renumbered 1..n; a ``block`` that does not
    point at an earlier flow-logic block is removed. ``step_inputs`` is keyed by the
    position (0-based) of each step in the outline's ``components`` list.
    """
    catalog = catalog if catalog is not None else load_catalog()
    notes: list[str] = []
    outline = outline if isinstance(outline, dict) else {}
    trig = outline.get("trigger")
    ttype = trig.get("type") if isinstance(trig, dict) else trig if isinstance(trig, str) else None
    if ttype not in TRIGGER_TYPES:
        close = difflib.get_close_matches(str(ttype or ""), TRIGGER_TYPES, n=1, cutoff=0.6)
        new = close[0] if close else DEFAULT_TRIGGER
        notes.append(f"trigger type {ttype!r} unknown; used {new!r}")
        ttype = new
    trigger: dict[str, Any] = {"type": ttype}
    if trigger_inputs is not None:
        trigger["inputs"] = _clean_inputs(trigger_inputs, notes, "trigger")
    comps_in = outline_steps(outline)
    if comps_in is None:
        notes.append("outline has no components list")
        comps_in = []
    step_inputs = step_inputs or {}
    assembled: list[dict[str, Any]] = []
    renumber: dict[Any, int] = {}
    for index, c in enumerate(comps_in):
        if not isinstance(c, dict) or not isinstance(c.get("definition"), str) or not c["definition"].strip():
            notes.append(f"outline component {index}: no definition; dropped")
            continue
        definition = c["definition"].strip()
        category = c.get("category")
        if definition.upper() in FLOW_LOGIC_DEFINITIONS and (category in (None, "flowlogic") or definition.isupper()):
            category, definition = "flowlogic", definition.upper()
        elif category == "flowlogic":
            notes.append(f"outline component {index}: {definition!r} is not flow logic; category set to action")
            category = "action"
        elif category not in ("action", "subflow"):
            action = catalog.actions.get(definition)
            category = action.category if action is not None else "action"
        order = len(assembled) + 1
        comp: dict[str, Any] = {"order": order}
        block = c.get("block")
        if block is not None:
            # Only components already placed can be a parent: a block pointing at itself or
            # at a later order is removed rather than followed.
            parent_order = renumber.get(_order_key(block))
            parent = assembled[parent_order - 1] if parent_order else None
            if parent is not None and parent.get("category") == "flowlogic" and parent["definition"] in BLOCK_DEFINITIONS:
                comp["block"] = parent_order
            else:
                notes.append(f"outline component {index}: block {block!r} is not an earlier flow-logic block; removed")
        original = _order_key(c.get("order", index + 1))
        if original is not None:
            renumber[original] = order
        comp["category"] = category
        comp["definition"] = definition
        if category != "flowlogic":
            action = catalog.actions.get(definition)
            scope = c.get("scope")
            comp["scope"] = action.scope if action is not None else (scope if isinstance(scope, str) and scope else "global")
        raw = step_inputs.get(index)
        if raw is not None:
            comp["inputs"] = _clean_inputs(raw, notes, f"step {order}")
        assembled.append(comp)
    flow = {"trigger": trigger, "components": assembled}
    errors = validate_flow(flow)
    if errors:  # should not happen; recorded rather than hidden
        notes.extend(f"schema: {e}" for e in errors)
    return flow, notes


def part_inputs(catalog: Catalog, kind: str, definition: str) -> list[str]:
    """The catalogue's input names of a part (``kind`` ``trigger`` or ``step``); optional ones marked."""
    if kind == "trigger":
        t = catalog.triggers.get(definition)
        return [p.name for p in t.inputs] if t else []
    if definition in catalog.flow_logic:
        return [p.name for p in catalog.flow_logic[definition].inputs]
    a = catalog.actions.get(definition)
    return [p.name + ("" if p.required else " (optional)") for p in a.inputs] if a else []


def example_shot(examples: Sequence[Example], kind: str, definition: str) -> tuple[str, str, str, list[dict[str, Any]]] | None:
    """The first retrieved example with the same trigger type / step definition, as (request,
    outline, part, inputs) for a worked turn; None when no example has that part with inputs."""
    for e in examples:
        flow = as_flow_dict(e.flow)
        if not flow:
            continue
        if kind == "trigger":
            trig = trigger_of(flow)
            if trig.get("type") == definition and inputs(trig):
                return e.request, outline_of(flow), f"the trigger ({definition})", inputs(trig)
        else:
            for c in components(flow):
                if c.get("definition") == definition and inputs(c):
                    return e.request, outline_of(flow), f"step {c.get('order')} ({definition})", inputs(c)
    return None


def parse_part_inputs(text: str) -> tuple[Any, str | None]:
    """A part's answer as ``{"inputs": [...]}``, a bare list, or a name->value object; (value, problem)."""
    parsed = parse_flow(text)  # parses any JSON object leniently
    if parsed.flow is not None:
        return parsed.flow, None
    start, end = text.find("["), text.rfind("]")
    if 0 <= start < end:
        try:
            value = json.loads(text[start:end + 1])
        except json.JSONDecodeError:
            value = None
        if isinstance(value, list):
            return value, None
    return None, parsed.status
