"""Prompt strategies of the prompted-LLM arm, as named, versioned templates.

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
    (trigger, each step) writes its inputs. The final flow is assembled in code, so it is
    schema-valid by construction; anything that had to be repaired or dropped is listed in
    the trace (``notes``). An outline that does not parse is passed through as raw text
    (and scored as such).

:func:`generate` runs one strategy for one request; :func:`run_system` runs it over a split
with bounded concurrency and writes ``<run_dir>/predictions/<system>.jsonl`` (the schema of
:mod:`wfutils.data.predictions`, shared with the fine-tuned arm) plus a trace per example under
``<run_dir>/llm/traces/<system>.jsonl``.
"""

from __future__ import annotations

import difflib
import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any, Iterable, Mapping, Sequence

from wfutils.data.catalog import Catalog, load_catalog
from wfutils.data.store import parse_eval_splits
from wfutils.llm.client import ChatResult, LLMClient
from wfutils.flows.parsing import dumps_flow, parse_flow
from wfutils.data.predictions import Prediction, PredictionWriter, predictions_path
from wfutils.llm.retrieval import CatalogContext, Example, Retrieval, Retriever
from wfutils.flows.schema import BLOCK_DEFINITIONS, FLOW_LOGIC_DEFINITIONS, FLOW_SCHEMA, TRIGGER_TYPES, validate_flow

__all__ = [
    "STRATEGIES",
    "Generation",
    "Strategy",
    "assemble_flow",
    "build_messages",
    "fixed_examples",
    "generate",
    "run_arm",
    "run_system",
    "system_name",
    "template_text",
]

#: Errors after which no prediction is written (a rerun retries the example).
TRANSIENT_ERRORS = frozenset({"unreachable", "timeout", "rate_limit", "server_error", "auth", "unknown_model", "error"})
DEFAULT_TRIGGER = "record_create"


@dataclass(frozen=True)
class Strategy:
    """A named, versioned prompt strategy."""

    name: str
    version: str
    templates: tuple[str, ...]
    uses_examples: str  # "none" / "fixed" / "retrieved"
    uses_catalog: bool
    calls: str  # "1" or "2 + steps"
    description: str


STRATEGIES: dict[str, Strategy] = {
    "zero_shot": Strategy("zero_shot", "v1", ("system", "request"), "none", False, "1",
                          "instructions and the flow format, then the request"),
    "few_shot": Strategy("few_shot", "v1", ("system", "request"), "fixed", False, "1",
                         "as zero_shot plus k fixed training examples as chat turns"),
    "rag_few_shot": Strategy("rag_few_shot", "v1", ("system", "catalog", "request"), "retrieved", True, "1",
                             "as few_shot with the k most similar training examples and retrieved catalogue entries"),
    "decomposed": Strategy("decomposed", "v1", ("outline", "catalog", "request", "step_inputs", "step_request"),
                           "retrieved", True, "2 + steps",
                           "outline (trigger + steps) first, then one call per part for its inputs; assembled in code"),
}


def _strategy(name: str | Strategy) -> Strategy:
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


def _fill(name: str, version: str = "v1", **values: Any) -> str:
    defaults = {"trigger_types": ", ".join(TRIGGER_TYPES), "flow_logic": ", ".join(FLOW_LOGIC_DEFINITIONS)}
    return Template(template_text(name, version)).substitute({**defaults, **values}).strip("\n")


def system_name(model: str, strategy: str, retrieval: str = "bm25") -> str:
    """Predictions-file system name: ``<model>-<strategy>`` slugified (``-oracle`` for oracle retrieval)."""
    base = str(model).rstrip("/").split("/")[-1]
    text = f"{base}-{strategy}" + ("-oracle" if retrieval == "oracle" else "")
    slug = re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-")
    return slug or "llm"


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
            flow = r["flow"] if isinstance(r["flow"], str) else dumps_flow(r["flow"])
            return (-len(set(r.get("features") or []) - seen), len(flow), str(r["id"]))
        best = min((r for r in rows if r not in chosen), key=gain)
        chosen.append(best)
        seen |= set(best.get("features") or [])
    return [Example(id=str(r["id"]), request=str(r["request"]),
                    flow=r["flow"] if isinstance(r["flow"], str) else dumps_flow(r["flow"])) for r in chosen]


def _outline_of(flow_text: str) -> str:
    """A flow without inputs (the outline form shown to the decomposed strategy)."""
    try:
        flow = json.loads(flow_text)
    except (TypeError, json.JSONDecodeError):
        return flow_text
    trigger = {"type": (flow.get("trigger") or {}).get("type")}
    comps = []
    for c in flow.get("components") or []:
        comps.append({k: c[k] for k in ("order", "block", "category", "definition") if k in c})
    return dumps_flow({"trigger": trigger, "components": comps})


# --------------------------------------------------------------------------- messages
def build_messages(strategy: str | Strategy, request: str, *, examples: Sequence[Example] = (),
                   catalog: CatalogContext | None = None) -> list[dict[str, str]]:
    """Chat messages of a single-call strategy, or of the decomposed strategy's outline call."""
    s = _strategy(strategy)
    if s.name == "decomposed":
        system = _fill("outline", s.version)
        shots = [(e.request, _outline_of(e.flow)) for e in examples]
    else:
        system = _fill("system", s.version)
        shots = [(e.request, e.flow) for e in examples] if s.uses_examples != "none" else []
    if s.uses_catalog and catalog is not None and (catalog.actions or catalog.tables):
        system += "\n" + _fill("catalog", s.version, catalog=catalog.render())
    messages = [{"role": "system", "content": system}]
    for q, a in shots:
        messages.append({"role": "user", "content": _fill("request", s.version, request=q)})
        messages.append({"role": "assistant", "content": a})
    messages.append({"role": "user", "content": _fill("request", s.version, request=request)})
    return messages


def _step_messages(version: str, request: str, outline: dict[str, Any], part: str, known_inputs: Sequence[str],
                   shot: tuple[str, str, str, list[dict[str, Any]]] | None = None) -> list[dict[str, str]]:
    """Messages asking for the inputs of one part; ``shot`` = (request, outline JSON, part, inputs)
    of the same part in a retrieved example, shown as a worked user/assistant turn."""
    known = f" Its inputs: {', '.join(known_inputs)}." if known_inputs else ""
    messages = [{"role": "system", "content": _fill("step_inputs", version)}]
    if shot is not None:
        q, o, p, inputs = shot
        messages.append({"role": "user", "content": _fill("step_request", version, request=q, outline=o, part=p,
                                                          known_inputs=known, example="")})
        messages.append({"role": "assistant", "content": json.dumps({"inputs": inputs}, ensure_ascii=False)})
    messages.append({"role": "user", "content": _fill("step_request", version, request=request,
                                                      outline=dumps_flow(outline), part=part, known_inputs=known,
                                                      example="")})
    return messages


# --------------------------------------------------------------------------- assembly
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
    comps_in = outline.get("components", outline.get("steps"))
    if not isinstance(comps_in, list):
        notes.append("outline has no components list")
        comps_in = []
    step_inputs = step_inputs or {}
    components: list[dict[str, Any]] = []
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
        order = len(components) + 1
        comp: dict[str, Any] = {"order": order}
        block = c.get("block")
        if block is not None:
            # Only components already placed can be a parent: a block pointing at itself or
            # at a later order is removed rather than followed.
            parent_order = renumber.get(_order_key(block))
            parent = components[parent_order - 1] if parent_order else None
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
            comp["scope"] = action.scope if action is not None else (c.get("scope") if isinstance(c.get("scope"), str) and c.get("scope") else "global")
        raw = step_inputs.get(index)
        if raw is not None:
            comp["inputs"] = _clean_inputs(raw, notes, f"step {order}")
        components.append(comp)
    flow = {"trigger": trigger, "components": components}
    errors = validate_flow(flow)
    if errors:  # should not happen; recorded rather than hidden
        notes.extend(f"schema: {e}" for e in errors)
    return flow, notes


def _part_inputs(catalog: Catalog, kind: str, definition: str) -> list[str]:
    if kind == "trigger":
        t = catalog.triggers.get(definition)
        return [p.name for p in t.inputs] if t else []
    if definition in catalog.flow_logic:
        return [p.name for p in catalog.flow_logic[definition].inputs]
    a = catalog.actions.get(definition)
    return [p.name + ("" if p.required else " (optional)") for p in a.inputs] if a else []


def _example_shot(examples: Sequence[Example], kind: str, definition: str) -> tuple[str, str, str, list[dict[str, Any]]] | None:
    """The first retrieved example with the same trigger type / step definition, as a worked turn."""
    for e in examples:
        try:
            flow = json.loads(e.flow)
        except (TypeError, json.JSONDecodeError):
            continue
        if kind == "trigger":
            trig = flow.get("trigger") or {}
            if trig.get("type") == definition and trig.get("inputs"):
                return e.request, _outline_of(e.flow), f"the trigger ({definition})", trig["inputs"]
        else:
            for c in flow.get("components") or []:
                if c.get("definition") == definition and c.get("inputs"):
                    return e.request, _outline_of(e.flow), f"step {c.get('order')} ({definition})", c["inputs"]
    return None


# --------------------------------------------------------------------------- generation
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
    error: str | None = None
    error_kind: str | None = None
    notes: list[str] = field(default_factory=list)
    raw_outputs: list[str] = field(default_factory=list)
    retrieved_ids: list[str] = field(default_factory=list)

    def add(self, result: ChatResult) -> None:
        self.calls += 1
        self.cache_hits += int(result.cached)
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


def _json_schema_for(mode: str) -> dict[str, Any] | None:
    return FLOW_SCHEMA if mode == "schema" else None


def generate(
    client: LLMClient,
    strategy: str | Strategy,
    request: str,
    *,
    examples: Sequence[Example] = (),
    catalog_context: CatalogContext | None = None,
    catalog: Catalog | None = None,
    temperature: float = 0.0,
    max_tokens: int = 512,
    step_max_tokens: int = 128,
    json_mode: str = "none",
) -> Generation:
    """Run ``strategy`` for one request with the given examples / catalogue context."""
    s = _strategy(strategy)
    gen = Generation(retrieved_ids=[e.id for e in examples])
    if s.name != "decomposed":
        messages = build_messages(s, request, examples=examples, catalog=catalog_context)
        result = client.chat(messages, temperature=temperature, max_tokens=max_tokens, json_mode=json_mode,
                             json_schema=_json_schema_for(json_mode))
        gen.add(result)
        gen.output = result.text
        return gen

    catalog = catalog if catalog is not None else load_catalog()
    outline_mode = "none" if json_mode == "none" else "object"
    result = client.chat(build_messages(s, request, examples=examples, catalog=catalog_context),
                         temperature=temperature, max_tokens=max_tokens, json_mode=outline_mode)
    gen.add(result)
    if result.error:
        return gen
    parsed = parse_flow(result.text)
    outline = parsed.flow
    if outline is None or not isinstance(outline.get("components", outline.get("steps")), list):
        gen.notes.append(f"outline did not parse ({parsed.status}: {parsed.message}); raw outline kept as output")
        gen.output = result.text
        return gen
    if parsed.status != "ok":
        gen.notes.append(f"outline {parsed.status}: {parsed.message}")
    skeleton, _ = assemble_flow(outline, catalog=catalog)  # the outline as the model will see it
    shown = {"trigger": skeleton["trigger"], "components": skeleton["components"]}
    parts: list[tuple[str, str, int, str]] = [("trigger", skeleton["trigger"]["type"], -1, f"the trigger ({skeleton['trigger']['type']})")]
    valid = [idx for idx, c in enumerate(outline.get("components", outline.get("steps")))
             if isinstance(c, dict) and isinstance(c.get("definition"), str) and c["definition"].strip()]
    for idx, sk in zip(valid, skeleton["components"]):
        parts.append(("step", sk["definition"], idx, f"step {sk['order']} ({sk['definition']})"))
    trigger_inputs: Any = None
    step_inputs: dict[int, Any] = {}
    for kind, definition, key, label in parts:
        messages = _step_messages(s.version, request, shown, label, _part_inputs(catalog, kind, definition),
                                  _example_shot(examples, kind, definition))
        r = client.chat(messages, temperature=temperature, max_tokens=step_max_tokens,
                        json_mode="none" if json_mode == "none" else "object")
        gen.add(r)
        if r.error:
            return gen
        p = parse_flow(r.text)  # parse_flow parses any JSON object leniently
        value: Any = p.flow
        if value is None:
            value = _parse_json_list(r.text)
        if value is None:
            gen.notes.append(f"inputs of {label} did not parse ({p.status}); left empty")
            value = []
        if kind == "trigger":
            trigger_inputs = value
        else:
            step_inputs[key] = value
    flow, notes = assemble_flow(outline, trigger_inputs, step_inputs, catalog=catalog)
    gen.notes.extend(notes)
    gen.output = dumps_flow(flow)
    return gen


def _parse_json_list(text: str) -> list[Any] | None:
    start, end = text.find("["), text.rfind("]")
    if start < 0 or end <= start:
        return None
    try:
        value = json.loads(text[start:end + 1])
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, list) else None


# --------------------------------------------------------------------------- whole split
def _reference_text(flow: Any) -> str:
    return flow if isinstance(flow, str) else dumps_flow(flow)


def run_system(
    client: LLMClient,
    strategy: str | Strategy,
    rows: Iterable[Mapping[str, Any]],
    *,
    run_dir: str | Path,
    split: str,
    system: str,
    retriever: Retriever | None = None,
    retrieval: str = "bm25",
    k: int = 3,
    few_shot: Sequence[Example] | None = None,
    concurrency: int = 4,
    temperature: float = 0.0,
    max_tokens: int = 512,
    step_max_tokens: int = 128,
    json_mode: str = "none",
    progress: bool = True,
) -> dict[str, Any]:
    """Run one system (model x strategy) over ``rows`` (``id``, ``request``, ``flow`` = reference).

    Appends to ``<run_dir>/predictions/<system>.jsonl`` (examples already there are skipped, so
    a rerun of a finished system makes no call) and a trace per example to
    ``<run_dir>/llm/traces/<system>.jsonl``. An example whose call failed for a transient
    reason (server down, rate limit, key, unknown model) is not written, so a rerun retries it;
    a deterministic failure (context overflow, bad request) is written with empty output.
    Returns a summary dict.
    """
    s = _strategy(strategy)
    if retrieval not in ("bm25", "oracle"):
        raise ValueError(f"retrieval must be 'bm25' or 'oracle', got {retrieval!r}")
    rows = [dict(r) for r in (rows.to_list() if hasattr(rows, "to_list") else rows)]
    for i, row in enumerate(rows):
        for name in ("id", "request", "flow"):
            if name not in row or row[name] in (None, ""):
                raise ValueError(f"{split} record {i}: field {name!r} is missing or empty")
    if s.uses_examples == "retrieved" and retriever is None:
        raise ValueError(f"strategy {s.name!r} needs a retriever (wfutils.llm.retrieval.Retriever over the training split)")
    if s.uses_examples == "fixed" and few_shot is None:
        if retriever is None:
            raise ValueError("strategy 'few_shot' needs few_shot= examples or a retriever to pick them from")
        few_shot = fixed_examples([{"id": e.id, "request": e.request, "flow": e.flow} for e in retriever.examples_pool], k)
    run_dir = Path(run_dir)
    out_path = predictions_path(run_dir, system)
    trace_path = run_dir / "llm" / "traces" / f"{system}.jsonl"
    trace_path.parent.mkdir(parents=True, exist_ok=True)
    catalog = retriever.catalog if retriever is not None else load_catalog()

    def one(row: dict[str, Any]) -> Generation:
        examples: Sequence[Example] = ()
        context: CatalogContext | None = None
        if s.uses_examples == "fixed":
            examples = few_shot or ()
        elif s.uses_examples == "retrieved":
            got: Retrieval = (retriever.oracle(row["flow"], k, exclude_ids=[row["id"]], request=row["request"])
                              if retrieval == "oracle" else retriever.retrieve(row["request"], k, exclude_ids=[row["id"]]))
            examples, context = got.examples, got.catalog
        return generate(client, s, row["request"], examples=examples, catalog_context=context, catalog=catalog,
                        temperature=temperature, max_tokens=max_tokens, step_max_tokens=step_max_tokens,
                        json_mode=json_mode)

    summary: dict[str, Any] = {
        "system": system, "strategy": s.name, "strategy_version": s.version, "model": client.model,
        "endpoint": client.cache_id, "split": split, "retrieval": retrieval if s.uses_examples == "retrieved" else None,
        "k": k, "temperature": temperature, "max_tokens": max_tokens, "json_mode": json_mode,
        "concurrency": concurrency, "examples": len(rows), "written": 0, "already_done": 0, "failed": 0,
        "errors": {}, "calls": 0, "cache_hits": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0,
    }
    t0 = time.perf_counter()
    lock = threading.Lock()
    with PredictionWriter(out_path) as writer, open(trace_path, "a", encoding="utf-8") as trace:
        todo = [r for r in rows if str(r["id"]) not in writer.done_ids]
        summary["already_done"] = len(rows) - len(todo)
        bar = None
        if progress and todo:
            from tqdm import tqdm

            bar = tqdm(total=len(todo), desc=f"{system} {split}", unit="flow")
        with ThreadPoolExecutor(max_workers=max(1, int(concurrency))) as pool:
            futures = {pool.submit(one, row): row for row in todo}
            for future in as_completed(futures):
                row = futures[future]
                gen = future.result()
                with lock:
                    summary["calls"] += gen.calls
                    summary["cache_hits"] += gen.cache_hits
                    summary["prompt_tokens"] += gen.prompt_tokens
                    summary["completion_tokens"] += gen.completion_tokens
                    if summary["cost_usd"] is not None:
                        summary["cost_usd"] = None if gen.cost_usd is None else summary["cost_usd"] + gen.cost_usd
                    if gen.error:
                        summary["errors"][gen.error_kind or "error"] = summary["errors"].get(gen.error_kind or "error", 0) + 1
                        summary.setdefault("first_error", gen.error)
                    transient = gen.error is not None and (gen.error_kind or "error") in TRANSIENT_ERRORS
                    if transient:
                        summary["failed"] += 1
                    else:
                        writer.write(Prediction.from_output(
                            id=str(row["id"]), split=split, system=system, request=row["request"],
                            reference=_reference_text(row["flow"]), output=gen.output if not gen.error else "",
                            latency_s=round(gen.latency_s, 4), prompt_tokens=gen.prompt_tokens,
                            completion_tokens=gen.completion_tokens))
                        summary["written"] += 1
                    trace.write(json.dumps({"id": str(row["id"]), "split": split, "system": system,
                                            "written": not transient, **asdict(gen)}, ensure_ascii=False) + "\n")
                    trace.flush()
                if bar is not None:
                    bar.update(1)
        if bar is not None:
            bar.close()
    summary["wall_s"] = round(time.perf_counter() - t0, 3)
    summary["predictions"] = str(out_path)
    return summary


# --------------------------------------------------------------------------- the whole arm
def run_arm(
    run_dir: str | Path,
    *,
    base_url: str | None = None,
    models: Sequence[str] | None = None,
    local_model: str = "smollm2-135m",
    strategies: Sequence[str] = ("zero_shot", "few_shot", "rag_few_shot", "decomposed"),
    retrieval: Sequence[str] = ("bm25",),
    k: int = 3,
    eval_splits: Sequence[str] = ("synthetic/test", "synthetic/ood", "n8n/test", "logic_apps/test"),
    max_examples: int | None = None,
    concurrency: int = 4,
    temperature: float = 0.0,
    max_tokens: int = 512,
    step_max_tokens: int = 128,
    json_mode: str = "none",
    retriever: Retriever | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run every model x strategy (x retrieval mode) on the evaluation splits of a run.

    ``base_url=None`` (and no ``$OPENAI_BASE_URL``) starts a local ``transformers serve`` for
    ``local_model`` and stops it at the end; otherwise ``models`` are requested from the
    endpoint (key from ``$OPENAI_API_KEY``). The response cache lives in
    ``<run_dir>/llm/cache``, so a rerun of a finished arm makes no call. A model whose
    endpoint check fails (no key, wrong key, unknown model, server down) is reported in the
    summary and skipped; the others still run. The summary (parameters, versions, per
    system and split counts, tokens, cost, errors) is written atomically to
    ``<run_dir>/llm/summary.json`` and returned.
    """
    import os
    import platform
    from contextlib import ExitStack

    from wfutils.data.store import load_run_data
    from wfutils.llm.client import LLMConfigError, public_url

    for name in strategies:
        _strategy(name)
    for mode in retrieval:
        if mode not in ("bm25", "oracle"):
            raise ValueError(f"retrieval modes are 'bm25' and 'oracle', got {mode!r}")
    run_dir = Path(run_dir)
    data = load_run_data(run_dir, include_train=True)
    wanted = parse_eval_splits(eval_splits)
    missing = [f"{n}/{s}" for n, s in wanted if n not in data or s not in data[n]]
    if missing:
        have = [f"{n}/{s}" for n, dd in data.items() for s in dd if s != "train"]
        raise ValueError(f"evaluation split(s) {missing} not found under {run_dir / 'data'}; available: {have}")
    if "synthetic" not in data or "train" not in data["synthetic"]:
        raise ValueError(f"{run_dir / 'data'} has no synthetic train split (needed for examples and retrieval)")
    retriever = retriever if retriever is not None else Retriever(data["synthetic"]["train"])
    shots = fixed_examples(data["synthetic"]["train"], k)
    cache_dir = run_dir / "llm" / "cache"
    base_url = base_url or os.environ.get("OPENAI_BASE_URL")
    t0 = time.perf_counter()
    summary: dict[str, Any] = {
        "parameters": {"base_url": public_url(base_url) if base_url else "local", "models": list(models or []), "local_model": local_model,
                       "strategies": list(strategies), "retrieval": list(retrieval), "k": k,
                       "eval_splits": list(eval_splits), "max_examples": max_examples, "concurrency": concurrency,
                       "temperature": temperature, "max_tokens": max_tokens, "step_max_tokens": step_max_tokens,
                       "json_mode": json_mode},
        "strategies": {s: asdict(STRATEGIES[s]) for s in strategies},
        "fixed_examples": [e.id for e in shots],
        "versions": _versions(), "python": platform.python_version(),
        "models": {}, "systems": {},
    }
    with ExitStack() as stack:
        clients: list[tuple[str, LLMClient | None, str | None]] = []
        if base_url is None:
            from wfutils.llm.server import local_server

            server = stack.enter_context(local_server(local_model, log_path=run_dir / "llm" / "server.log"))
            summary["models"][server.name] = {"endpoint": "local", "server_startup_s": server.startup_s}
            clients.append((server.name, server.client(cache_dir=cache_dir), None))
        else:
            if not models:
                raise ValueError("models=[...] is required with a remote endpoint (base_url / $OPENAI_BASE_URL)")
            for model in models:
                try:
                    clients.append((model, LLMClient(model, base_url=base_url, cache_dir=cache_dir), None))
                except LLMConfigError as exc:
                    clients.append((model, None, str(exc)))
        for display, client, problem in clients:
            info = summary["models"].setdefault(display, {})
            if client is None:
                info["error"] = problem
                continue
            info["model"] = client.model
            systems = [(s, mode) for s in strategies for mode in (retrieval if STRATEGIES[s].uses_examples == "retrieved" else ("bm25",))]
            for strategy, mode in systems:
                system = system_name(display, strategy, mode)
                per_split = {}
                for name, split in wanted:
                    rows = data[name][split].to_list()
                    rows = rows[:max_examples] if max_examples is not None else rows
                    per_split[f"{name}/{split}"] = run_system(
                        client, strategy, rows, run_dir=run_dir, split=split, system=system, retriever=retriever,
                        retrieval=mode, k=k, few_shot=shots, concurrency=concurrency, temperature=temperature,
                        max_tokens=max_tokens, step_max_tokens=step_max_tokens, json_mode=json_mode,
                        progress=progress)
                summary["systems"][system] = {"model": display, "strategy": strategy, "retrieval": mode,
                                              "splits": per_split}
            info["client_stats"] = {k2: v for k2, v in vars(client.stats).items() if k2 != "lock"}
            if client._fatal is not None:
                info["error"] = client._fatal[1]
            client.close()
    summary["wall_s"] = round(time.perf_counter() - t0, 2)
    out = run_dir / "llm" / "summary.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(summary, indent=1, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, out)
    return summary


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for package in ("wfutils", "openai", "transformers", "torch", "bm25s"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = "not installed"
    return out
