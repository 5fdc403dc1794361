"""Fine-tune or prompt? What a run says about the decision a practitioner makes.

* cost and latency per request (:func:`request_costs`): p50 / p95 latency, CPU-seconds for a system that ran
  on this machine (seconds per request times the engine's threads), dollars for a hosted one (the traced or
  list price, :mod:`wfutils.evaluation.costs`), per 1,000 and per 1,000,000 requests, and the fine-tuning's
  one-off cost from its training record;
* the request volume at which that one-off cost is paid back against each prompted system
  (:func:`payback_table`, :func:`payback_sentence`);
* format validity apart from quality (:func:`validity_table`, :func:`parse_status_shares`);
* for runs with fine-tuned systems at several training sizes or seeds: the data break-even against the prompted
  systems (:func:`learning_curve`, :func:`break_even`, :func:`break_even_sentences`) and the spread over
  training seeds beside the bootstrap interval, which covers only the requests (:func:`seed_spread`).

What a fine-tuned system was trained on (labelled pairs, seed, training time) comes from the training record
found from the adapter its :class:`~wfutils.data.predictions.SystemMeta` names (:func:`training_facts`),
never from its name.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from wfutils.data.predictions import FINE_TUNED, SystemMeta
from wfutils.evaluation.companion import training_record
from wfutils.evaluation.costs import runs_locally
from wfutils.evaluation.loading import load_system_metas
from wfutils.evaluation.result import Evaluation
from wfutils.evaluation.selection import ComparisonSetup, evaluation_values, seed_groups
from wfutils.evaluation.statistics import DEFAULT_BOOT, mean_ci, paired_comparison, system_summary
from wfutils.evaluation.tables import QUALITY, cost_table, with_ci
from wfutils.slm.recipe import training_recipe

__all__ = ["CPU_SECONDS", "NO_CURVE", "NO_SEEDS", "PAYBACK_COLUMNS", "USD", "VALIDITY", "TrainingFacts",
           "break_even", "break_even_sentences", "costs_for_book", "decision_glue", "facts_table",
           "has_learning_curve", "has_seed_spread", "learning_curve", "parse_status_shares", "payback_sentence",
           "payback_table", "prompted_levels", "request_costs", "seed_spread", "training_facts",
           "validity_for_book", "validity_table", "with_curve_points"]

CPU_SECONDS, USD = "CPU-seconds", "USD"
#: Fewest training sizes of one base model for a data break-even, fewest seeds of one recipe for a seed spread.
MIN_SIZES, MIN_SEEDS = 3, 2
_STATE_FILE = "trainer_state.json"  # what a trainer checkpoint holds beside its adapter (its global step)


# --------------------------------------------------------------------------- what a fine-tuned system was trained on

def with_curve_points(run_dir: str | os.PathLike[str], evaluation: Evaluation, setup: ComparisonSetup,
                      metric: str = QUALITY) -> tuple[pd.DataFrame, dict[str, SystemMeta]]:
    """``setup.values`` with the run's learning-curve points beside them (scored here: notebook 04 leaves them
    out, they answer only the first paired requests; NaN elsewhere), and the metadata of every system."""
    from wfutils.evaluation.scoring import evaluate_run

    curve = [name for name, meta in load_system_metas(run_dir, learning_curve=True).items() if meta.learning_curve]
    if not curve:
        return setup.values, dict(evaluation.metas)
    scored = evaluate_run(run_dir, curve, on_incomplete="keep", progress=False)
    values, where = evaluation_values(scored.scores, metric)
    if where != setup.where:
        raise ValueError(f"{run_dir}: the learning-curve points answered {where!r}, the comparison is on "
                         f"{setup.where!r}; generate them on the training corpus's test split (notebook 02)")
    return setup.values.join(values[[c for c in values.columns if c not in setup.values]], how="left"), \
        {**evaluation.metas, **scored.metas}


@dataclass(frozen=True)
class TrainingFacts:
    """What a fine-tuned system's training record says it was trained on, and what its training cost."""

    system: str
    base_model: str
    pairs: int  # distinct labelled pairs the adapter's training saw: min(training set, steps x pairs per step)
    training_set: int  # pairs in the training set
    seed: int
    steps: int  # optimizer steps behind the adapter that answered
    train_seconds: float  # training time up to the last step run (evaluations excluded)
    wall_seconds: float | None  # the training session's wall time (evaluations included)
    threads: int | None  # CPU threads of the training (torch threads x processes); None: not recorded
    record: str  # the record's path relative to the run
    recipe: str = ""  # digest of what the training was but its seed (:func:`wfutils.slm.recipe.training_recipe`): equal = seeds of one recipe
    decoding: str | None = None  # how the adapter's answers were decoded (greedy, constrained): another decoding, another system

    @property
    def train_cpu_seconds(self) -> float:
        """Training seconds times threads: the one-off cost in CPU-seconds (NaN when threads are not recorded)."""
        return self.train_seconds * self.threads if self.threads else math.nan


def _required(record: Mapping[str, Any], config: Mapping[str, Any], where: str) -> dict[str, Any]:
    names = {"n_examples": record, "steps": record, "train_seconds": record, "seed": config, "batch_size": config,
             "grad_accum": config}
    missing = [name for name, source in names.items() if not isinstance(source.get(name), (int, float))]
    if missing:
        raise ValueError(f"{where}: training record lacks {', '.join(missing)} (a number each); train again with "
                         "notebook 02 to write a complete record")
    return {name: source[name] for name, source in names.items()}


def _seconds_to_step(record: Mapping[str, Any], step: int, total: float) -> float:
    """Training seconds up to ``step`` from the record's per-step clock (the whole training when it ends there)."""
    curve = [e for e in record.get("loss_curve") or [] if isinstance(e, dict)]
    if step >= int(record["steps"]) or not curve:
        return float(total)
    return float(sum(e.get("seconds") or 0.0 for e in curve if e.get("step", math.inf) <= step))


def training_facts(run_dir: str | os.PathLike[str], metas: Mapping[str, SystemMeta]) -> dict[str, TrainingFacts]:
    """:class:`TrainingFacts` of every fine-tuned system of ``metas`` whose training record is found.

    The record is the one beside the system's adapter, else the run's ``slm/`` one (checkpoints of one training).
    The adapter's step: a trainer checkpoint's own ``trainer_state.json``, else the record's best step when it
    kept the best checkpoint, else its last step. A record without the numbers this needs is an error naming it.
    """
    run_dir = Path(run_dir)
    facts: dict[str, TrainingFacts] = {}
    for name, meta in sorted(metas.items()):
        if meta.arm != FINE_TUNED:
            continue
        record, where = training_record(run_dir, meta.adapter)
        if not record:
            continue
        config = record.get("config") or {}
        needed = _required(record, config, str(run_dir / where))
        state = run_dir / meta.adapter / _STATE_FILE if meta.adapter else None
        if state is not None and state.is_file():
            step = int(json.loads(state.read_text(encoding="utf-8"))["global_step"])
        elif record.get("selected_by") and isinstance(record.get("best_step"), int):
            step = int(record["best_step"])
        else:
            step = int(needed["steps"])
        per_step = int(needed["batch_size"]) * int(needed["grad_accum"]) * int(record.get("num_processes") or 1)
        threads = record.get("torch_threads")
        trained_to = step if state is not None and state.is_file() else int(needed["steps"])
        facts[name] = TrainingFacts(
            system=name, base_model=meta.base_model, pairs=min(int(needed["n_examples"]), step * per_step),
            training_set=int(needed["n_examples"]),
            seed=meta.training_seed if meta.training_seed is not None else int(needed["seed"]), steps=step,
            train_seconds=_seconds_to_step(record, trained_to, needed["train_seconds"]),
            wall_seconds=record.get("wall_seconds_this_session"),
            threads=int(threads) * int(record.get("num_processes") or 1) if isinstance(threads, int) else None,
            record=where, recipe=meta.recipe or training_recipe(
                config, int(needed["n_examples"]), step if state is not None and state.is_file() else None,
                train_corpus=meta.train_corpus), decoding=meta.decoding)
    return facts


def facts_table(facts: Mapping[str, TrainingFacts]) -> pd.DataFrame:
    """The facts as a table (index: system): base model, pairs, training set, seed, steps, training time."""
    columns = ["base_model", "pairs", "training_set", "seed", "steps", "train_seconds", "threads", "one_off_cpu_s",
               "one_off_wall_s", "record"]
    rows = {f.system: {"base_model": f.base_model, "pairs": f.pairs, "training_set": f.training_set, "seed": f.seed,
                       "steps": f.steps, "train_seconds": f.train_seconds, "threads": f.threads,
                       "one_off_cpu_s": f.train_cpu_seconds, "one_off_wall_s": f.wall_seconds, "record": f.record}
            for f in facts.values()}
    table = pd.DataFrame.from_dict(rows, orient="index", columns=columns)
    table.index.name = "system"
    return table


# --------------------------------------------------------------------------- cost and latency

def _threads(meta: SystemMeta) -> int | None:
    return meta.engine.threads if meta.engine is not None and meta.engine.threads else None


def request_costs(scores: pd.DataFrame, metas: Mapping[str, SystemMeta], facts: Mapping[str, TrainingFacts],
                  subset: str | None = None) -> pd.DataFrame:
    """Per system (index): arm, n, mean FlowSim with inputs, p50 / p95 latency per request, CPU-seconds (a system
    that ran here: mean seconds per request x its engine's threads) and USD (a hosted one) per 1,000 and
    1,000,000 requests, the fine-tuning's one-off CPU-seconds and wall seconds, and what is not known.

    Latency and cost come from :func:`wfutils.evaluation.tables.cost_table`; unknown values are NaN with the
    reason in ``unknown``.
    """
    table = cost_table(scores, subset).set_index("system")
    rows = {}
    for system, row in table.iterrows():
        meta = metas[system]
        local, threads = runs_locally(meta), _threads(meta)
        cpu = row["seconds_per_flow"] * threads if local and threads else math.nan
        usd = row["usd_per_1000_flows"] / 1000 if local is False else math.nan
        unknown = []
        if local and not threads:
            unknown.append("engine threads not recorded")
        if local is None:
            unknown.append("where it ran is not recorded")
        if local is False and math.isnan(usd):
            unknown.append("no traced cost and no list price")
        fact = facts.get(system)
        rows[system] = {
            "arm": meta.arm, "n": int(row["n"]), QUALITY: row[QUALITY], "latency_p50_s": row["latency_p50_s"],
            "latency_p95_s": row["latency_p95_s"], "cpu_s_per_request": cpu, "cpu_s_per_1k": cpu * 1e3,
            "cpu_s_per_1m": cpu * 1e6, "usd_per_request": usd, "usd_per_1k": usd * 1e3, "usd_per_1m": usd * 1e6,
            "one_off_cpu_s": fact.train_cpu_seconds if fact else math.nan,
            "one_off_wall_s": (fact.wall_seconds if fact and fact.wall_seconds is not None else math.nan),
            "unknown": "; ".join(unknown)}
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "system"
    return out


@dataclass(frozen=True)
class _Price:
    unit: str
    per_request: float


def _price(costs: pd.DataFrame, system: str) -> _Price:
    row = costs.loc[system]
    if np.isfinite(row["usd_per_request"]):
        return _Price(USD, float(row["usd_per_request"]))
    if np.isfinite(row["cpu_s_per_request"]):
        return _Price(CPU_SECONDS, float(row["cpu_s_per_request"]))
    return _Price("", math.nan)


PAYBACK_COLUMNS = ("fine_tuned", "prompted", "unit", "one_off", "per_request_fine_tuned", "per_request_prompted",
                   "payback_requests", "reason")


def payback_table(costs: pd.DataFrame, fine_tuned: str | Sequence[str], prompted: Sequence[str], *,
                  usd_per_cpu_hour: float | None = None) -> pd.DataFrame:
    """Per fine-tuned and prompted system: after how many requests the fine-tuning's one-off cost is paid back by
    the fine-tuned model's lower cost per request (``payback_requests``: inf when it costs as much or more per
    request, never; NaN when not measurable, with the ``reason``).

    ``costs``: :func:`request_costs`. Both in CPU-seconds when both ran here; a hosted system's dollars are
    compared with CPU-seconds priced at ``usd_per_cpu_hour`` (None: not compared).
    """
    rows = []
    for tuned in [fine_tuned] if isinstance(fine_tuned, str) else fine_tuned:
        ft = _price(costs, tuned)
        one_off = float(costs.loc[tuned, "one_off_cpu_s"])
        for system in prompted:
            other = _price(costs, system)
            unit, mine, theirs, fixed, reason = other.unit, ft.per_request, other.per_request, one_off, ""
            if ft.unit != CPU_SECONDS or not np.isfinite(one_off):
                reason = f"{tuned}: {costs.loc[tuned, 'unknown'] or 'no training record'}"
            elif not other.unit:
                reason = f"{system}: {costs.loc[system, 'unknown']}"
            elif other.unit == USD:
                if usd_per_cpu_hour is None:
                    reason = (f"{system} is priced in dollars and {tuned} in CPU-seconds: set usd_per_cpu_hour "
                              "to compare them")
                else:
                    mine, fixed = mine * usd_per_cpu_hour / 3600, one_off * usd_per_cpu_hour / 3600
            if reason:
                rows.append((tuned, system, unit, math.nan, math.nan, math.nan, math.nan, reason))
                continue
            saving = theirs - mine
            rows.append((tuned, system, unit, fixed, mine, theirs, fixed / saving if saving > 0 else math.inf, ""))
    return pd.DataFrame(rows, columns=list(PAYBACK_COLUMNS))


def _amount(value: float, unit: str) -> str:
    return f"{value:,.4g} USD" if unit == USD else f"{value:,.4g} CPU-seconds"


def payback_sentence(row: Mapping[str, Any]) -> str:
    """One row of :func:`payback_table` as a sentence a reader can act on."""
    against = f"{row['fine_tuned']} against {row['prompted']}"
    if not np.isfinite(row["one_off"]):
        return f"{against}: not measurable in this run ({row['reason']})."
    each = (f"{_amount(row['per_request_fine_tuned'], row['unit'])} against "
            f"{_amount(row['per_request_prompted'], row['unit'])} per request")
    if not np.isfinite(row["payback_requests"]):
        return (f"{against}: never, within this run's measurements: the fine-tuned model costs as much or more "
                f"per request ({each}).")
    requests = math.ceil(row["payback_requests"])
    return (f"{against}: the fine-tuning's one-off cost ({_amount(row['one_off'], row['unit'])}) is paid back after "
            f"about {requests:,} request{'' if requests == 1 else 's'} ({each}).")


# --------------------------------------------------------------------------- format validity

VALIDITY = (QUALITY, "json_valid", "schema_valid")


def validity_table(scores: pd.DataFrame, *, n_boot: int = DEFAULT_BOOT, seed: int = 0) -> pd.DataFrame:
    """Per system (index): arm, n, and FlowSim with inputs, JSON-parse rate (``json_valid``) and schema-valid
    rate (``schema_valid``), each mean with its 95% bootstrap interval (``<metric>``, ``<metric>_low``,
    ``<metric>_high``), on one evaluation set (``scores`` restricted to it)."""
    parts = [system_summary(scores, metric, n_boot=n_boot, seed=seed, pooled=False) for metric in VALIDITY]
    summary = pd.concat(parts, ignore_index=True)
    out = pd.DataFrame(index=pd.Index(sorted(summary["system"].unique()), name="system"))
    first = summary.drop_duplicates("system").set_index("system")
    out["arm"], out["n"] = first["arm"], first["n"].astype(int)
    for metric in VALIDITY:
        part = summary[summary["metric"] == metric].set_index("system")
        out[metric], out[f"{metric}_low"], out[f"{metric}_high"] = part["mean"], part["ci_low"], part["ci_high"]
    return out


def _significant(value: float, prefix: str = "") -> str:
    """A positive amount with three significant digits and thousands separators (``9,963``, ``28.1``, ``0.00412``)."""
    if value is None or not math.isfinite(value):
        return "–"
    if value == 0:
        return f"{prefix}0"
    digits = max(0, 2 - math.floor(math.log10(abs(value))))
    return f"{prefix}{round(value, digits):,.{digits}f}"


def costs_for_book(costs: pd.DataFrame) -> pd.DataFrame:
    """:func:`request_costs` as the book shows it: seconds and amounts with three significant digits, a million
    requests in CPU-hours (CPU-seconds would run to nine digits), dollars with their sign; unknown as a dash."""
    shown = pd.DataFrame({"arm": costs["arm"], "n": costs["n"]}, index=costs.index)
    for column, scale, prefix in (("latency_p50_s", 1, ""), ("latency_p95_s", 1, ""), ("cpu_s_per_1k", 1, ""),
                                  ("cpu_s_per_1m", 1 / 3600, ""), ("usd_per_1k", 1, "$"), ("usd_per_1m", 1, "$"),
                                  ("one_off_cpu_s", 1, ""), ("one_off_wall_s", 1, "")):
        name = "cpu_h_per_1m" if column == "cpu_s_per_1m" else column
        shown[name] = [_significant(v * scale, prefix) for v in costs[column]]
    return shown


def validity_for_book(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`validity_table` with each mean and its interval in one cell."""
    return pd.DataFrame({"arm": table["arm"], "n": table["n"],
                         **{f"{m}_ci": with_ci(table, m, f"{m}_low", f"{m}_high") for m in VALIDITY}})


def parse_status_shares(predictions: pd.DataFrame) -> pd.DataFrame:
    """Share of each system's answers per parse status (rows: systems; ``ok`` parsed as it stands, ``repaired``
    parsed after removing prose around it, ``truncated`` cut off, the rest no flow)."""
    return pd.crosstab(predictions["system"], predictions["parse_status"], normalize="index")


# --------------------------------------------------------------------------- data break-even and seed spread

#: What the data break-even needs, and which of notebook 02's parameters produce it (said when a run lacks it;
#: :func:`wfutils.evaluation.tables.admonition`).
NO_CURVE = ("This run has no fine-tuned systems trained on at least three numbers of labelled pairs, so it cannot "
            "say from how many pairs fine-tuning pays. Fine-tuned systems of one base model trained with different "
            "`n_train` (notebook 02), each scored on the same requests as the prompted systems, give this section "
            "its table, figure and verdicts.")
#: What the seed spread needs, and which parameter produces it.
NO_SEEDS = ("This run has no fine-tuned model trained with two or more seeds of one recipe (and decoding), so the "
            "intervals here cover the requests only, not another training run. Fine-tuned systems that differ only in "
            "notebook 02's `seed` (a profile section such as `02_slm_finetuning@seed1` with its own `seed` and "
            "`system`) give this section its spread.")


def _sizes(facts: Mapping[str, TrainingFacts]) -> dict[str, set[int]]:
    sizes: dict[str, set[int]] = {}
    for fact in facts.values():
        sizes.setdefault(fact.base_model, set()).add(fact.pairs)
    return sizes


def has_learning_curve(facts: Mapping[str, TrainingFacts]) -> bool:
    """Whether some base model was fine-tuned on at least :data:`MIN_SIZES` numbers of labelled pairs."""
    return any(len(sizes) >= MIN_SIZES for sizes in _sizes(facts).values())


def _seed_trainings(facts: Mapping[str, TrainingFacts], systems: Sequence[str] | None = None) -> list[list[str]]:
    """Groups of :func:`wfutils.evaluation.selection.seed_groups` (among ``systems``, if given) with at least
    :data:`MIN_SEEDS` seeds, one system per seed (the first by name: one adapter decoded twice is one seed)."""
    chosen = [f for f in facts.values() if systems is None or f.system in systems]
    frame = pd.DataFrame([{"system": f.system, "base_model": f.base_model, "decoding": f.decoding, "recipe": f.recipe,
                           "training_seed": f.seed} for f in chosen],
                         columns=["system", "base_model", "decoding", "recipe", "training_seed"]).set_index("system")
    trainings = []
    for group in seed_groups(frame):
        per_seed: dict[int, str] = {}
        for system in group:
            per_seed.setdefault(facts[system].seed, system)
        if len(per_seed) >= MIN_SEEDS:
            trainings.append(list(per_seed.values()))
    return trainings


def has_seed_spread(facts: Mapping[str, TrainingFacts]) -> bool:
    """Whether some training (base model, decoding, recipe) was run with at least :data:`MIN_SEEDS` seeds."""
    return bool(_seed_trainings(facts))


def _groups(facts: Mapping[str, TrainingFacts], values: pd.DataFrame) -> dict[tuple[str, int], list[str]]:
    """Fine-tuned systems with values, by (base model, pairs)."""
    groups: dict[tuple[str, int], list[str]] = {}
    for fact in sorted(facts.values(), key=lambda f: (f.base_model, f.pairs, f.seed, f.system)):
        if fact.system in values:
            groups.setdefault((fact.base_model, fact.pairs), []).append(fact.system)
    return groups


def _paired_rows(values: pd.DataFrame, facts: Mapping[str, TrainingFacts], prompted: Sequence[str]) -> pd.DataFrame:
    """The examples every fine-tuned system with facts and every prompted system answered."""
    columns = [s for s in values.columns if s in facts or s in prompted]
    return values[columns].dropna()


def learning_curve(values: pd.DataFrame, facts: Mapping[str, TrainingFacts], prompted: Sequence[str] = (), *,
                   n_boot: int = DEFAULT_BOOT, seed: int = 0) -> pd.DataFrame:
    """Per base model and number of labelled pairs: the fine-tuned model's mean score with its 95% bootstrap
    interval, on the examples every fine-tuned and prompted system answered, the seeds averaged per example.

    ``values``: examples x systems, one metric (:attr:`ComparisonSetup.values`). Columns: base_model, pairs,
    seeds, systems, n, mean, ci_low, ci_high.
    """
    rows = _paired_rows(values, facts, prompted)
    out = []
    for (base, pairs), systems in _groups(facts, rows).items():
        ci = mean_ci(rows[systems].mean(axis=1).to_numpy(), n_boot, seed)
        out.append({"base_model": base, "pairs": pairs, "seeds": ", ".join(str(facts[s].seed) for s in systems),
                    "systems": ", ".join(systems), "n": ci.n, "mean": ci.estimate, "ci_low": ci.low,
                    "ci_high": ci.high})
    return pd.DataFrame(out, columns=["base_model", "pairs", "seeds", "systems", "n", "mean", "ci_low", "ci_high"])


def prompted_levels(values: pd.DataFrame, facts: Mapping[str, TrainingFacts], prompted: Sequence[str], *,
                    n_boot: int = DEFAULT_BOOT, seed: int = 0) -> pd.DataFrame:
    """Each prompted system's mean with its 95% interval on the examples of :func:`learning_curve` (the bands)."""
    rows = _paired_rows(values, facts, prompted)
    out = []
    for system in prompted:
        if system in rows:
            ci = mean_ci(rows[system].to_numpy(), n_boot, seed)
            out.append({"system": system, "n": ci.n, "mean": ci.estimate, "ci_low": ci.low, "ci_high": ci.high})
    return pd.DataFrame(out, columns=["system", "n", "mean", "ci_low", "ci_high"])


def break_even(values: pd.DataFrame, facts: Mapping[str, TrainingFacts], prompted: Sequence[str], *,
               n_boot: int = DEFAULT_BOOT, seed: int = 0) -> pd.DataFrame:
    """Per base model, number of pairs and prompted system: fine-tuned minus prompted on the same examples (the
    seeds averaged per example) with its paired 95% interval, and ``ahead`` when the interval lies above 0."""
    rows = _paired_rows(values, facts, prompted)
    out = []
    for (base, pairs), systems in _groups(facts, rows).items():
        tuned = rows[systems].mean(axis=1).to_numpy()
        for system in prompted:
            if system not in rows:
                continue
            r = paired_comparison(tuned, rows[system].to_numpy(), n_boot, seed)
            out.append({"base_model": base, "pairs": pairs, "prompted": system, "n": r.n, "diff": r.diff,
                        "diff_low": r.diff_low, "diff_high": r.diff_high, "ahead": bool(r.diff_low > 0)})
    return pd.DataFrame(out, columns=["base_model", "pairs", "prompted", "n", "diff", "diff_low", "diff_high", "ahead"])


def break_even_sentences(table: pd.DataFrame) -> list[str]:
    """Per base model and prompted system of :func:`break_even`: from how many labelled pairs on the fine-tuned
    model is ahead beyond the paired interval (at that size and every larger one measured), or that it is not
    within this run's budget."""
    sentences = []
    for (base, system), part in table.groupby(["base_model", "prompted"], sort=True):
        part = part.sort_values("pairs")
        ahead = part["ahead"].to_numpy()
        stays = [i for i in range(len(ahead)) if ahead[i:].all()]
        largest = int(part["pairs"].max())
        if stays:
            pairs = int(part["pairs"].iloc[stays[0]])
            sentences.append(f"Fine-tuned {base} is ahead of {system} beyond the 95% interval from {pairs:,} "
                             f"labelled pairs on (every size measured up to {largest:,}).")
        else:
            sentences.append(f"Fine-tuned {base} is not ahead of {system} beyond the 95% interval within this "
                             f"run's budget (sizes measured up to {largest:,} labelled pairs).")
    return sentences


def seed_spread(values: pd.DataFrame, facts: Mapping[str, TrainingFacts], *, n_boot: int = DEFAULT_BOOT,
                seed: int = 0) -> pd.DataFrame:
    """Per training run with at least :data:`MIN_SEEDS` seeds (one base model, decoding and recipe: see
    :func:`wfutils.evaluation.selection.seed_groups`): the mean over seeds of each seed's mean score, their standard deviation and range (what another training run would
    change), beside the 95% bootstrap interval of the seed-averaged score (what other requests would change).
    ``pairs`` and ``steps`` list each seed's: checkpoint selection may keep another step for another seed."""
    out = []
    for systems in _seed_trainings(facts, [s for s in values.columns if s in facts]):
        rows = values[systems].dropna()  # the requests every seed answered (learning-curve points answer fewer)
        if rows.empty:
            continue
        base = facts[systems[0]].base_model
        means = rows[systems].mean(axis=0)
        ci = mean_ci(rows[systems].mean(axis=1).to_numpy(), n_boot, seed)
        out.append({"base_model": base, "pairs": ", ".join(str(facts[s].pairs) for s in systems),
                    "steps": ", ".join(str(facts[s].steps) for s in systems), "n_seeds": len(systems),
                    "seeds": ", ".join(str(facts[s].seed) for s in systems), "n": ci.n, "mean": float(means.mean()),
                    "seed_sd": float(means.std(ddof=1)), "seed_min": float(means.min()),
                    "seed_max": float(means.max()), "ci_low": ci.low, "ci_high": ci.high})
    return pd.DataFrame(out, columns=["base_model", "pairs", "steps", "n_seeds", "seeds", "n", "mean", "seed_sd",
                                      "seed_min", "seed_max", "ci_low", "ci_high"])


# --------------------------------------------------------------------------- glued for the book

def decision_glue(costs: pd.DataFrame, payback: pd.DataFrame, validity: pd.DataFrame, fine_tuned: str | None,
                  best_prompted: str | None) -> dict[str, Any]:
    """The chapter's numbers under stable names (``decision_*``) for ``{glue:text}`` in the book's prose: the
    fine-tuned and best prompted systems' latency, cost, validity, and the payback against the best prompted one
    (NaN where not measured, ``never`` as inf)."""
    nan = math.nan
    out: dict[str, Any] = {"decision_finetuned_system": fine_tuned or "none",
                           "decision_best_prompted_system": best_prompted or "none"}
    for role, system in (("finetuned", fine_tuned), ("best_prompted", best_prompted)):
        known = system is not None and system in costs.index
        for column in ("latency_p50_s", "latency_p95_s", "cpu_s_per_1m", "usd_per_1m"):
            out[f"decision_{role}_{column}"] = float(costs.loc[system, column]) if known else nan
        valid = system is not None and system in validity.index
        for metric in ("json_valid", "schema_valid"):
            out[f"decision_{role}_{metric}"] = float(validity.loc[system, metric]) if valid else nan
    out["decision_one_off_cpu_s"] = (float(costs.loc[fine_tuned, "one_off_cpu_s"])
                                     if fine_tuned is not None and fine_tuned in costs.index else nan)
    row = payback[(payback["fine_tuned"] == fine_tuned) & (payback["prompted"] == best_prompted)]
    out["decision_payback_requests"] = float(row["payback_requests"].iloc[0]) if len(row) else nan
    out["decision_payback_sentence"] = payback_sentence(row.iloc[0]) if len(row) else "no comparison in this run"
    return out
