"""The ServiceNow-style domain that the synthetic generator and the retrievers draw from.

The catalogue ships as JSON data files inside the package (``wfutils/data/catalog_data/``):

``actions.json``
    actions and subflows: ``name`` (the flow ``definition``), ``label``, ``category``
    (action / subflow), ``scope`` (``global`` or a spoke scope such as ``sn_slack_ah_v2``),
    ``description``, typed ``inputs`` (name, type, required, reference?) and ``outputs``.
``tables.json``
    tables with ``fields`` (name, label, type, reference?, choices?), natural-language
    ``plural`` / ``synonyms``, ``adjectives`` (encoded query -> words that imply it, e.g.
    ``priority=1`` -> "critical"), and ``people`` (user/group reference fields -> how a
    request names them, e.g. ``caller_id`` -> "caller").
``triggers.json``
    every trigger type of SPEC section 2 with its inputs and outputs (data pills).
``flow_logic.json``
    IF / ELSEIF / ELSE / FOREACH / DOUNTIL / PARALLEL / TRYCATCH / END / WAITFORDURATION /
    SETFLOWVARIABLES with their inputs.
``holdout.json``
    the tables and actions held out of the synthetic train and test splits; the ``ood``
    split is built from them (see :data:`Catalog.holdout_tables`, :data:`Catalog.holdout_actions`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from collections.abc import Iterable
from typing import Any

from wfutils.flows.vocabulary import (FLOW_LOGIC_DEFINITIONS, TABLE_INPUTS, TRIGGER_TYPES, as_flow_dict, components,
                                      flow_tables, inputs)

CATALOG_FILES = ("actions.json", "tables.json", "triggers.json", "flow_logic.json", "holdout.json")


@dataclass(frozen=True)
class Param:
    """A typed input or output of an action, trigger or flow-logic block."""

    name: str
    type: str = "string"
    required: bool = True
    reference: str | None = None


@dataclass(frozen=True)
class Action:
    """An action or subflow; ``name`` is what a flow component uses as ``definition``."""

    name: str
    label: str
    category: str
    scope: str
    description: str
    inputs: tuple[Param, ...]
    outputs: tuple[Param, ...]
    tags: tuple[str, ...] = ()

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.inputs)


@dataclass(frozen=True)
class Field:
    """A table column; ``choices`` maps stored values to display labels."""

    name: str
    label: str
    type: str
    reference: str | None = None
    choices: dict[str, str] | None = None


@dataclass(frozen=True)
class Table:
    """A table with realistic fields and the words requests use for it."""

    name: str
    label: str
    plural: str
    synonyms: tuple[str, ...]
    domain: str
    display_field: str
    fields: tuple[Field, ...]
    adjectives: dict[str, tuple[str, ...]]
    people: dict[str, tuple[str, ...]]

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"table {self.name!r} has no field {name!r}")

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)


@dataclass(frozen=True)
class Trigger:
    """A trigger type of the flow format (SPEC section 2)."""

    type: str
    kind: str
    label: str
    inputs: tuple[Param, ...]
    outputs: tuple[Param, ...]


@dataclass(frozen=True)
class FlowLogic:
    """A flow-logic definition (upper case, as in the flow format)."""

    name: str
    label: str
    opens_block: bool
    inputs: tuple[Param, ...]
    description: str


@dataclass(frozen=True)
class Catalog:
    """The whole domain: look-ups by name plus the train / ood hold-out split."""

    actions: dict[str, Action]
    tables: dict[str, Table]
    triggers: dict[str, Trigger]
    flow_logic: dict[str, FlowLogic]
    holdout_tables: frozenset[str]
    holdout_actions: frozenset[str]
    notes: dict[str, Any] = field(default_factory=dict)

    def action(self, name: str) -> Action:
        try:
            return self.actions[name]
        except KeyError:
            raise KeyError(f"unknown action {name!r}; the catalogue has {len(self.actions)} actions") from None

    def table(self, name: str) -> Table:
        try:
            return self.tables[name]
        except KeyError:
            raise KeyError(f"unknown table {name!r}; the catalogue has {len(self.tables)} tables") from None

    @property
    def definitions(self) -> frozenset[str]:
        """Every definition a component may use (actions, subflows, flow logic)."""
        return frozenset(self.actions) | frozenset(self.flow_logic)

    def in_distribution_tables(self) -> list[str]:
        return [t for t in self.tables if t not in self.holdout_tables]

    def in_distribution_actions(self) -> list[str]:
        return [a for a in self.actions if a not in self.holdout_actions]


def _params(items: list[dict[str, Any]] | None) -> tuple[Param, ...]:
    return tuple(Param(name=p["name"], type=p.get("type", "string"), required=p.get("required", True),
                       reference=p.get("reference")) for p in items or [])


def _read_json(name: str) -> Any:
    resource = resources.files("wfutils.data").joinpath("catalog_data", name)
    try:
        return json.loads(resource.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"catalogue file wfutils/data/catalog_data/{name} is missing from the package") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"catalogue file wfutils/data/catalog_data/{name} is not valid JSON: {exc}") from None


def _check(catalog: Catalog) -> None:
    problems: list[str] = []
    for name in catalog.holdout_tables - set(catalog.tables):
        problems.append(f"holdout.json: table {name!r} is not in tables.json")
    for name in catalog.holdout_actions - set(catalog.actions):
        problems.append(f"holdout.json: action {name!r} is not in actions.json")
    for t in set(TRIGGER_TYPES) ^ set(catalog.triggers):
        problems.append(f"triggers.json: trigger type {t!r} differs from wfutils.flows.vocabulary.TRIGGER_TYPES")
    for d in set(catalog.flow_logic) - set(FLOW_LOGIC_DEFINITIONS):
        problems.append(f"flow_logic.json: {d!r} is not in wfutils.flows.vocabulary.FLOW_LOGIC_DEFINITIONS")
    for a in catalog.actions.values():
        if a.category not in ("action", "subflow"):
            problems.append(f"actions.json: {a.name!r} has category {a.category!r}")
    for t in catalog.tables.values():
        names = set(t.field_names)
        for key in t.people:
            if key not in names:
                problems.append(f"tables.json: {t.name}.people names unknown field {key!r}")
    if problems:
        raise ValueError("inconsistent catalogue:\n" + "\n".join(problems))


@lru_cache(maxsize=1)
def load_catalog() -> Catalog:
    """Load (once) and cross-check the catalogue shipped in ``wfutils/data/catalog_data``."""
    actions = {a["name"]: Action(name=a["name"], label=a["label"], category=a.get("category", "action"),
                                 scope=a.get("scope", "global"), description=a.get("description", ""),
                                 inputs=_params(a.get("inputs")), outputs=_params(a.get("outputs")),
                                 tags=tuple(a.get("tags", ())))
               for a in _read_json("actions.json")}
    tables = {}
    for t in _read_json("tables.json"):
        fields = tuple(Field(name=f["name"], label=f["label"], type=f["type"], reference=f.get("reference"),
                             choices=f.get("choices")) for f in t["fields"])
        tables[t["name"]] = Table(name=t["name"], label=t["label"], plural=t["plural"],
                                  synonyms=tuple(t.get("synonyms", ())), domain=t.get("domain", ""),
                                  display_field=t.get("display_field", "short_description"), fields=fields,
                                  adjectives={k: tuple(v) for k, v in t.get("adjectives", {}).items()},
                                  people={k: tuple(v) for k, v in t.get("people", {}).items()})
    triggers = {t["type"]: Trigger(type=t["type"], kind=t["kind"], label=t["label"], inputs=_params(t.get("inputs")),
                                   outputs=_params(t.get("outputs")))
                for t in _read_json("triggers.json")}
    logic = {f["name"]: FlowLogic(name=f["name"], label=f["label"], opens_block=f["opens_block"],
                                  inputs=_params(f.get("inputs")), description=f.get("description", ""))
             for f in _read_json("flow_logic.json")}
    holdout = _read_json("holdout.json")
    catalog = Catalog(actions=actions, tables=tables, triggers=triggers, flow_logic=logic,
                      holdout_tables=frozenset(holdout["tables"]), holdout_actions=frozenset(holdout["actions"]),
                      notes={"holdout": holdout.get("description", ""),
                             "source": "the ServiceNow-style catalogue shipped with wfbook"})
    _check(catalog)
    return catalog


def catalog_from_flows(flows: Iterable[Any], *, source: str) -> Catalog:
    """The catalogue a corpus implies: every action / subflow and table its flows use, with the inputs seen.

    For a training corpus other than the synthetic one, this takes the place of the ServiceNow
    catalogue (retrieval of catalogue entries, decomposed prompting, "hallucinated" steps and
    tables). Triggers and flow logic are those of the flow format. ``source`` says where the
    entries come from (kept in ``notes["source"]``).
    """
    base = load_catalog()
    seen_inputs: dict[str, dict[str, None]] = {}
    kinds: dict[str, tuple[str, str]] = {}
    table_fields: dict[str, dict[str, None]] = {}
    for flow in flows:
        flow = as_flow_dict(flow)
        for comp in components(flow):
            definition, category = comp.get("definition"), comp.get("category")
            if not isinstance(definition, str) or not definition or category not in ("action", "subflow"):
                continue
            scope = comp.get("scope") if isinstance(comp.get("scope"), str) else "global"
            kinds.setdefault(definition, (category, scope))
            names = seen_inputs.setdefault(definition, {})
            for item in inputs(comp):
                if isinstance(item.get("name"), str) and item["name"] not in TABLE_INPUTS:
                    names.setdefault(item["name"])
        for table in flow_tables(flow):
            if "{{" not in table:
                table_fields.setdefault(table, {})
    actions = {name: Action(name=name, label=name.replace("_", " "), category=category, scope=scope,
                            description=f"seen in {source}",
                            inputs=tuple(Param(name=i, required=False) for i in seen_inputs[name]), outputs=())
               for name, (category, scope) in sorted(kinds.items())}
    tables = {name: Table(name=name, label=name.replace("_", " "), plural=name, synonyms=(), domain=source,
                          display_field="name", fields=(), adjectives={}, people={})
              for name in sorted(table_fields)}
    return Catalog(actions=actions, tables=tables, triggers=base.triggers, flow_logic=base.flow_logic,
                   holdout_tables=frozenset(), holdout_actions=frozenset(), notes={"source": source})


def catalog_as_text(catalog: Catalog | None = None, *, include_holdout: bool = True) -> str:
    """A compact plain-text listing of actions, tables and triggers (for prompts and retrieval)."""
    cat = catalog or load_catalog()
    lines = ["Triggers: " + ", ".join(cat.triggers), "Flow logic: " + ", ".join(cat.flow_logic), "Actions:"]
    for a in cat.actions.values():
        if not include_holdout and a.name in cat.holdout_actions:
            continue
        ins = ", ".join(p.name for p in a.inputs)
        outs = ", ".join(p.name for p in a.outputs)
        lines.append(f"- {a.name} [{a.category}, scope {a.scope}] ({ins}) -> ({outs}): {a.description}")
    lines.append("Tables:")
    for t in cat.tables.values():
        if not include_holdout and t.name in cat.holdout_tables:
            continue
        lines.append(f"- {t.name} ({t.label}): " + ", ".join(f.name for f in t.fields))
    return "\n".join(lines)
