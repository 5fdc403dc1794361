"""One strategy on one request: the endpoint calls of a strategy's pipeline and what they produced.

:func:`generate` sends the messages of :mod:`wfutils.llm.strategies` through an
:class:`wfutils.llm.client.LLMClient` and returns a :class:`Generation` (output text, tokens,
latency, cost, calls, cache hits, error, notes). Pipelines:

``single``
    one call; the output is the model's text.
``decomposed``
    one call for the outline; when it parses, one call per part (trigger, each step) for its
    inputs, then :func:`wfutils.llm.assembly.assemble_flow` builds the flow (schema-valid by
    construction). An outline that does not parse is kept as raw text (and scored as such).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from wfutils.data.catalog import Catalog, load_catalog
from wfutils.flows.parsing import parse_flow
from wfutils.flows.schema import FLOW_SCHEMA
from wfutils.flows.vocabulary import flow_text
from wfutils.llm.assembly import assemble_flow, example_shot, outline_steps, parse_part_inputs, part_inputs
from wfutils.llm.client import ChatResult, LLMClient
from wfutils.llm.config import Decoding
from wfutils.llm.retrieval import CatalogContext, Example
from wfutils.llm.strategies import Strategy, build_messages, get_strategy, step_messages

__all__ = ["Generation", "generate"]


@dataclass
class Generation:
    """The outcome of one strategy on one request (possibly several calls)."""

    output: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0  # sum over the calls (sequential)
    cost_usd: float | None = 0.0
    calls: int = 0
    cache_hits: int = 0
    attempts: int = 0  # HTTP attempts, retries included
    error: str | None = None
    error_kind: str | None = None
    notes: list[str] = field(default_factory=list)
    raw_outputs: list[str] = field(default_factory=list)
    retrieved_ids: list[str] = field(default_factory=list)

    def add(self, result: ChatResult) -> None:
        self.calls += 1
        self.cache_hits += int(result.cached)
        self.attempts += result.attempts
        self.prompt_tokens += result.prompt_tokens
        self.completion_tokens += result.completion_tokens
        self.latency_s += result.latency_s
        if result.cost_usd is None or self.cost_usd is None:
            self.cost_usd = None
        else:
            self.cost_usd += result.cost_usd
        self.raw_outputs.append(result.text)
        if result.error and self.error is None:
            self.error, self.error_kind = result.error, result.error_kind


def _single(client: LLMClient, s: Strategy, request: str, gen: Generation, *, examples: Sequence[Example],
            catalog_context: CatalogContext | None, catalog: Catalog | None, decoding: Decoding,
            refresh: bool | None) -> None:
    messages = build_messages(s, request, examples=examples, catalog=catalog_context)
    result = client.chat(messages, temperature=decoding.temperature, max_tokens=decoding.max_tokens,
                         json_mode=decoding.json_mode,
                         json_schema=FLOW_SCHEMA if decoding.json_mode == "schema" else None, refresh=refresh)
    gen.add(result)
    gen.output = result.text


def _decomposed(client: LLMClient, s: Strategy, request: str, gen: Generation, *, examples: Sequence[Example],
                catalog_context: CatalogContext | None, catalog: Catalog | None, decoding: Decoding,
                refresh: bool | None) -> None:
    catalog = catalog if catalog is not None else load_catalog()
    part_mode = "none" if decoding.json_mode == "none" else "object"  # outline and parts are not flows: no flow schema
    result = client.chat(build_messages(s, request, examples=examples, catalog=catalog_context),
                         temperature=decoding.temperature, max_tokens=decoding.max_tokens, json_mode=part_mode,
                         refresh=refresh)
    gen.add(result)
    if result.error:
        return
    parsed = parse_flow(result.text)
    outline = parsed.flow
    steps = outline_steps(outline)
    if steps is None:
        gen.notes.append(f"outline did not parse ({parsed.status}: {parsed.message}); raw outline kept as output")
        gen.output = result.text
        return
    if parsed.status != "ok":
        gen.notes.append(f"outline {parsed.status}: {parsed.message}")
    skeleton, _ = assemble_flow(outline, catalog=catalog)  # the outline as the model will see it
    trigger = skeleton["trigger"]["type"]
    parts: list[tuple[str, str, int, str]] = [("trigger", trigger, -1, f"the trigger ({trigger})")]
    valid = [idx for idx, c in enumerate(steps)
             if isinstance(c, dict) and isinstance(c.get("definition"), str) and c["definition"].strip()]
    for idx, sk in zip(valid, skeleton["components"]):
        parts.append(("step", sk["definition"], idx, f"step {sk['order']} ({sk['definition']})"))
    trigger_inputs: Any = None
    step_inputs: dict[int, Any] = {}
    for kind, definition, key, label in parts:
        messages = step_messages(s.version, request, skeleton, label, part_inputs(catalog, kind, definition),
                                 example_shot(examples, kind, definition))
        r = client.chat(messages, temperature=decoding.temperature, max_tokens=decoding.step_max_tokens,
                        json_mode=part_mode, refresh=refresh)
        gen.add(r)
        if r.error:
            return
        value, problem = parse_part_inputs(r.text)
        if value is None:
            gen.notes.append(f"inputs of {label} did not parse ({problem}); left empty")
            value = []
        if kind == "trigger":
            trigger_inputs = value
        else:
            step_inputs[key] = value
    flow, notes = assemble_flow(outline, trigger_inputs, step_inputs, catalog=catalog)
    gen.notes.extend(notes)
    gen.output = flow_text(flow)


_PIPELINES: dict[str, Callable[..., None]] = {"single": _single, "decomposed": _decomposed}


def generate(
    client: LLMClient,
    strategy: str | Strategy,
    request: str,
    *,
    examples: Sequence[Example] = (),
    catalog_context: CatalogContext | None = None,
    catalog: Catalog | None = None,
    decoding: Decoding = Decoding(),
    refresh: bool | None = None,
) -> Generation:
    """Run ``strategy`` for one request with the given examples / catalogue context, decoding as ``decoding`` says.

    ``refresh=True`` skips response-cache reads for these calls (None: the client's setting).
    """
    s = get_strategy(strategy)
    gen = Generation(retrieved_ids=[e.id for e in examples])
    _PIPELINES[s.pipeline](client, s, request, gen, examples=examples, catalog_context=catalog_context,
                           catalog=catalog, decoding=decoding, refresh=refresh)
    return gen
