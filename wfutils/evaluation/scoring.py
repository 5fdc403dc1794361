"""Score every predictions file of a run into one tidy table (example x system x metric).

>>> ev = evaluate_run("results/dev")                      # doctest: +SKIP
>>> ev.scores.head()     # run, system, arm, base_model, ..., subset, id, metric, value
>>> from wfutils.evaluation.store import save_evaluation
>>> save_evaluation(ev, "results/dev")                    # results/dev/eval/scores.parquet ...

Metrics (:data:`METRICS`), one row per example, system and metric:

* ``flowsim_with_inputs`` / ``flowsim_no_inputs``: the paper's FlowSim on the *raw* output text,
  with and without inputs, exactly as :func:`wfutils.flows.flowsim.flow_similarity` (the
  published metric) scores it: no repair, non-JSON scores as the empty flow.
* ``trigger_match``, ``component_precision`` / ``component_recall`` / ``component_f1``: also on
  the raw text, parsed the way the metric parses it.
* ``json_valid``: the output (or its fenced block) is a JSON object as it stands (parse status
  ``ok``). ``schema_valid``: parse status ``ok`` or ``repaired`` (prose around the object is
  tolerated, truncation is not) and :func:`wfutils.flows.schema.validate_flow` finds nothing.
  ``truncated``: parse status ``truncated``.
* ``hallucinated_steps`` / ``hallucinated_tables``: number of component definitions / tables
  of the repaired flow that are not in the known vocabulary
  (:func:`wfutils.evaluation.loading.known_vocabulary`): the catalogue of the system's
  training corpus (shipped for ``synthetic``, derived from the train flows otherwise), plus,
  for other corpora, the vocabulary of their own reference flows. The notes say which.
* ``length_error``: absolute difference in number of components (repaired flow, 0 if none).
* ``latency_s``, ``prompt_tokens``, ``completion_tokens``: as the arm recorded them.
* Output beyond the caps of :mod:`wfutils.flows.limits` (parse status ``too_large`` /
  ``too_deep``) scores as a failure: FlowSim 0, no flow. Scoring never raises on model output.
* ``cost_usd``: the cost the prompting arm recorded in its traces, else 0 for a system that ran
  locally, else the list price of ``meta.base_model``; NaN when unknown
  (:mod:`wfutils.evaluation.costs`).

Every row also carries the system's metadata (:data:`~wfutils.evaluation.result.META_COLUMNS`:
arm, base_model, n_params, strategy, k, retrieval, train_corpus, and a fine-tuned system's recipe and
training seed), read from its sidecar before anything is
scored: a predictions file without its sidecar, or with an unknown arm, is an error naming the
file.

Examples come from the run's data sets (``results/<run>/data``, joined by ``id``; that gives
``dataset``, ``split``, ``domain`` and the feature tags). ``subset`` names the evaluation set:
the split for the synthetic corpus (``test``, ``ood``), else the corpus (``n8n``,
``logic_apps``). Predictions on the synthetic ``validation`` split are scored into
:attr:`Evaluation.selection_scores` (for choosing between fine-tuned systems) and kept out of
``scores``, ``examples`` and ``predictions``. A run without data sets is scored on the references
inside the predictions (``dataset`` = ``predictions``, ``subset`` = the records' ``split``,
structural feature tags computed from the reference flow); :attr:`Evaluation.notes` says so.

Bad input is never silently mismatched: duplicate ids in a file, a prediction whose reference
differs from the data set's, or ids that are not in the data raise ``ValueError``; a system
that covers only part of an evaluation set raises too unless ``on_incomplete`` asks for an
explicit exclusion (reported in :attr:`Evaluation.coverage` and :attr:`Evaluation.notes`).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from wfutils.data.predictions import Prediction, SystemMeta
from wfutils.evaluation import costs, loading
from wfutils.evaluation.result import (CATEGORY_COLUMNS, META_COLUMNS, PREDICTION_COLUMNS, SCORE_COLUMNS, Evaluation,
                                       wide)
from wfutils.evaluation.taxonomy import hallucinations
from wfutils.flows import flowsim, limits
from wfutils.flows.schema import validate_flow
from wfutils.flows.vocabulary import components

__all__ = ["METRICS", "ON_INCOMPLETE", "QUALITY_METRICS", "SCORE_COLUMNS", "Evaluation", "ScoringJob", "evaluate_run",
           "quick_examples", "quick_scores", "quick_table", "score_jobs", "score_prediction", "wide"]

METRICS: dict[str, str] = {
    "flowsim_with_inputs": "FlowSim with inputs (raw text, the paper's metric)",
    "flowsim_no_inputs": "FlowSim without inputs (raw text)",
    "trigger_match": "trigger type equals the reference's",
    "component_precision": "bag-of-components precision",
    "component_recall": "bag-of-components recall",
    "component_f1": "bag-of-components F1",
    "json_valid": "output is a JSON object as it stands",
    "schema_valid": "parsed (ok or repaired) and valid against the flow schema",
    "truncated": "output was cut off mid-object",
    "hallucinated_steps": "number of definitions not in the known vocabulary",
    "hallucinated_tables": "number of tables not in the known vocabulary",
    "length_error": "absolute difference in number of components",
    "latency_s": "seconds per flow",
    "prompt_tokens": "prompt tokens",
    "completion_tokens": "completion tokens",
    "cost_usd": "cost of the call in USD (recorded, 0 when local, else list price of the base model)",
}
QUALITY_METRICS = tuple(list(METRICS)[:12])
ON_INCOMPLETE = ("error", "exclude", "intersect", "keep")
_CHUNK = 250  # predictions per unit of work handed to a scoring process


# --------------------------------------------------------------------------- one prediction

def score_prediction(record: Prediction, reference_flow: Any, *, known_definitions: Iterable[str],
                     known_tables: Iterable[str], cost_usd: float = float("nan")) -> dict[str, float]:
    """Every metric of :data:`METRICS` for one prediction; never raises on model output.

    ``cost_usd`` is passed through (see :func:`wfutils.evaluation.costs.prediction_cost`).
    """
    raw = flowsim.metric_flow(record.output)  # None beyond the caps
    flow = record.flow if limits.value_problem(record.flow) is None else None  # a record not built by parse_flow
    parsed_ok = record.parse_status in ("ok", "repaired") and flow is not None
    steps, tables = hallucinations(flow, known_definitions, known_tables)
    match = flowsim.component_match(raw, reference_flow)
    return {
        # The reference as the parsed data flow: a reference whose strings mention ```json is no fenced answer.
        "flowsim_with_inputs": flowsim.flow_similarity(record.output, reference_flow, with_inputs=True),
        "flowsim_no_inputs": flowsim.flow_similarity(record.output, reference_flow, with_inputs=False),
        "trigger_match": float(flowsim.trigger_match(raw, reference_flow)),
        "component_precision": match["precision"],
        "component_recall": match["recall"],
        "component_f1": match["f1"],
        "json_valid": float(record.parse_status == "ok"),
        "schema_valid": float(parsed_ok and _schema_valid(flow)),
        "truncated": float(record.parse_status == "truncated"),
        "hallucinated_steps": float(len(steps)),
        "hallucinated_tables": float(len(tables)),
        "length_error": float(abs(len(components(flow)) - len(components(reference_flow)))),
        "latency_s": float(record.latency_s),
        "prompt_tokens": float(record.prompt_tokens),
        "completion_tokens": float(record.completion_tokens),
        "cost_usd": float(cost_usd),
    }


_VALIDITY_CACHE: dict[str, bool] = {}  # canonical flow JSON -> valid; outputs repeat across systems


def _schema_valid(flow: Any) -> bool:
    """``validate_flow(flow) == []``, cached by the flow's canonical JSON."""
    try:
        key = json.dumps(flow, ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError, RecursionError):
        return not validate_flow(flow)
    found = _VALIDITY_CACHE.get(key)
    if found is None:
        if len(_VALIDITY_CACHE) > 200_000:
            _VALIDITY_CACHE.clear()
        found = _VALIDITY_CACHE[key] = not validate_flow(flow)
    return found


# --------------------------------------------------------------------------- many predictions

class ScoringJob(NamedTuple):
    """One prediction with what scoring it needs."""

    record: Prediction
    reference: Any  # the reference flow (parsed)
    known_definitions: set[str]
    known_tables: set[str]
    cost_usd: float


def _score_rows(jobs: Sequence[ScoringJob], start: int, stop: int, out: np.ndarray) -> None:
    for row in range(start, stop):
        job = jobs[row]
        out[row] = list(score_prediction(job.record, job.reference, known_definitions=job.known_definitions,
                                         known_tables=job.known_tables, cost_usd=job.cost_usd).values())


def _worker(jobs: Sequence[ScoringJob], bounds: list[tuple[int, int]], shared: Any, next_chunk: Any,
            done: Any) -> None:
    """Body of a forked scoring process: take chunks until none is left, write rows into ``shared``."""
    out = np.frombuffer(shared, dtype=np.float64).reshape(len(jobs), len(METRICS))
    while True:
        with next_chunk.get_lock():
            index = next_chunk.value
            next_chunk.value += 1
        if index >= len(bounds):
            return
        start, stop = bounds[index]
        _score_rows(jobs, start, stop, out)
        with done.get_lock():
            done.value += stop - start


def score_jobs(jobs: Sequence[ScoringJob], *, workers: int | None = None, progress: bool = True) -> np.ndarray:
    """Scores of ``jobs`` as a (len(jobs), len(METRICS)) array, in :data:`METRICS` column order.

    ``workers`` > 1 scores in forked processes that write into shared memory (nothing is pickled,
    no module state is set); default: up to 2 when there are more than 2,000 jobs, else 1.
    """
    from tqdm import tqdm

    n, m = len(jobs), len(METRICS)
    if workers is None:
        workers = min(2, os.cpu_count() or 1) if n > 2000 else 1
    bounds = [(i, min(i + _CHUNK, n)) for i in range(0, n, _CHUNK)]
    parallel = workers > 1 and len(bounds) > 1 and "fork" in multiprocessing.get_all_start_methods()
    with tqdm(total=n, desc="scoring", unit="pred", disable=not progress) as bar:
        if not parallel:
            out = np.empty((n, m))
            for start, stop in bounds:
                _score_rows(jobs, start, stop, out)
                bar.update(stop - start)
            return out
        context = multiprocessing.get_context("fork")
        shared = context.RawArray("d", n * m)
        next_chunk, done = context.Value("i", 0), context.Value("i", 0)
        processes = [context.Process(target=_worker, args=(jobs, bounds, shared, next_chunk, done), daemon=True)
                     for _ in range(min(workers, len(bounds)))]
        for process in processes:
            process.start()
        try:
            while any(p.is_alive() for p in processes):
                time.sleep(0.1)
                bar.update(done.value - bar.n)
        finally:
            for process in processes:
                process.join()
        failed = [p.exitcode for p in processes if p.exitcode != 0]
        if failed:
            raise RuntimeError(f"a scoring process failed (exit codes {failed}); its traceback is above")
        bar.update(n - bar.n)
        return np.frombuffer(shared, dtype=np.float64).reshape(n, m).copy()


# --------------------------------------------------------------------------- a run

def _flow_json(flow: Any) -> str | None:
    """A flow as JSON text for the predictions table: UTF-8-encodable (lone surrogates escaped); None if none."""
    if flow is None:
        return None
    try:
        text = json.dumps(flow, ensure_ascii=False)
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(flow)
    except (TypeError, ValueError, RecursionError):
        return None
    return text


def _plan(predictions: dict[str, list[Prediction]], examples: pd.DataFrame, coverage: pd.DataFrame,
          on_incomplete: str) -> tuple[dict[str, set[str]], dict[str, set[str]] | None, list[str]]:
    """Which subsets each system is scored on, the allowed ids per subset (``intersect``), and notes."""
    notes: list[str] = []
    subset_of = dict(zip(examples["id"], examples["subset"]))
    extra = coverage[coverage["n_extra"] > 0]
    if len(extra):
        detail = "; ".join(f"{r.system}: {r.n_extra} ({r.status})" for r in extra.itertuples())
        if on_incomplete == "error":
            raise ValueError(f"predictions for ids that are not in the run's data sets: {detail}")
        notes.append(f"ignored predictions whose ids are not in the data sets: {detail}")
    incomplete = coverage[coverage["status"] == "incomplete"]
    keep: dict[str, set[str]] = {}
    for system in predictions:
        rows = coverage[(coverage["system"] == system) & (coverage["n_predicted"] > 0) & (coverage["n_extra"] == 0)]
        keep[system] = set(rows["subset"])
    detail = "; ".join(f"{r.system} on {r.subset}: {r.n_predicted} of {r.n_reference}" for r in incomplete.itertuples())
    if len(incomplete):
        if on_incomplete == "error":
            raise ValueError(f"incomplete predictions ({detail}); finish those runs, or pass on_incomplete="
                             "'exclude' / 'intersect' to drop them explicitly")
        if on_incomplete == "exclude":
            for r in incomplete.itertuples():
                keep[r.system].discard(r.subset)
            notes.append(f"excluded incomplete system/subset pairs: {detail}")
        if on_incomplete == "keep":
            notes.append(f"kept every prediction, so systems are scored on different ids of these subsets "
                         f"(means per system, not comparisons): {detail}")
    allowed: dict[str, set[str]] | None = None
    if on_incomplete == "intersect":
        allowed = {}
        for subset in examples["subset"].unique():
            id_sets = [{r.id for r in records if subset_of.get(r.id) == subset}
                       for system, records in predictions.items() if subset in keep[system]]
            if id_sets:
                allowed[subset] = set.intersection(*id_sets)
        if len(incomplete):
            sizes = ", ".join(f"{k}: {len(v)}" for k, v in sorted(allowed.items()))
            notes.append(f"restricted every subset to the ids all its systems predicted ({sizes}) because of "
                         f"incomplete predictions: {detail}")
    return keep, allowed, notes


def _frame(run: str, rows: list[tuple[str, Prediction, dict[str, Any]]], values: np.ndarray,
           metas: dict[str, SystemMeta]) -> pd.DataFrame:
    """The tidy score table of ``rows`` (system, record, example) and their ``values``."""
    metrics = np.asarray(list(METRICS), dtype=object)
    n_metrics = len(metrics)

    def column(pick: Any, dtype: Any = object) -> np.ndarray:
        return np.repeat(np.asarray([pick(row) for row in rows], dtype=dtype), n_metrics)

    data: dict[str, Any] = {"run": run, "system": column(lambda r: r[0])}
    for name in META_COLUMNS:
        dtype = np.int64 if name == "k" else np.float64 if name in _FLOAT_META else object  # NaN: not published
        data[name] = column(lambda r, name=name: _meta_value(metas[r[0]], name), dtype)
    for name in ("dataset", "split", "subset", "domain"):
        data[name] = column(lambda r, name=name: r[2][name])
    data["id"] = column(lambda r: r[1].id)
    data["metric"] = np.tile(metrics, len(rows))
    data["value"] = values.ravel() if len(rows) else np.empty(0)
    frame = pd.DataFrame(data, columns=list(SCORE_COLUMNS))
    for name in CATEGORY_COLUMNS:
        frame[name] = frame[name].astype("category")
    return frame.astype({"n_params": "float64", "training_seed": "float64", "k": "int64", "value": "float64",
                         "id": object})


_FLOAT_META = ("n_params", "training_seed")  # None (not published, not fine-tuned) as NaN


def _meta_value(meta: SystemMeta, name: str) -> Any:
    value = getattr(meta, name)
    return float("nan") if name in _FLOAT_META and value is None else value


def evaluate_run(run_dir: str | os.PathLike[str], systems: Sequence[str] | None = None, *,
                 on_incomplete: str = "error", workers: int | None = None, progress: bool = True,
                 learning_curve: bool = False) -> Evaluation:
    """Score every prediction of the named systems (default: all but learning-curve points, which
    ``learning_curve`` adds) against the run's examples.

    Every system's sidecar is read and checked first (missing or invalid: an error naming the
    file, before any prediction is read or scored). ``on_incomplete``: what to do with a system
    that covers only part of an evaluation set (subset) -- ``error`` (raise), ``exclude`` (drop
    that system on that subset), ``intersect`` (keep every system but restrict each subset to
    the ids that every system that ran it predicted), or ``keep`` (score every prediction: each
    system on all it answered, so systems of one subset may have different ids: for per-system
    means, never for comparisons). Exclusions are listed in ``notes`` and ``coverage``.
    ``workers``: processes for scoring (see :func:`score_jobs`).
    """
    if on_incomplete not in ON_INCOMPLETE:
        raise ValueError(f"on_incomplete must be one of {ON_INCOMPLETE}, got {on_incomplete!r}")
    start = time.perf_counter()
    run_dir = Path(run_dir)
    metas = loading.load_system_metas(run_dir, systems, learning_curve=learning_curve)
    predictions = loading.load_predictions(run_dir, list(metas))
    notes: list[str] = []
    examples = loading.load_examples(run_dir)
    if examples is None:
        examples = loading.examples_from_predictions(predictions)
        notes.append(f"{run_dir / 'data'} holds no data sets: examples and references come from the predictions "
                     "files (subset = their split; feature tags are structural only, computed from the references)")
    coverage = loading.coverage(predictions, examples)
    keep, allowed, plan_notes = _plan(predictions, examples, coverage, on_incomplete)
    notes += plan_notes

    vocab, vocab_notes = loading.system_vocabularies(run_dir, examples, metas)
    notes += vocab_notes
    by_id = {row["id"]: row for row in examples.to_dict("records")}
    references: dict[str, Any] = {}
    rows: list[tuple[str, Prediction, dict[str, Any]]] = []
    jobs: list[ScoringJob] = []
    for system, records in predictions.items():
        traced = costs.trace_costs(run_dir, system)
        for record in records:
            example = by_id.get(record.id)
            if example is None:
                continue
            subset = example["subset"]
            if subset not in keep[system] or (allowed is not None and record.id not in allowed.get(subset, ())):
                continue
            if not loading.same_flow(record.reference, example["reference"]):
                raise ValueError(f"system {system!r}, id {record.id!r}: the prediction's reference flow differs from "
                                 f"the data set's ({example['dataset']}/{example['split']}); predictions and data "
                                 "come from different builds")
            reference = references.get(record.id)
            if reference is None:
                reference = references[record.id] = json.loads(example["reference"])
            defs, tables = vocab[system][example["dataset"]]
            cost = costs.prediction_cost(metas[system], record.prompt_tokens, record.completion_tokens,
                                         traced=traced.get(record.id))
            rows.append((system, record, example))
            jobs.append(ScoringJob(record, reference, defs, tables, cost))
    values = score_jobs(jobs, workers=workers, progress=progress)

    selection = np.asarray([loading.is_selection_split(row[2]["split"]) for row in rows], dtype=bool)
    picked = {flag: [row for row, s in zip(rows, selection) if s == flag] for flag in (False, True)}
    scores = _frame(run_dir.name, picked[False], values[~selection], metas)
    selection_scores = _frame(run_dir.name, picked[True], values[selection], metas)
    predictions_frame = pd.DataFrame(
        [{"system": system, "id": record.id, "subset": example["subset"], "output": record.output,
          "flow": _flow_json(record.flow),
          "parse_status": record.parse_status} for system, record, example in picked[False]],
        columns=list(PREDICTION_COLUMNS))
    evaluation_examples = examples[~examples["split"].map(loading.is_selection_split)].reset_index(drop=True)
    if selection.any():
        notes.append(f"{int(selection.sum())} predictions on the {loading.SELECTION_SPLIT} split are kept apart in "
                     "selection_scores (for choosing between fine-tuned systems, never reported)")
    return Evaluation(run=run_dir.name, scores=scores, selection_scores=selection_scores,
                      examples=evaluation_examples, predictions=predictions_frame, coverage=coverage, metas=metas,
                      notes=notes, seconds=time.perf_counter() - start)


def quick_scores(run_dir: str | os.PathLike[str], systems: Iterable[str],
                 datasets: dict[str, str] | None = None) -> pd.DataFrame:
    """A first look at some systems of a run (notebooks 02 and 03), one row per prediction: FlowSim with and
    without inputs, parsed, tokens, cost (:func:`wfutils.evaluation.costs.prediction_cost`) and latency, with
    the system's arm, strategy and retrieval; ``datasets`` (example id -> data set) adds a ``dataset`` column.
    Notebook 04 scores every system with confidence intervals (:func:`evaluate_run`)."""
    from wfutils.data.predictions import predictions_path, read_predictions, read_system_meta

    rows = []
    for name in systems:
        path = predictions_path(run_dir, name)
        meta = read_system_meta(path)
        traced = costs.trace_costs(run_dir, name)
        for p in read_predictions(path):
            rows.append({"system": name, "arm": meta.arm, "strategy": meta.strategy, "retrieval": meta.retrieval,
                         "split": p.split, "id": p.id, "parse_status": p.parse_status,
                         "parsed": p.parse_status in ("ok", "repaired"),
                         "flowsim_with_inputs": flowsim.flow_similarity(p.output, p.reference, with_inputs=True),
                         "flowsim_no_inputs": flowsim.flow_similarity(p.output, p.reference, with_inputs=False),
                         "prompt_tokens": p.prompt_tokens, "completion_tokens": p.completion_tokens,
                         "cost_usd": costs.prediction_cost(meta, p.prompt_tokens, p.completion_tokens,
                                                           traced=traced.get(p.id)),
                         "latency_s": p.latency_s, "request": p.request, "output": p.output,
                         "reference": p.reference})
    frame = pd.DataFrame(rows)
    if datasets is not None and not frame.empty:
        frame["dataset"] = frame["id"].map(datasets)
    return frame


def quick_examples(scores: pd.DataFrame, split: str = "test", n: int = 3, width: int = 600) -> None:
    """Print the first ``n`` answers of ``split`` (from :func:`quick_scores`) next to their references."""
    for r in scores[scores["split"] == split].head(n).itertuples():
        print(f"[{r.id}] FlowSim with inputs {r.flowsim_with_inputs:.2f} / without {r.flowsim_no_inputs:.2f} "
              f"({r.parse_status})")
        print("request:   ", r.request)
        print("predicted: ", r.output[:width])
        print("reference: ", r.reference[:width])
        print()


def quick_table(scores: pd.DataFrame, by: Sequence[str] = ("system",)) -> pd.DataFrame:
    """:func:`quick_scores` per group: examples, parse rate, mean FlowSim with and without inputs, mean tokens,
    total cost and mean latency, best FlowSim with inputs first."""
    return (scores.groupby(list(by))
            .agg(n=("id", "size"), parse_rate=("parsed", "mean"),
                 flowsim_with_inputs=("flowsim_with_inputs", "mean"), flowsim_no_inputs=("flowsim_no_inputs", "mean"),
                 prompt_tokens=("prompt_tokens", "mean"), completion_tokens=("completion_tokens", "mean"),
                 cost_usd=("cost_usd", "sum"), latency_s=("latency_s", "mean"))
            .round(4).sort_values("flowsim_with_inputs", ascending=False))
