"""Prompt strategies of the prompted-LLM arm: a registry of named, versioned templates, and the messages they send.

Strategies (templates live in ``wfutils/llm/prompt_templates/<name>.<version>.txt`` and are
shown verbatim in the book; :func:`template_text` returns them):

``zero_shot``
    instructions + the flow format description, then the request.
``few_shot``
    the same, plus ``k`` fixed training examples (chosen once per training set to cover
    many feature tags, see :func:`fixed_examples`) as user/assistant turns.
``rag_few_shot``
    the same, with the ``k`` training examples most similar to the request and the
    catalogue entries (actions with inputs/outputs, tables with fields) it likely needs,
    retrieved by :class:`wfutils.llm.retrieval.Retriever` (BM25, or the oracle).
``decomposed``
    the paper's two-stage pipeline: one call writes the outline (trigger type + ordered
    steps, no inputs; with retrieved outlines and catalogue), then one call per part
    (trigger, each step) writes its inputs; :mod:`wfutils.llm.assembly` builds the flow.

A strategy is one :func:`register_strategy` call: its templates, whether it shows fixed or
retrieved examples and catalogue entries, and which *pipeline* runs it (``single``: one call;
``decomposed``: outline, then inputs per part; both in :mod:`wfutils.llm.generation`).
Layers: this module knows templates and messages only; :mod:`wfutils.llm.generation` calls
the endpoint for one request, :mod:`wfutils.llm.runner` runs a system over splits,
:mod:`wfutils.llm.arm` runs the whole arm.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from string import Template
from typing import Any, Iterable, Mapping, Sequence

from wfutils.flows.vocabulary import (
    BLOCK_DEFINITIONS,
    FLOW_LOGIC_DEFINITIONS,
    TRIGGER_TYPES,
    as_flow_dict,
    components,
    flow_text,
    trigger_type,
)
from wfutils.llm.retrieval import CatalogContext, Example

__all__ = [
    "PIPELINES",
    "STRATEGIES",
    "Strategy",
    "build_messages",
    "fixed_examples",
    "get_strategy",
    "outline_of",
    "register_strategy",
    "step_messages",
    "template_text",
]

#: How a strategy turns a request into a flow (implemented in :mod:`wfutils.llm.generation`).
PIPELINES = ("single", "decomposed")
EXAMPLE_SOURCES = ("none", "fixed", "retrieved")


@dataclass(frozen=True)
class Strategy:
    """A named, versioned prompt strategy."""

    name: str
    version: str
    templates: tuple[str, ...]
    uses_examples: str  # "none" / "fixed" / "retrieved"
    uses_catalog: bool
    pipeline: str  # one of PIPELINES
    calls: str  # "1" or "2 + steps" (for tables)
    description: str

    def __post_init__(self) -> None:
        if self.uses_examples not in EXAMPLE_SOURCES:
            raise ValueError(f"strategy {self.name!r}: uses_examples must be one of {EXAMPLE_SOURCES}")
        if self.pipeline not in PIPELINES:
            raise ValueError(f"strategy {self.name!r}: pipeline must be one of {PIPELINES}")
        if self.uses_catalog and self.uses_examples != "retrieved":
            raise ValueError(f"strategy {self.name!r}: catalogue entries come with retrieval (uses_examples='retrieved')")

    @property
    def retrieval_modes(self) -> tuple[str, ...]:
        """Retrieval modes this strategy can run with (``none`` when it retrieves nothing)."""
        return ("bm25", "oracle") if self.uses_examples == "retrieved" else ("none",)

    def retrieval(self, mode: str) -> str:
        """The retrieval a system of this strategy uses when the arm asks for ``mode``."""
        if self.uses_examples != "retrieved":
            return "none"
        if mode not in ("bm25", "oracle"):
            raise ValueError(f"strategy {self.name!r} retrieves: retrieval must be 'bm25' or 'oracle', got {mode!r}")
        return mode

    def examples_in_prompt(self, k: int) -> int:
        """How many examples a prompt of this strategy shows for the arm's ``k``."""
        return 0 if self.uses_examples == "none" else int(k)


STRATEGIES: dict[str, Strategy] = {}


def register_strategy(strategy: Strategy, *, replace: bool = False) -> Strategy:
    """Add a strategy to :data:`STRATEGIES` (its templates must exist)."""
    if strategy.name in STRATEGIES and not replace:
        raise ValueError(f"prompt strategy {strategy.name!r} is already registered")
    for name in strategy.templates:
        template_text(name, strategy.version)
    STRATEGIES[strategy.name] = strategy
    return strategy


def get_strategy(name: str | Strategy) -> Strategy:
    """A registered strategy by name (a :class:`Strategy` is returned as is)."""
    if isinstance(name, Strategy):
        return name
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown prompt strategy {name!r}; known: {', '.join(STRATEGIES)}") from None


@lru_cache(maxsize=None)
def template_text(name: str, version: str = "v1") -> str:
    """The raw text of a prompt template (``wfutils/llm/prompt_templates/<name>.<version>.txt``)."""
    resource = resources.files("wfutils.llm").joinpath("prompt_templates", f"{name}.{version}.txt")
    try:
        return resource.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"prompt template wfutils/llm/prompt_templates/{name}.{version}.txt is missing") from None


def fill(name: str, version: str = "v1", **values: Any) -> str:
    """A template with its placeholders filled (the flow vocabulary's ones by default)."""
    defaults = {"trigger_types": ", ".join(TRIGGER_TYPES), "flow_logic": ", ".join(FLOW_LOGIC_DEFINITIONS),
                "block_logic": ", ".join(BLOCK_DEFINITIONS)}
    return Template(template_text(name, version)).substitute({**defaults, **values}).strip("\n")


register_strategy(Strategy("zero_shot", "v1", ("system", "request"), "none", False, "single", "1",
                           "instructions and the flow format, then the request"))
register_strategy(Strategy("few_shot", "v1", ("system", "request"), "fixed", False, "single", "1",
                           "as zero_shot plus k fixed training examples as chat turns"))
register_strategy(Strategy("rag_few_shot", "v1", ("system", "catalog", "request"), "retrieved", True, "single", "1",
                           "as few_shot with the k most similar training examples and retrieved catalogue entries"))
register_strategy(Strategy("decomposed", "v1", ("outline", "catalog", "request", "step_inputs", "step_request"),
                           "retrieved", True, "decomposed", "2 + steps",
                           "outline (trigger + steps) first, then one call per part for its inputs; assembled in code"))


# --------------------------------------------------------------------------- examples
def fixed_examples(train: Iterable[Mapping[str, Any]], k: int = 3, *, pool: int = 200) -> list[Example]:
    """``k`` fixed few-shot examples: greedily the ones adding the most unseen feature tags
    (ties: shorter flow, then id) among the first ``pool`` training rows by id. Deterministic."""
    rows = sorted((dict(r) for r in (train.to_list() if hasattr(train, "to_list") else train)),
                  key=lambda r: str(r["id"]))[:pool]
    chosen: list[dict[str, Any]] = []
    seen: set[str] = set()
    while len(chosen) < min(k, len(rows)):
        def gain(r: dict[str, Any]) -> tuple[int, int, str]:
            return (-len(set(r.get("features") or []) - seen), len(flow_text(r["flow"])), str(r["id"]))
        best = min((r for r in rows if r not in chosen), key=gain)
        chosen.append(best)
        seen |= set(best.get("features") or [])
    return [Example(id=str(r["id"]), request=str(r["request"]), flow=flow_text(r["flow"])) for r in chosen]


def outline_of(flow: Any) -> str:
    """A flow without inputs, as compact JSON (the outline form the decomposed strategy shows and asks for)."""
    data = as_flow_dict(flow)
    if not data:
        return flow if isinstance(flow, str) else flow_text(flow)
    comps = [{k: c[k] for k in ("order", "block", "category", "definition") if k in c} for c in components(data)]
    return flow_text({"trigger": {"type": trigger_type(data)}, "components": comps})


# --------------------------------------------------------------------------- messages
def build_messages(strategy: str | Strategy, request: str, *, examples: Sequence[Example] = (),
                   catalog: CatalogContext | None = None) -> list[dict[str, str]]:
    """Chat messages of a single-call strategy, or of the decomposed strategy's outline call."""
    s = get_strategy(strategy)
    if s.pipeline == "decomposed":
        system = fill("outline", s.version)
        shots = [(e.request, outline_of(e.flow)) for e in examples]
    else:
        system = fill("system", s.version)
        shots = [(e.request, e.flow) for e in examples] if s.uses_examples != "none" else []
    if s.uses_catalog and catalog is not None and (catalog.actions or catalog.tables):
        system += "\n" + fill("catalog", s.version, catalog=catalog.render())
    messages = [{"role": "system", "content": system}]
    for q, a in shots:
        messages.append({"role": "user", "content": fill("request", s.version, request=q)})
        messages.append({"role": "assistant", "content": a})
    messages.append({"role": "user", "content": fill("request", s.version, request=request)})
    return messages


def step_messages(version: str, request: str, outline: dict[str, Any], part: str, known_inputs: Sequence[str],
                  shot: tuple[str, str, str, list[dict[str, Any]]] | None = None) -> list[dict[str, str]]:
    """The decomposed strategy's messages asking for the inputs of one part; ``shot`` = (request,
    outline JSON, part, inputs) of the same part in a retrieved example, shown as a worked turn."""
    known = f" Its inputs: {', '.join(known_inputs)}." if known_inputs else ""
    messages = [{"role": "system", "content": fill("step_inputs", version)}]
    if shot is not None:
        q, o, p, inputs = shot
        messages.append({"role": "user", "content": fill("step_request", version, request=q, outline=o, part=p,
                                                         known_inputs=known, example="")})
        messages.append({"role": "assistant", "content": json.dumps({"inputs": inputs}, ensure_ascii=False)})
    messages.append({"role": "user", "content": fill("step_request", version, request=request,
                                                     outline=flow_text(outline), part=part, known_inputs=known,
                                                     example="")})
    return messages
