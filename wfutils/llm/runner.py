"""Run one prompted system over evaluation splits: concurrency, retrieval per request, predictions, traces.

:func:`run_system` writes ``<run_dir>/predictions/<system>.jsonl`` through
:class:`wfutils.data.predictions.PredictionWriter` with the system's
:class:`~wfutils.data.predictions.SystemMeta` (the sidecar ``<system>.meta.json``), in the
schema the fine-tuned arm uses, and a trace per example (retrieved ids, calls, raw outputs,
notes, errors, cost) to ``<run_dir>/llm/traces/<system>.jsonl``.

Resuming: examples already in the predictions file are skipped, so a rerun of a finished
system makes no call. The file restarts (and its trace with it) when the resume key changed:
the metadata, the code digest, the endpoint and model, the decoding parameters, the
strategy's version, the example pool (fixed examples or the retriever's training pool) and
whatever the caller passes as ``key``; or when a stored record's request or reference no
longer matches the data (the run's data was rebuilt); or with ``force=True``, which also
skips response-cache reads (fresh calls overwrite the cache entries).

Traces are appended safely: an unfinished last line left by a kill is removed first (a
complete one gets its newline; :func:`wfutils.data.predictions.end_jsonl_cleanly`), so a new
record is never glued onto a fragment, and every line is strict JSON whose ``cost_usd`` is a
finite number from 0 to ``MAX_COST_PER_EXAMPLE_USD`` or null (unknown, with a note). An example whose generation raised
(a bug, or a cache entry of an unexpected shape that got past the client) is reported as an
``internal`` error and retried on the next run; the run itself goes on.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from wfutils.data.catalog import load_catalog
from wfutils.data.predictions import (PROMPTED, Prediction, PredictionWriter, SystemMeta, end_jsonl_cleanly, predictions_path,
                                      read_predictions)
from wfutils.flows.vocabulary import flow_text
from wfutils.llm.client import LLMClient
from wfutils.llm.config import Decoding
from wfutils.llm.generation import Generation, generate
from wfutils.llm.pricing import MAX_COST_PER_EXAMPLE_USD
from wfutils.llm.retrieval import CatalogContext, Example, Retriever
from wfutils.llm.strategies import fixed_examples, get_strategy

__all__ = ["TRANSIENT_ERRORS", "run_system", "trace_path"]

#: Errors after which no prediction is written (a rerun retries the example).
TRANSIENT_ERRORS = frozenset({"unreachable", "timeout", "rate_limit", "server_error", "auth", "unknown_model", "error",
                              "internal"})


def _checked(gen: Generation) -> Generation:
    """``gen`` with values a trace and a prediction can hold: text output, non-negative counts, and a
    finite cost from 0 to :data:`~wfutils.llm.pricing.MAX_COST_PER_EXAMPLE_USD` (anything else becomes an
    unknown cost, None, with a note)."""
    if not isinstance(gen.output, str):
        gen.notes.append(f"output of type {type(gen.output).__name__} replaced by an empty string")
        gen.output = ""
    cost = gen.cost_usd
    if cost is not None and (isinstance(cost, bool) or not isinstance(cost, (int, float)) or not math.isfinite(cost)
                             or not 0 <= cost <= MAX_COST_PER_EXAMPLE_USD):
        gen.notes.append(f"cost {cost!r} is not a cost; recorded as unknown")
        gen.cost_usd = None
    for name in ("prompt_tokens", "completion_tokens", "calls", "cache_hits", "attempts"):
        value = getattr(gen, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            gen.notes.append(f"{name} {value!r} is not a count; recorded as 0")
            setattr(gen, name, 0)
    latency = gen.latency_s
    if isinstance(latency, bool) or not isinstance(latency, (int, float)) or not math.isfinite(latency) or latency < 0:
        gen.notes.append(f"latency {latency!r} is not a duration; recorded as 0")
        gen.latency_s = 0.0
    return gen


def trace_path(run_dir: str | Path, system: str) -> Path:
    """Where a prompted system's per-example traces live."""
    return Path(run_dir) / "llm" / "traces" / f"{system}.jsonl"


def _rows(split: str, rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = [dict(r) for r in (rows.to_list() if hasattr(rows, "to_list") else rows)]
    for i, row in enumerate(out):
        for name in ("id", "request", "flow"):
            if name not in row or row[name] in (None, ""):
                raise ValueError(f"{split} record {i}: field {name!r} is missing or empty")
    return out


def _examples_digest(examples: Sequence[Example]) -> str:
    blob = json.dumps([[e.id, e.request, e.flow] for e in examples], ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def _stale(path: Path, rows: Sequence[tuple[str, dict[str, Any]]]) -> bool:
    """True when a stored record's request or reference differs from the current row with its id."""
    if not path.is_file():
        return False
    try:
        stored = {p.id: p for p in read_predictions(path)}
    except ValueError:
        return False  # the writer reports a damaged file
    for _, row in rows:
        p = stored.get(str(row["id"]))
        if p is not None and (p.request != row["request"] or p.reference != flow_text(row["flow"])):
            return True
    return False


def run_system(
    client: LLMClient,
    meta: SystemMeta,
    splits: Mapping[str, Iterable[Mapping[str, Any]]],
    *,
    run_dir: str | Path,
    retriever: Retriever | None = None,
    few_shot: Sequence[Example] | None = None,
    concurrency: int = 4,
    decoding: Decoding = Decoding(),
    key: Any = None,
    force: bool = False,
    progress: bool = True,
    before_example: Callable[[], Any] | None = None,
) -> dict[str, Any]:
    """Run the system ``meta`` describes (its strategy, ``k`` examples, retrieval) over ``splits``.

    ``splits`` maps evaluation splits (``<dataset>/<split>`` such as ``synthetic/test``, or a
    bare split name) to rows with ``id``, ``request`` and ``flow`` (the reference); records
    carry the split name (``test``), as the fine-tuned arm's do, and ids must be unique
    across splits (one predictions file holds them all). Strategies with retrieval need ``retriever``; ``few_shot`` needs ``few_shot``
    examples or a retriever to pick ``meta.k`` of them from (:func:`fixed_examples`).
    An example whose call failed for a transient reason (server down, rate limit, key,
    unknown model) is not written, so a rerun retries it; a deterministic failure (context
    overflow, bad request) is written with empty output. ``before_example`` is called before each
    example is generated, in the thread that generates it (the arm primes llama.cpp's prompt
    cache with it; with ``concurrency=1`` the two follow each other). Returns a summary dict.
    """
    if meta.arm != PROMPTED:
        raise ValueError(f"system {meta.system!r}: run_system runs prompted systems, metadata says arm {meta.arm!r}")
    s = get_strategy(meta.strategy)
    if not isinstance(splits, Mapping):
        raise TypeError("splits must map split names to rows, e.g. {'test': rows}")
    if s.uses_examples == "retrieved":
        if retriever is None:
            raise ValueError(f"strategy {s.name!r} needs a retriever (wfutils.llm.retrieval.Retriever over the training split)")
        if meta.retrieval not in ("bm25", "oracle"):
            raise ValueError(f"strategy {s.name!r} retrieves: metadata retrieval must be 'bm25' or 'oracle', got {meta.retrieval!r}")
    elif meta.retrieval != "none":
        raise ValueError(f"strategy {s.name!r} retrieves nothing: metadata retrieval must be 'none', got {meta.retrieval!r}")
    if s.uses_examples == "fixed" and few_shot is None:
        if retriever is None:
            raise ValueError("strategy 'few_shot' needs few_shot= examples or a retriever to pick them from")
        few_shot = fixed_examples([{"id": e.id, "request": e.request, "flow": e.flow} for e in retriever.examples_pool],
                                  meta.k)
    todo_all = [(split, row) for split, rows in splits.items() for row in _rows(split, rows)]
    ids = [str(row["id"]) for _, row in todo_all]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise ValueError(f"system {meta.system!r}: ids repeat across splits {list(splits)} ({dup}); one file holds them all")

    examples_key = {"none": None, "fixed": _examples_digest(few_shot or ()),
                    "retrieved": retriever.fingerprint if retriever is not None else None}[s.uses_examples]
    resume_key = {"endpoint": client.cache_id, "model": client.model, "strategy_version": s.version,
                  "temperature": decoding.temperature, "max_tokens": decoding.max_tokens,
                  "json_mode": decoding.json_mode,
                  "step_max_tokens": decoding.step_max_tokens if s.pipeline == "decomposed" else None,
                  "examples": examples_key, "caller": key}
    run_dir = Path(run_dir)
    out_path = predictions_path(run_dir, meta.system)
    traces = trace_path(run_dir, meta.system)
    traces.parent.mkdir(parents=True, exist_ok=True)
    catalog = retriever.catalog if retriever is not None else load_catalog()
    stale = not force and _stale(out_path, todo_all)

    def one(row: dict[str, Any]) -> Generation:
        try:
            return _checked(generate_row(row))
        except Exception as exc:  # noqa: BLE001 - one example's failure never stops the run; reported, retried later
            return Generation(error=f"internal error while generating {row['id']!r}: {type(exc).__name__}: "
                                    f"{client._redact(str(exc))[:500]}", error_kind="internal")

    def generate_row(row: dict[str, Any]) -> Generation:
        if before_example is not None:
            before_example()
        examples: Sequence[Example] = ()
        context: CatalogContext | None = None
        if s.uses_examples == "fixed":
            examples = few_shot or ()
        elif s.uses_examples == "retrieved":
            got = (retriever.oracle(row["flow"], meta.k, exclude_ids=[row["id"]], request=row["request"])
                   if meta.retrieval == "oracle" else retriever.retrieve(row["request"], meta.k, exclude_ids=[row["id"]]))
            examples, context = got.examples, got.catalog
        return generate(client, s, row["request"], examples=examples, catalog_context=context, catalog=catalog,
                        decoding=decoding, refresh=True if force else None)

    summary: dict[str, Any] = {
        "system": meta.system, "meta": meta.to_dict(), "strategy_version": s.version, "model": client.model,
        "endpoint": client.cache_id, "temperature": decoding.temperature, "max_tokens": decoding.max_tokens,
        "json_mode": decoding.json_mode,
        "concurrency": concurrency, "examples": len(todo_all), "written": 0, "already_done": 0, "failed": 0,
        "errors": {}, "calls": 0, "attempts": 0, "cache_hits": 0, "prompt_tokens": 0, "completion_tokens": 0,
        "cost_usd": 0.0, "restarted": None,
        "splits": {split: {"examples": 0, "written": 0, "already_done": 0, "failed": 0} for split in splits},
    }
    for split, _ in todo_all:
        summary["splits"][split]["examples"] += 1
    t0 = time.perf_counter()
    lock = threading.Lock()
    with PredictionWriter(out_path, meta, key=resume_key, force=force or stale) as writer:
        if writer.restarted:
            summary["restarted"] = "data changed since these predictions were written" if stale else writer.restart_reason
            traces.unlink(missing_ok=True)
        todo = [(split, row) for split, row in todo_all if str(row["id"]) not in writer.done_ids]
        summary["already_done"] = len(todo_all) - len(todo)
        for split, row in todo_all:
            if str(row["id"]) in writer.done_ids:
                summary["splits"][split]["already_done"] += 1
        bar = None
        if progress and todo:
            from tqdm import tqdm

            bar = tqdm(total=len(todo), desc=meta.system, unit="flow")
        end_jsonl_cleanly(traces)  # a line cut short by a kill is removed, never glued to the next record
        with open(traces, "a", encoding="utf-8") as trace, ThreadPoolExecutor(max_workers=max(1, int(concurrency))) as pool:
            futures = {pool.submit(one, row): (split, row) for split, row in todo}
            for future in as_completed(futures):
                split, row = futures[future]
                gen = future.result()
                with lock:
                    for name in ("calls", "attempts", "cache_hits", "prompt_tokens", "completion_tokens"):
                        summary[name] += getattr(gen, name)
                    if summary["cost_usd"] is not None:
                        summary["cost_usd"] = None if gen.cost_usd is None else summary["cost_usd"] + gen.cost_usd
                    if gen.error:
                        kind = gen.error_kind or "error"
                        summary["errors"][kind] = summary["errors"].get(kind, 0) + 1
                        summary.setdefault("first_error", gen.error)
                    transient = gen.error is not None and (gen.error_kind or "error") in TRANSIENT_ERRORS
                    if transient:
                        summary["failed"] += 1
                        summary["splits"][split]["failed"] += 1
                    else:
                        writer.write(Prediction.from_output(
                            id=str(row["id"]), split=split.rpartition("/")[2], system=meta.system, request=row["request"],
                            reference=flow_text(row["flow"]), output=gen.output if not gen.error else "",
                            latency_s=round(gen.latency_s, 4), prompt_tokens=gen.prompt_tokens,
                            completion_tokens=gen.completion_tokens))
                        summary["written"] += 1
                        summary["splits"][split]["written"] += 1
                    trace.write(json.dumps({"id": str(row["id"]), "split": split, "system": meta.system,
                                            "written": not transient, **asdict(gen)}, ensure_ascii=False,
                                           allow_nan=False) + "\n")
                    trace.flush()
                if bar is not None:
                    bar.update(1)
        if bar is not None:
            bar.close()
    summary["wall_s"] = round(time.perf_counter() - t0, 3)
    summary["predictions"] = str(out_path)
    return summary
