"""The flow format as a JSON Schema (Draft 2020-12) plus the checks a schema cannot express.

The schema file ships with the package (``wfutils/flows/flow_schema.json``) and holds the shape;
its enumerations (trigger types, categories, flow-logic definitions) are filled from
:mod:`wfutils.flows.vocabulary` when it is loaded, so the vocabulary has one home.
:func:`validate_flow` returns human-readable messages that start with the JSON path of the
offending value. It never raises: a flow beyond the caps of :mod:`wfutils.flows.limits` (JSON
depth ``MAX_JSON_DEPTH``, integer digits ``MAX_INT_DIGITS``, JSON size ``MAX_FLOW_CHARS``,
``MAX_COMPONENTS``) gets one message naming the cap and is not validated further.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from wfutils.flows import limits
from wfutils.flows.vocabulary import BLOCK_DEFINITIONS, COMPONENT_CATEGORIES, FLOW_LOGIC_DEFINITIONS, TRIGGER_TYPES


@lru_cache(maxsize=1)
def _load_schema() -> dict[str, Any]:
    text = resources.files("wfutils.flows").joinpath("flow_schema.json").read_text(encoding="utf-8")
    schema = json.loads(text)
    defs = schema["$defs"]
    defs["trigger"]["properties"]["type"]["enum"] = list(TRIGGER_TYPES)
    defs["component"]["properties"]["category"]["enum"] = list(COMPONENT_CATEGORIES)
    defs["component"]["then"]["properties"]["definition"]["enum"] = list(FLOW_LOGIC_DEFINITIONS)
    return schema


FLOW_SCHEMA: dict[str, Any] = _load_schema()


@lru_cache(maxsize=1)
def _validator() -> Draft202012Validator:
    Draft202012Validator.check_schema(FLOW_SCHEMA)
    return Draft202012Validator(FLOW_SCHEMA)


def _json_path(path: Any) -> str:
    out = "$"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _message(error: ValidationError) -> str:
    where = _json_path(error.absolute_path)
    path = list(error.absolute_path)
    if error.validator == "enum" and path[-2:] == ["trigger", "type"]:
        return f"{where}: unknown trigger type {error.instance!r} (known: {', '.join(TRIGGER_TYPES)})"
    if error.validator == "enum" and path and path[-1] == "definition":
        return (f"{where}: unknown flow-logic definition {error.instance!r} "
                f"(known: {', '.join(FLOW_LOGIC_DEFINITIONS)})")
    if error.validator == "enum" and path and path[-1] == "category":
        return f"{where}: unknown category {error.instance!r} (known: {', '.join(COMPONENT_CATEGORIES)})"
    if error.validator == "additionalProperties":
        return f"{where}: {error.message}"
    return f"{where}: {error.message}"


def _structure_errors(components: list[Any]) -> list[str]:
    """Checks on `order` / `block` that JSON Schema cannot express."""
    errors: list[str] = []
    seen: dict[int, dict[str, Any]] = {}
    previous: int | None = None
    for index, component in enumerate(components):
        if not isinstance(component, dict):
            continue
        order = component.get("order")
        if not isinstance(order, int) or isinstance(order, bool):
            continue
        where = f"$.components[{index}]"
        if order in seen:
            errors.append(f"{where}.order: duplicate order {order}")
        elif previous is not None and order < previous:
            errors.append(f"{where}.order: order {order} is not increasing (previous component has {previous})")
        previous = order if previous is None else max(previous, order)
        if "block" in component:
            block = component["block"]
            parent = seen.get(block) if isinstance(block, int) and not isinstance(block, bool) else None
            if parent is None:
                errors.append(f"{where}.block: block {block!r} does not point at an earlier component's order")
            elif parent.get("category") != "flowlogic" or parent.get("definition") not in BLOCK_DEFINITIONS:
                label = f"{parent.get('category', 'action')}/{parent.get('definition')}"
                errors.append(
                    f"{where}.block: block {block} points at component {label}, which is not a "
                    f"flow-logic block ({', '.join(BLOCK_DEFINITIONS)})"
                )
        seen.setdefault(order, component)
    return errors


def validate_flow(flow: Any) -> list[str]:
    """Validate a parsed flow; return human-readable errors with JSON paths ([] means valid)."""
    if not isinstance(flow, dict):
        return [f"$: a flow must be a JSON object, got {type(flow).__name__}"]
    problem = limits.value_problem(flow)
    if problem is not None:
        return [f"$: {problem}"]
    components = flow.get("components")
    if isinstance(components, list) and len(components) > limits.MAX_COMPONENTS:
        return [f"$.components: too_large: {len(components):,} components, more than {limits.MAX_COMPONENTS:,} (MAX_COMPONENTS)"]
    errors = sorted(_validator().iter_errors(flow), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    messages = [_message(e) for e in errors]
    components = flow.get("components")
    if isinstance(components, list):
        messages.extend(_structure_errors(components))
    return messages


def is_valid_flow(flow: Any) -> bool:
    """True when :func:`validate_flow` finds no problem."""
    return not validate_flow(flow)
