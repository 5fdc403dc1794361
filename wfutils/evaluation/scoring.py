"""Score every predictions file of a run into one tidy table (example x system x metric).

>>> ev = evaluate_run("results/dev")                      # doctest: +SKIP
>>> ev.scores.head()     # run, system, dataset, split, subset, domain, id, metric, value
>>> save_evaluation(ev, "results/dev")                    # results/dev/eval/scores.parquet ...

Metrics (:data:`METRICS`), one row per example, system and metric:

* ``flowsim`` / ``flowsim_no_inputs``: the paper's FlowSim on the *raw* output text, with and
  without inputs, exactly as :func:`wfutils.flows.flowsim.flow_similarity` (the published metric)
  scores it: no repair, non-JSON scores as the empty flow.
* ``trigger_match``, ``component_precision`` / ``component_recall`` / ``component_f1``: also on
  the raw text, parsed the way the metric parses it.
* ``json_valid``: the output (or its fenced block) is a JSON object as it stands (parse status
  ``ok``). ``schema_valid``: parse status ``ok`` or ``repaired`` (prose around the object is
  tolerated, truncation is not) and :func:`wfutils.flows.schema.validate_flow` finds nothing.
  ``truncated``: parse status ``truncated``.
* ``hallucinated_steps`` / ``hallucinated_tables``: number of component definitions / tables
  of the repaired flow that are not in the known vocabulary: the catalogue
  (:mod:`wfutils.data.catalog`) for the ServiceNow-style data, plus the vocabulary of a real
  corpus's own reference flows for n8n / Logic Apps examples.
* ``length_error``: absolute difference in number of components (repaired flow, 0 if none).
* ``latency_s``, ``prompt_tokens``, ``completion_tokens``, ``cost_usd``: the cost the prompting
  arm recorded in ``llm/traces/<system>.jsonl`` when there is one (0 for a local endpoint),
  else the list price of the model named in the system name (``wfutils/llm/pricing.json``); 0 for
  fine-tuned ``slm*`` systems; NaN when neither is known.

Examples come from the run's data sets (``results/<run>/data``, joined by ``id``; that gives
``dataset``, ``split``, ``domain`` and the feature tags). ``subset`` names the evaluation set:
the split for the synthetic corpus (``test``, ``ood``), else the corpus (``n8n``,
``logic_apps``). A run without data sets is scored on the references inside the predictions
(``dataset`` = ``predictions``, ``subset`` = the records' ``split``, structural feature tags
computed from the reference flow); :attr:`Evaluation.notes` says so.

Bad input is never silently mismatched: duplicate ids in a file, a prediction whose reference
differs from the data set's, or ids that are not in the data raise ``ValueError``; a system
that covers only part of an evaluation set raises too unless ``on_incomplete`` asks for an
explicit exclusion (reported in :attr:`Evaluation.coverage` and :attr:`Evaluation.notes`).
"""

from __future__ import annotations

import json
import os
import platform
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from wfutils.evaluation import taxonomy as err
from wfutils.flows import flowsim
from wfutils.data.predictions import Prediction, read_predictions
from wfutils.flows.schema import validate_flow

METRICS: dict[str, str] = {
    "flowsim": "FlowSim with inputs (raw text, the paper's metric)",
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
    "cost_usd": "list-price cost of the call in USD",
}
QUALITY_METRICS = tuple(list(METRICS)[:12])
STRATEGIES = ("rag_few_shot", "few_shot", "zero_shot", "decomposed")
ON_INCOMPLETE = ("error", "exclude", "intersect")
SCORE_COLUMNS = ("run", "system", "dataset", "split", "subset", "domain", "id", "metric", "value")


# --------------------------------------------------------------------------- systems

@dataclass(frozen=True)
class SystemInfo:
    """What a system name says: arm (``slm`` / ``llm``), model, prompting strategy, oracle retrieval."""

    name: str
    arm: str
    model: str
    strategy: str | None
    oracle: bool

    @property
    def baseline_name(self) -> str | None:
        """For an oracle-retrieval system, the name of the same system with its normal retriever."""
        if not self.oracle:
            return None
        return _strip_oracle(self.name)


def _strip_oracle(name: str) -> str:
    out = re.sub(r"[-_]oracle(?=$|[-_])", "", name)
    return re.sub(r"(^|[-_])oracle[-_]", r"\1", out)


def system_info(name: str) -> SystemInfo:
    """Parse ``slm-*`` or ``<model>-<strategy>[-oracle]`` system names.

    Strategies may be spelled ``rag_few_shot`` or, as :func:`wfutils.llm.strategies.system_name` writes
    them, ``rag-few-shot``.
    """
    oracle = re.search(r"(^|[-_])oracle($|[-_])", name) is not None
    if name.startswith("slm"):
        return SystemInfo(name, "slm", name, None, oracle)
    base = _strip_oracle(name) if oracle else name
    for strategy in STRATEGIES:
        for spelled in (strategy, strategy.replace("_", "-")):  # wfutils.llm.strategies.system_name slugifies '_' to '-'
            for sep in ("-", "_", "/"):
                if base.endswith(sep + spelled):
                    return SystemInfo(name, "llm", base[: -len(spelled) - 1], strategy, oracle)
    return SystemInfo(name, "llm", base, None, oracle)


def list_systems(run_dir: str | os.PathLike[str]) -> list[str]:
    """Systems with a predictions file under ``<run_dir>/predictions``."""
    folder = Path(run_dir) / "predictions"
    return sorted(p.stem for p in folder.glob("*.jsonl")) if folder.is_dir() else []


# --------------------------------------------------------------------------- loading

def load_system(path: str | os.PathLike[str]) -> list[Prediction]:
    """Read one predictions file; duplicate ids raise ValueError naming the file, id and lines."""
    records = read_predictions(path)
    seen: dict[str, int] = {}
    for line, record in enumerate(records, start=1):
        if record.id in seen:
            raise ValueError(f"{path}: duplicate id {record.id!r} (records {seen[record.id]} and {line}); "
                             "one prediction per example is expected")
        seen[record.id] = line
    return records


def load_predictions(run_dir: str | os.PathLike[str], systems: Sequence[str] | None = None
                     ) -> dict[str, list[Prediction]]:
    """Predictions of the named systems (default: every file under ``predictions/``)."""
    run_dir = Path(run_dir)
    names = list(systems) if systems is not None else list_systems(run_dir)
    if not names:
        raise FileNotFoundError(f"no predictions files under {run_dir / 'predictions'}")
    out = {}
    for name in names:
        path = run_dir / "predictions" / f"{name}.jsonl"
        if not path.is_file():
            known = ", ".join(list_systems(run_dir)) or "none"
            raise FileNotFoundError(f"predictions file for system {name!r} not found: {path} (found: {known})")
        out[name] = load_system(path)
    return out


def _subset_name(dataset: str, split: str) -> str:
    return split if dataset == "synthetic" else dataset


def load_examples(run_dir: str | os.PathLike[str]) -> pd.DataFrame | None:
    """Evaluation examples of a run (id, dataset, split, subset, domain, features, request, reference).

    Reads ``<run_dir>/data/<dataset>/<split>.parquet`` (every split but ``train``); None when
    the run has no data sets. Duplicate ids across data sets raise ValueError.
    """
    root = Path(run_dir) / "data"
    files = sorted(root.glob("*/*.parquet")) if root.is_dir() else []
    frames = []
    for path in files:
        if path.stem == "train":
            continue
        frame = pd.read_parquet(path)
        missing = [c for c in ("id", "request", "flow", "features", "domain") if c not in frame.columns]
        if missing:
            raise ValueError(f"{path}: data set lacks column(s) {', '.join(missing)}")
        dataset = path.parent.name
        frames.append(pd.DataFrame({
            "id": frame["id"].astype(str), "dataset": dataset, "split": path.stem,
            "subset": _subset_name(dataset, path.stem), "domain": frame["domain"].astype(str),
            "features": [sorted(map(str, f)) if f is not None else [] for f in frame["features"]],
            "request": frame["request"], "reference": frame["flow"],
        }))
    if not frames:
        return None
    examples = pd.concat(frames, ignore_index=True)
    dup = examples["id"].duplicated(keep=False)
    if dup.any():
        first = examples.loc[dup].sort_values("id").head(4)
        where = "; ".join(f"{r.id} in {r.dataset}/{r.split}" for r in first.itertuples())
        raise ValueError(f"{root}: example ids are not unique across data sets ({where}, ...)")
    return examples


def _examples_from_predictions(predictions: dict[str, list[Prediction]]) -> pd.DataFrame:
    from wfutils.data.synthetic import flow_features

    rows: dict[str, dict[str, Any]] = {}
    for system, records in predictions.items():
        for r in records:
            row = rows.get(r.id)
            if row is None:
                try:
                    features = sorted(flow_features(json.loads(r.reference)))
                except (json.JSONDecodeError, AttributeError, TypeError):
                    features = []
                rows[r.id] = {"id": r.id, "dataset": "predictions", "split": r.split, "subset": r.split,
                              "domain": "unknown", "features": features, "request": r.request,
                              "reference": r.reference, "_system": system}
            elif row["split"] != r.split or not _same_flow(row["reference"], r.reference):
                what = "split" if row["split"] != r.split else "reference flow"
                raise ValueError(f"example {r.id!r}: {what} differs between systems {row['_system']!r} and {system!r}")
    frame = pd.DataFrame(list(rows.values()))
    return frame.drop(columns="_system").sort_values(["subset", "id"], ignore_index=True)


def _same_flow(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        return json.loads(a) == json.loads(b)
    except json.JSONDecodeError:
        return False


# --------------------------------------------------------------------------- scoring

def _known_vocabulary(examples: pd.DataFrame) -> dict[str, tuple[set[str], set[str]]]:
    """Known definitions and tables per domain."""
    from wfutils.data.catalog import load_catalog

    catalog = load_catalog()
    base_defs = set(catalog.definitions)
    base_tables = set(catalog.tables)
    out: dict[str, tuple[set[str], set[str]]] = {}
    for domain, group in examples.groupby("domain"):
        if domain == "servicenow":
            out[domain] = (base_defs, base_tables)
        else:
            defs, tables = err.vocabulary(group["reference"])
            out[domain] = (base_defs | defs, base_tables | tables)
    return out


def _price(system: SystemInfo) -> tuple[float, float] | None:
    if system.arm == "slm":
        return (0.0, 0.0)
    from wfutils.llm.pricing import load_prices

    table = load_prices()
    name = system.model.lower().split("/")[-1]
    entry = table.get(name)
    if entry is None:
        matches = [k for k in table if name.startswith(k)]
        entry = table[max(matches, key=len)] if matches else None
    return None if entry is None else (entry["input"], entry["output"])


def _trace_costs(run_dir: Path, system: str) -> dict[str, float]:
    """Per-example ``cost_usd`` from the prompting arm's traces (``llm/traces/<system>.jsonl``), if any."""
    path = run_dir / "llm" / "traces" / f"{system}.jsonl"
    costs: dict[str, float] = {}
    if not path.is_file():
        return costs
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a kill; the prediction file is the source of truth
        cost = record.get("cost_usd") if isinstance(record, dict) else None
        if isinstance(cost, (int, float)) and record.get("written", True):
            costs[str(record.get("id"))] = float(cost)
    return costs


def score_prediction(record: Prediction, reference_flow: Any, *, known_definitions: Iterable[str],
                     known_tables: Iterable[str], price: tuple[float, float] | None = None) -> dict[str, float]:
    """Every metric of :data:`METRICS` for one prediction; never raises on model output."""
    raw = flowsim.load_flow_text(record.output)
    components = err._components(record.flow)
    parsed_ok = record.parse_status in ("ok", "repaired") and record.flow is not None
    steps, tables = err.hallucinations(record.flow, known_definitions, known_tables)
    match = flowsim.component_match(raw, reference_flow)
    ref_components = err._components(reference_flow)
    cost = (np.nan if price is None
            else (record.prompt_tokens * price[0] + record.completion_tokens * price[1]) / 1e6)
    return {
        "flowsim": flowsim.flow_similarity(record.output, record.reference, with_inputs=True),
        "flowsim_no_inputs": flowsim.flow_similarity(record.output, record.reference, with_inputs=False),
        "trigger_match": float(flowsim.trigger_match(raw, reference_flow)),
        "component_precision": match["precision"],
        "component_recall": match["recall"],
        "component_f1": match["f1"],
        "json_valid": float(record.parse_status == "ok"),
        "schema_valid": float(parsed_ok and _schema_valid(record.flow)),
        "truncated": float(record.parse_status == "truncated"),
        "hallucinated_steps": float(len(steps)),
        "hallucinated_tables": float(len(tables)),
        "length_error": float(abs(len(components) - len(ref_components))),
        "latency_s": float(record.latency_s),
        "prompt_tokens": float(record.prompt_tokens),
        "completion_tokens": float(record.completion_tokens),
        "cost_usd": float(cost),
    }


_VALIDITY_CACHE: dict[str, bool] = {}


def _schema_valid(flow: Any) -> bool:
    """validate_flow(flow) == [], cached by the flow's canonical JSON (outputs repeat across systems)."""
    try:
        key = json.dumps(flow, ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError):
        return not validate_flow(flow)
    found = _VALIDITY_CACHE.get(key)
    if found is None:
        if len(_VALIDITY_CACHE) > 200_000:
            _VALIDITY_CACHE.clear()
        found = _VALIDITY_CACHE[key] = not validate_flow(flow)
    return found


_JOBS: list[tuple[Any, ...]] = []  # set before forking workers, read by _score_range


def _score_range(bounds: tuple[int, int]) -> np.ndarray:
    out = np.empty((bounds[1] - bounds[0], len(METRICS)))
    for row, (record, reference, defs, tables, price) in enumerate(_JOBS[bounds[0]:bounds[1]]):
        out[row] = list(score_prediction(record, reference, known_definitions=defs, known_tables=tables,
                                         price=price).values())
    return out


def _score_jobs(jobs: list[tuple[str, Prediction, dict[str, Any]]], vocab: dict[str, tuple[set[str], set[str]]],
                prices: dict[str, tuple[float, float] | None], *, workers: int | None, progress: bool) -> np.ndarray:
    """(len(jobs), len(METRICS)) scores, optionally in forked worker processes."""
    from tqdm import tqdm

    global _JOBS
    references: dict[str, Any] = {}
    work = []
    for system, record, example in jobs:
        reference = references.get(record.id)
        if reference is None:
            reference = references[record.id] = json.loads(example["reference"])
        defs, tables = vocab[example["domain"]]
        work.append((record, reference, defs, tables, prices[system]))
    if workers is None:
        workers = min(2, os.cpu_count() or 1) if len(work) > 2000 else 1
    chunk = 250
    bounds = [(i, min(i + chunk, len(work))) for i in range(0, len(work), chunk)]
    parts: list[np.ndarray] = []
    _JOBS = work
    try:
        with tqdm(total=len(work), desc="scoring", unit="pred", disable=not progress) as bar:
            if workers > 1 and len(bounds) > 1 and "fork" in __import__("multiprocessing").get_all_start_methods():
                import multiprocessing

                with multiprocessing.get_context("fork").Pool(workers) as pool:
                    for part in pool.imap(_score_range, bounds):
                        parts.append(part)
                        bar.update(len(part))
            else:
                for b in bounds:
                    parts.append(_score_range(b))
                    bar.update(len(parts[-1]))
    finally:
        _JOBS = []
    return np.concatenate(parts) if parts else np.empty((0, len(METRICS)))


@dataclass
class Evaluation:
    """The result of :func:`evaluate_run`."""

    run: str
    scores: pd.DataFrame  # SCORE_COLUMNS
    examples: pd.DataFrame  # id, dataset, split, subset, domain, features, request, reference
    predictions: pd.DataFrame  # system, id, subset, output, flow (JSON or None), parse_status
    coverage: pd.DataFrame  # system, subset, n_reference, n_predicted, n_missing, n_extra, status
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def systems(self) -> list[str]:
        return sorted(self.scores["system"].unique()) if len(self.scores) else []

    def wide(self, metric: str = "flowsim") -> pd.DataFrame:
        """Rows = examples (subset, id), columns = systems, values = the metric."""
        return wide(self.scores, metric)


def wide(scores: pd.DataFrame, metric: str = "flowsim") -> pd.DataFrame:
    """Pivot the tidy table to (subset, id) x system for one metric."""
    if metric not in set(scores["metric"]):
        raise KeyError(f"metric {metric!r} is not in the scores (have: {', '.join(sorted(set(scores['metric'])))})")
    part = scores[scores["metric"] == metric]
    return part.pivot_table(index=["subset", "id"], columns="system", values="value", aggfunc="first", observed=True)


def _coverage(predictions: dict[str, list[Prediction]], examples: pd.DataFrame) -> pd.DataFrame:
    subset_of = dict(zip(examples["id"], examples["subset"]))
    sizes = examples.groupby("subset")["id"].nunique().to_dict()
    rows = []
    for system, records in predictions.items():
        ids = [r.id for r in records]
        extra = sorted(i for i in ids if i not in subset_of)
        counts = pd.Series([subset_of[i] for i in ids if i in subset_of], dtype=object).value_counts().to_dict()
        for subset, n_ref in sorted(sizes.items()):
            n = int(counts.get(subset, 0))
            rows.append({"system": system, "subset": subset, "n_reference": int(n_ref), "n_predicted": n,
                         "n_missing": int(n_ref - n) if n else 0, "n_extra": 0,
                         "status": "complete" if n == n_ref else ("not run" if n == 0 else "incomplete")})
        if extra:
            rows.append({"system": system, "subset": "<not in data>", "n_reference": 0, "n_predicted": len(extra),
                         "n_missing": 0, "n_extra": len(extra), "status": "extra ids: " + ", ".join(extra[:3])
                         + (" ..." if len(extra) > 3 else "")})
    return pd.DataFrame(rows, columns=["system", "subset", "n_reference", "n_predicted", "n_missing", "n_extra", "status"])


def evaluate_run(run_dir: str | os.PathLike[str], systems: Sequence[str] | None = None, *,
                 on_incomplete: str = "error", workers: int | None = None, progress: bool = True) -> Evaluation:
    """Score every prediction of the named systems (default: all) against the run's examples.

    ``on_incomplete``: what to do with a system that covers only part of an evaluation set
    (subset) -- ``error`` (raise), ``exclude`` (drop that system on that subset), or
    ``intersect`` (keep every system but restrict each subset to the ids that every system
    that ran it predicted). Exclusions are listed in ``notes`` and ``coverage``.
    ``workers``: processes for scoring (default: up to 2 when there are more than 2,000
    predictions, else 1).
    """
    if on_incomplete not in ON_INCOMPLETE:
        raise ValueError(f"on_incomplete must be one of {ON_INCOMPLETE}, got {on_incomplete!r}")
    start = time.perf_counter()
    run_dir = Path(run_dir)
    predictions = load_predictions(run_dir, systems)
    notes: list[str] = []
    examples = load_examples(run_dir)
    if examples is None:
        examples = _examples_from_predictions(predictions)
        notes.append(f"{run_dir / 'data'} holds no data sets: examples and references come from the predictions "
                     "files (subset = their split; feature tags are structural only, computed from the references)")
    subset_of = dict(zip(examples["id"], examples["subset"]))
    coverage = _coverage(predictions, examples)

    extra = coverage[coverage["n_extra"] > 0]
    if len(extra):
        detail = "; ".join(f"{r.system}: {r.n_extra} ({r.status})" for r in extra.itertuples())
        if on_incomplete == "error":
            raise ValueError(f"predictions for ids that are not in the run's data sets: {detail}")
        notes.append(f"ignored predictions whose ids are not in the data sets: {detail}")
    incomplete = coverage[coverage["status"] == "incomplete"]
    keep: dict[str, set[str]] = {}  # system -> subsets kept
    allowed_ids: dict[str, set[str]] | None = None
    for system in predictions:
        rows = coverage[(coverage["system"] == system) & (coverage["n_predicted"] > 0) & (coverage["n_extra"] == 0)]
        keep[system] = set(rows["subset"])
    if len(incomplete):
        detail = "; ".join(f"{r.system} on {r.subset}: {r.n_predicted} of {r.n_reference}" for r in incomplete.itertuples())
        if on_incomplete == "error":
            raise ValueError(f"incomplete predictions ({detail}); finish those runs, or pass on_incomplete="
                             "'exclude' / 'intersect' to drop them explicitly")
        if on_incomplete == "exclude":
            for r in incomplete.itertuples():
                keep[r.system].discard(r.subset)
            notes.append(f"excluded incomplete system/subset pairs: {detail}")
    if on_incomplete == "intersect":
        allowed_ids = {}
        for subset in examples["subset"].unique():
            id_sets = [{r.id for r in recs if subset_of.get(r.id) == subset}
                       for s, recs in predictions.items() if subset in keep[s]]
            if id_sets:
                allowed_ids[subset] = set.intersection(*id_sets)
        if len(incomplete):
            sizes = ", ".join(f"{k}: {len(v)}" for k, v in sorted(allowed_ids.items()))
            notes.append(f"restricted every subset to the ids all its systems predicted ({sizes}) because of "
                         f"incomplete predictions: {detail}")

    vocab = _known_vocabulary(examples)
    rows_by_id = {row["id"]: row for row in examples.to_dict("records")}
    jobs: list[tuple[str, Prediction, dict[str, Any]]] = []
    for system, records in predictions.items():
        for record in records:
            example = rows_by_id.get(record.id)
            if example is None:
                continue
            subset = example["subset"]
            if subset not in keep[system] or (allowed_ids is not None and record.id not in allowed_ids.get(subset, ())):
                continue
            if record.reference != example["reference"] and not _same_flow(record.reference, example["reference"]):
                raise ValueError(f"system {system!r}, id {record.id!r}: the prediction's reference flow differs from "
                                 f"the data set's ({example['dataset']}/{example['split']}); predictions and data "
                                 "come from different builds")
            jobs.append((system, record, example))
    prices = {system: _price(system_info(system)) for system in predictions}
    values = _score_jobs(jobs, vocab, prices, workers=workers, progress=progress)
    cost_column = list(METRICS).index("cost_usd")
    traces = {system: _trace_costs(run_dir, system) for system in predictions}
    for row, (system, record, _) in enumerate(jobs):
        traced = traces[system].get(record.id)
        if traced is not None:
            values[row, cost_column] = traced
    metrics = list(METRICS)
    n_metrics = len(metrics)
    columns: dict[str, Any] = {}
    for name, pick in (("system", lambda j: j[0]), ("dataset", lambda j: j[2]["dataset"]),
                       ("split", lambda j: j[2]["split"]), ("subset", lambda j: j[2]["subset"]),
                       ("domain", lambda j: j[2]["domain"]), ("id", lambda j: j[1].id)):
        columns[name] = np.repeat(np.asarray([pick(j) for j in jobs], dtype=object), n_metrics)
    score_rows = pd.DataFrame({"run": run_dir.name, **columns, "metric": np.tile(np.asarray(metrics, dtype=object), len(jobs)),
                               "value": values.ravel()})
    pred_rows = [{"system": system, "id": record.id, "subset": example["subset"], "output": record.output,
                  "flow": None if record.flow is None else json.dumps(record.flow, ensure_ascii=False),
                  "parse_status": record.parse_status} for system, record, example in jobs]
    scores = score_rows[list(SCORE_COLUMNS)]
    for column in ("run", "system", "dataset", "split", "subset", "domain", "metric"):
        scores[column] = scores[column].astype("category")
    scores["value"] = scores["value"].astype("float64")
    return Evaluation(run=run_dir.name, scores=scores, examples=examples.reset_index(drop=True),
                      predictions=pd.DataFrame(pred_rows, columns=["system", "id", "subset", "output", "flow", "parse_status"]),
                      coverage=coverage, notes=notes, seconds=time.perf_counter() - start)


# --------------------------------------------------------------------------- storage

def eval_dir(run_dir: str | os.PathLike[str]) -> Path:
    return Path(run_dir) / "eval"


def _atomic(path: Path, write: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def save_evaluation(evaluation: Evaluation, run_dir: str | os.PathLike[str], *,
                    params: dict[str, Any] | None = None) -> Path:
    """Write ``eval/scores.parquet``, ``examples.parquet``, ``predictions.parquet``, ``coverage.csv`` and ``info.json``."""
    out = eval_dir(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    _atomic(out / "scores.parquet", lambda p: evaluation.scores.to_parquet(p, index=False))
    _atomic(out / "examples.parquet", lambda p: evaluation.examples.to_parquet(p, index=False))
    _atomic(out / "predictions.parquet", lambda p: evaluation.predictions.to_parquet(p, index=False))
    _atomic(out / "coverage.csv", lambda p: evaluation.coverage.to_csv(p, index=False))
    import pyarrow

    info = {
        "run": evaluation.run, "systems": evaluation.systems, "metrics": METRICS,
        "n_rows": int(len(evaluation.scores)), "notes": evaluation.notes, "params": params or {},
        "seconds": round(evaluation.seconds, 3),
        "versions": {"python": platform.python_version(), "numpy": np.__version__, "pandas": pd.__version__,
                     "pyarrow": pyarrow.__version__},
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    _atomic(out / "info.json", lambda p: p.write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8"))
    return out


def load_evaluation(run_dir: str | os.PathLike[str]) -> Evaluation:
    """Read back what :func:`save_evaluation` wrote."""
    folder = eval_dir(run_dir)
    path = folder / "scores.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"no scores at {path}; run wfutils.evaluation.scoring.evaluate_run + save_evaluation first")
    info = json.loads((folder / "info.json").read_text(encoding="utf-8"))
    examples = pd.read_parquet(folder / "examples.parquet")
    examples["features"] = [list(f) for f in examples["features"]]
    return Evaluation(run=info["run"], scores=pd.read_parquet(path), examples=examples,
                      predictions=pd.read_parquet(folder / "predictions.parquet"),
                      coverage=pd.read_csv(folder / "coverage.csv"), notes=info.get("notes", []),
                      seconds=info.get("seconds", 0.0))


def feature_table(examples: pd.DataFrame) -> pd.DataFrame:
    """One row per (id, feature) for joining feature tags onto the scores."""
    exploded = examples[["id", "features"]].explode("features").dropna()
    return exploded.rename(columns={"features": "feature"}).reset_index(drop=True)


def error_table(evaluation: Evaluation, *, progress: bool = True) -> pd.DataFrame:
    """Error tags (:func:`wfutils.evaluation.taxonomy.error_tags`) of every scored prediction: system, subset, id, tag."""
    from tqdm import tqdm

    vocab = _known_vocabulary(evaluation.examples)
    by_id = {row["id"]: row for row in evaluation.examples.to_dict("records")}
    rows = []
    cache: dict[str, Any] = {}
    for r in tqdm(evaluation.predictions.itertuples(), total=len(evaluation.predictions), desc="error tags",
                  disable=not progress):
        example = by_id[r.id]
        reference = cache.get(r.id)
        if reference is None:
            reference = cache[r.id] = json.loads(example["reference"])
        flow = json.loads(r.flow) if isinstance(r.flow, str) else None
        defs, tables = vocab[example["domain"]]
        tags = err.error_tags(flow, reference, r.parse_status, known_definitions=defs, known_tables=tables)
        for tag in tags or ["none"]:
            rows.append({"system": r.system, "subset": r.subset, "id": r.id, "tag": tag})
    return pd.DataFrame(rows, columns=["system", "subset", "id", "tag"])


def cost_table(scores: pd.DataFrame, subset: str | None = None) -> pd.DataFrame:
    """Per system: examples, mean FlowSim, seconds per flow, tokens per flow, USD per 1,000 flows.

    ``subset`` restricts to one evaluation set (default: every scored example). A system whose
    cost is unknown for some example gets NaN dollars (never a silently partial sum).
    """
    part = scores if subset is None else scores[scores["subset"] == subset]
    wanted = ["flowsim", "latency_s", "prompt_tokens", "completion_tokens", "cost_usd"]
    table = (part[part["metric"].isin(wanted)]
             .pivot_table(index="system", columns="metric", values="value", aggfunc=lambda v: v.mean(skipna=False),
                          observed=True)
             .reindex(columns=wanted))
    counts = part[part["metric"] == "flowsim"].groupby("system", observed=True)["id"].count()
    out = pd.DataFrame({
        "n": counts.reindex(table.index).astype(int),
        "flowsim": table["flowsim"],
        "seconds_per_flow": table["latency_s"],
        "tokens_per_flow": table["prompt_tokens"] + table["completion_tokens"],
        "usd_per_1000_flows": table["cost_usd"] * 1000,
    })
    out["arm"] = ["slm" if str(s).startswith("slm") else "llm" for s in out.index]
    return out.reset_index()


def pareto_front(table: pd.DataFrame, quality: str = "flowsim", costs: Sequence[str] = ("seconds_per_flow",)
                 ) -> pd.Series:
    """True for rows no other row beats (higher or equal quality and lower or equal costs, one strictly)."""
    values = table[[quality, *costs]].to_numpy(dtype=float)
    front = []
    for i, row in enumerate(values):
        if np.isnan(row).any():
            front.append(False)
            continue
        dominated = False
        for j, other in enumerate(values):
            if i == j or np.isnan(other).any():
                continue
            if other[0] >= row[0] and (other[1:] <= row[1:]).all() and (other[0] > row[0] or (other[1:] < row[1:]).any()):
                dominated = True
                break
        front.append(not dominated)
    return pd.Series(front, index=table.index, name="pareto")
