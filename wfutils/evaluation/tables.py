"""Tables built from an evaluation, and tables as the book shows them.

Analysis tables: feature tags, error tags and their rates (per system, per feature tag), the
implicit-step table, per-feature gains, cost and latency, the Pareto front, the largest wins and
losses between two systems. Per-system tables carry the systems' metadata columns (arm,
base_model, n_params, strategy, k, retrieval) so they can be grouped and coloured by them
(:func:`with_meta`).

Presentation: readable headers and rounding (:func:`readable`), parameter counts as ``135M`` /
``1.5B`` (:func:`params_label`), means with their interval in one cell (:func:`ci_text`), wide
tables split into narrower ones (:func:`split_columns`) so that each fits the book's page, and the
notes of a run as one admonition (:func:`notes_admonition`) instead of printed lines.
"""

from __future__ import annotations

import html
import json
import os
import re
import textwrap
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from wfutils.evaluation.loading import system_vocabularies
from wfutils.evaluation.result import META_COLUMNS, Evaluation, meta_of
from wfutils.evaluation.taxonomy import ERROR_TAGS, describe_edit_script, error_tags

QUALITY = "flowsim_with_inputs"


def with_meta(table: pd.DataFrame, scores: pd.DataFrame, on: str = "system") -> pd.DataFrame:
    """``table`` with the metadata columns of the system named in its column ``on`` appended."""
    meta = meta_of(scores)
    if on != "system":
        meta = meta.add_prefix(f"{on}_")
    out = table.drop(columns=[c for c in meta.columns if c in table.columns])
    joined = meta.reindex(out[on].astype(str).to_numpy())
    joined.index = out.index
    return pd.concat([out, joined], axis=1)


def feature_table(examples: pd.DataFrame) -> pd.DataFrame:
    """One row per (id, feature) for joining feature tags onto the scores."""
    exploded = examples[["id", "features"]].explode("features").dropna()
    return exploded.rename(columns={"features": "feature"}).reset_index(drop=True)


def error_table(evaluation: Evaluation, run_dir: str | os.PathLike[str], *, progress: bool = True) -> pd.DataFrame:
    """Error tags (:func:`wfutils.evaluation.taxonomy.error_tags`) of every scored prediction: system, arm, subset, id, tag.

    A prediction without any error gets the tag ``none``. Hallucinated steps / tables are judged
    against each system's training catalogue (:func:`wfutils.evaluation.loading.system_vocabularies`,
    read from ``run_dir``).
    """
    from tqdm import tqdm

    vocab, _ = system_vocabularies(run_dir, evaluation.examples, evaluation.metas)
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
        defs, tables = vocab[r.system][example["dataset"]]
        tags = error_tags(flow, reference, r.parse_status, known_definitions=defs, known_tables=tables)
        arm = evaluation.metas[r.system].arm
        for tag in tags or ["none"]:
            rows.append({"system": r.system, "arm": arm, "subset": r.subset, "id": r.id, "tag": tag})
    return pd.DataFrame(rows, columns=["system", "arm", "subset", "id", "tag"])


def cost_table(scores: pd.DataFrame, subset: str | None = None) -> pd.DataFrame:
    """Per system: examples, mean FlowSim with inputs, seconds (mean, median, 95th percentile), tokens and USD per
    flow, plus metadata columns.

    Columns: system, n, flowsim_with_inputs, seconds_per_flow, tokens_per_flow, usd_per_1000_flows,
    latency_p50_s, latency_p95_s, then :data:`~wfutils.evaluation.result.META_COLUMNS`. ``subset``
    restricts to one evaluation set (default: every scored example). A system whose cost is
    unknown for some example gets NaN dollars (never a silently partial sum).
    """
    part = scores if subset is None else scores[scores["subset"] == subset]
    wanted = [QUALITY, "latency_s", "prompt_tokens", "completion_tokens", "cost_usd"]
    table = (part[part["metric"].isin(wanted)]
             .pivot_table(index="system", columns="metric", values="value", aggfunc=lambda v: v.mean(skipna=False),
                          observed=True)
             .reindex(columns=wanted))
    table.index = table.index.astype(str)
    counts = part[part["metric"] == QUALITY].groupby("system", observed=True)["id"].count()
    counts.index = counts.index.astype(str)
    latency = part[part["metric"] == "latency_s"].groupby("system", observed=True)["value"]
    percentiles = {name: latency.quantile(q).rename(index=str).reindex(table.index)
                   for name, q in (("latency_p50_s", 0.5), ("latency_p95_s", 0.95))}
    out = pd.DataFrame({
        "n": counts.reindex(table.index).fillna(0).astype(int),
        QUALITY: table[QUALITY],
        "seconds_per_flow": table["latency_s"],
        "tokens_per_flow": table["prompt_tokens"] + table["completion_tokens"],
        "usd_per_1000_flows": table["cost_usd"] * 1000,
        **percentiles,
    })
    out.index.name = "system"
    return with_meta(out.reset_index(), scores)


def pareto_front(table: pd.DataFrame, quality: str = QUALITY, costs: Sequence[str] = ("seconds_per_flow",)
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


def _tag_columns(present: Any) -> list[str]:
    """``none`` and the error tags in :data:`~wfutils.evaluation.taxonomy.ERROR_TAGS` order, those present only."""
    present = set(present)
    return [t for t in ["none", *ERROR_TAGS] if t in present]


def error_rates(tags: pd.DataFrame, predictions: pd.DataFrame) -> pd.DataFrame:
    """Share of each system's predictions that carry each error tag (rows: systems; columns: tags).

    ``tags``: :func:`error_table`; an example can carry several tags, ``none`` marks a perfect flow.
    """
    n_examples = predictions.groupby("system").size()
    return (tags.groupby(["system", "tag"]).size().unstack(fill_value=0)
            .reindex(columns=_tag_columns(tags["tag"]))
            .div(n_examples, axis=0))


def error_rates_by_feature(tags: pd.DataFrame, predictions: pd.DataFrame, features: pd.DataFrame,
                           arms: dict[str, str]) -> pd.DataFrame:
    """:func:`error_rates` with the systems of each arm pooled, per feature tag (rows: arm, feature).

    ``features``: :func:`feature_table`; ``arms``: system -> arm (from the systems' metadata).
    """
    if features.empty:
        return pd.DataFrame()
    per = predictions[["system", "id"]].merge(features, on="id")
    per["arm"] = per["system"].map(arms)
    denominators = per.groupby(["arm", "feature"]).size()
    tagged = per.merge(tags.drop(columns="arm"), on=["system", "id"])
    by_feature = (tagged.groupby(["arm", "feature", "tag"]).size() / denominators).unstack(fill_value=0)
    return by_feature.reindex(columns=_tag_columns(by_feature.columns))


def tag_lists(tags: pd.DataFrame) -> pd.Series:
    """The error tags of each prediction as a list (index: system, id)."""
    return tags.groupby(["system", "id"])["tag"].apply(list)


def implicit_step_table(values: pd.DataFrame, features: pd.DataFrame, tags: pd.DataFrame, arms: dict[str, str], *,
                        metric: str = QUALITY, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per system, examples tagged ``implicit_step`` against the others: mean ``metric`` with its 95% CI and the
    share of examples with a missing step (does a step the request only implies go missing more often?).

    ``values``: (subset, id) x systems (:meth:`Evaluation.wide`). Columns: system, arm, examples
    (``implicit_step`` / ``other``), n, ``metric``, ci_low, ci_high, missing_step_rate; empty when no
    example carries the tag.
    """
    from wfutils.evaluation.statistics import mean_ci

    columns = ["system", "arm", "examples", "n", metric, "ci_low", "ci_high", "missing_step_rate"]
    implicit_ids = set(features.loc[features["feature"] == "implicit_step", "id"]) if not features.empty else set()
    if not implicit_ids:
        return pd.DataFrame(columns=columns)
    lists = tag_lists(tags)
    rows = []
    for system in values.columns:
        scores = values[system].dropna()
        ids = scores.index.get_level_values(1)
        inside = np.asarray([i in implicit_ids for i in ids])
        missing = {i for (s, i), t in lists.items() if s == system and "missing_step" in t}
        for label, mask in (("implicit_step", inside), ("other", ~inside)):
            if mask.any():
                ci = mean_ci(scores[mask].to_numpy(), n_boot, seed)
                rows.append({"system": system, "arm": arms[system], "examples": label, "n": ci.n,
                             metric: ci.estimate, "ci_low": ci.low, "ci_high": ci.high,
                             "missing_step_rate": float(np.mean([i in missing for i in ids[mask]]))})
    return pd.DataFrame(rows, columns=columns)


def feature_gains(by_feature: pd.DataFrame, finetuned: str, prompted: Sequence[str]) -> pd.DataFrame:
    """Per feature tag: the fine-tuned system's mean, the mean over ``prompted`` systems and the gain, largest first.

    ``by_feature``: :func:`wfutils.evaluation.statistics.feature_summary`. Empty when the
    fine-tuned system has no feature row.
    """
    columns = ["n", "fine_tuned", "prompted_mean", "gain"]
    if by_feature.empty:
        return pd.DataFrame(columns=columns)
    grid = by_feature.pivot_table(index="feature", columns="system", values="mean", observed=True)
    if finetuned not in grid:
        return pd.DataFrame(columns=columns)
    gains = pd.DataFrame({"n": by_feature.groupby("feature")["n"].max(), "fine_tuned": grid[finetuned],
                          "prompted_mean": grid[[p for p in prompted if p in grid]].mean(axis=1)})
    gains["gain"] = gains["fine_tuned"] - gains["prompted_mean"]
    return gains.sort_values("gain", ascending=False)


def domain_table(scores: pd.DataFrame, metric: str = QUALITY) -> pd.DataFrame:
    """Examples and mean ``metric`` per domain, evaluation set, arm and system."""
    return (scores[scores.metric == metric]
            .groupby(["domain", "subset", "arm", "system"], observed=True)["value"].agg(["count", "mean"])
            .rename(columns={"mean": f"mean {metric}"}))


def head_to_head(values: pd.DataFrame, first: str | None, second: str | None) -> pd.Series:
    """Per example (both predicted), ``first`` minus ``second`` (empty when either is None or absent)."""
    if first is None or second is None or first not in values or second not in values:
        return pd.Series(dtype=float, name="finetuned_minus_prompted")
    pair = values[[first, second]].dropna()
    return (pair[first] - pair[second]).rename("finetuned_minus_prompted")


def largest_differences(diff: pd.Series, examples: pd.DataFrame, tags: pd.DataFrame, first: str, second: str,
                        n: int = 5) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``n`` largest wins and the ``n`` largest losses of :func:`head_to_head`, with request, feature
    tags and each system's error tags."""
    by_id = examples.set_index("id")
    lists = tag_lists(tags)
    table = pd.DataFrame({"diff": diff})
    ids = [i for _, i in table.index]
    table["request"] = [by_id.loc[i, "request"] for i in ids]
    table["features"] = [", ".join(by_id.loc[i, "features"]) for i in ids]
    table["finetuned_tags"] = [", ".join(lists.get((first, i), [])) for i in ids]
    table["prompted_tags"] = [", ".join(lists.get((second, i), [])) for i in ids]
    return table.sort_values("diff", ascending=False).head(n), table.sort_values("diff").head(n)


def worst_examples(evaluation: Evaluation, tags: pd.DataFrame, n_worst: int, metric: str = QUALITY) -> list[Any]:
    """For each system, its ``n_worst`` lowest-scoring examples side by side with the reference, as displayable
    objects: the request, reference and prediction, error tags and the edit script from prediction to reference."""
    from IPython.display import HTML, Markdown

    from wfutils.flows import flowsim

    values = evaluation.wide(metric)
    examples = evaluation.examples.set_index("id")
    predictions = evaluation.predictions.set_index(["system", "id"])
    lists = tag_lists(tags)
    arms = {name: meta.arm for name, meta in evaluation.metas.items()}
    # Two columns of half the page each, long JSON wrapping inside them: the pair fits any page width.
    cell = "<td style='vertical-align:top'><pre style='white-space:pre-wrap;overflow-wrap:anywhere;margin:0'>{}</pre></td>"
    shown: list[Any] = []
    for system in values.columns:
        scores = values[system].dropna()
        worst = scores[scores < 1].sort_values().head(n_worst)
        if worst.empty:
            shown.append(Markdown(f"**{system}**: every flow it predicted is perfect ({header(metric)} 1)."))
        for (_, ident), score in worst.items():
            example, record = examples.loc[ident], predictions.loc[(system, ident)]
            flow = json.loads(record["flow"]) if isinstance(record["flow"], str) else None
            script = describe_edit_script(flowsim.edit_operations(flow if flow is not None else record["output"],
                                                                  example["reference"]), limit=12)
            output = record["output"] if len(record["output"]) < 1500 else record["output"][:1500] + " ..."
            shown.append(Markdown(
                f"**{system}** ({arms[system]}) on `{ident}` ({example['subset']}), {header(metric)} {score:.3f}, "
                f"parse {record['parse_status']}, tags: {', '.join(lists.get((system, ident), []))}\n\n"
                f"> {example['request']}"))
            shown.append(HTML("<table style='table-layout:fixed;width:100%'><tr><th>reference</th><th>prediction</th>"
                              "</tr><tr>"
                              + cell.format(html.escape(textwrap.fill(example["reference"], 80)))
                              + cell.format(html.escape(textwrap.fill(output, 80))) + "</tr></table>"))
            shown.append(Markdown("Edit script:\n\n" + ("\n".join(f"- {line}" for line in script) or "- (none)")))
    return shown


# --------------------------------------------------------------------------- presentation (the book)

#: Column names as a reader sees them; anything else gets its underscores replaced (:func:`header`).
HEADERS: dict[str, str] = {
    "flowsim_with_inputs": "FlowSim (with inputs)", "flowsim_no_inputs": "FlowSim (no inputs)",
    "mean flowsim_with_inputs": "Mean FlowSim (with inputs)",
    "trigger_match": "Trigger match", "component_f1": "Component F1", "json_valid": "Valid JSON",
    "schema_valid": "Valid schema", "truncated": "Truncated", "hallucinated_steps": "Hallucinated steps",
    "hallucinated_tables": "Hallucinated tables", "length_error": "Length error",
    "system": "System", "arm": "Arm", "base_model": "Base model", "n_params": "Parameters", "strategy": "Strategy",
    "k": "k", "retrieval": "Retrieval", "engine": "Engine", "decoding": "Decoding", "adapter": "Adapter",
    "model_sha256": "Model SHA-256", "train_corpus": "Training corpus", "recipe": "Recipe",
    "training_seed": "Training seed",
    "subset": "Evaluation set", "domain": "Domain", "dataset": "Data set", "split": "Split", "feature": "Feature tag",
    "metric": "Metric", "n": "n", "count": "n", "mean": "Mean", "ci_low": "95% CI low", "ci_high": "95% CI high",
    "fine_tuned": "Fine-tuned", "prompted": "Prompted", "mean_fine_tuned": "Mean, fine-tuned",
    "mean_prompted": "Mean, prompted", "diff": "Difference", "diff_low": "95% CI low", "diff_high": "95% CI high",
    "p_bootstrap": "p (bootstrap)", "p_permutation": "p (permutation)", "p_holm": "p (Holm)",
    "rel_improvement_pct": "Relative improvement (%)", "rel_low": "95% CI low (%)", "rel_high": "95% CI high (%)",
    "prompted_mean": "Prompted (mean)", "gain": "Gain",
    "seconds_per_flow": "Seconds per flow", "tokens_per_flow": "Tokens per flow",
    "usd_per_1000_flows": "USD per 1,000 flows", "pareto": "Pareto front",
    "latency_p50_s": "Latency p50 (s)", "latency_p95_s": "Latency p95 (s)",
    "cpu_s_per_1k": "CPU-s per 1,000", "cpu_s_per_1m": "CPU-s per 1,000,000", "cpu_h_per_1m": "CPU-hours per 1,000,000", "usd_per_1k": "USD per 1,000",
    "usd_per_1m": "USD per 1,000,000", "one_off_cpu_s": "Fine-tuning, CPU-s (one-off)",
    "one_off_wall_s": "Fine-tuning, wall s", "payback_requests": "Paid back after (requests)",
    "json_valid_ci": "Valid JSON (95% CI)", "schema_valid_ci": "Valid schema (95% CI)",
    "pairs": "Labelled pairs", "seeds": "Seeds", "n_seeds": "Seeds (n)", "seed_sd": "SD over seeds",
    "seed_min": "Lowest seed", "seed_max": "Highest seed", "ahead": "Ahead beyond the interval",
    "claim_id": "Claim", "claim": "Statement", "paper": "Paper", "measured": "Measured", "unit": "Unit",
    "verdict": "Verdict", "criterion": "Criterion", "details": "Details",
    "n_reference": "Examples", "n_predicted": "Predicted", "n_missing": "Missing", "n_extra": "Extra",
    "status": "Status", "tag": "Error tag", "examples": "Examples", "missing_step_rate": "Missing-step rate",
    "request": "Request", "features": "Feature tags", "finetuned_minus_prompted": "Fine-tuned minus prompted",
    "finetuned_tags": "Error tags, fine-tuned", "prompted_tags": "Error tags, prompted",
    "oracle": "Oracle system", "bm25": "BM25 system", "bm25_errors": "BM25 errors",
    "still_wrong_with_oracle": "Still wrong with oracle", "error_mass_remaining": "Error remaining",
    "n_answered": "n answered", "n_compared": "n compared above",
    "flowsim_with_inputs_ci": "FlowSim with inputs (95% CI)",
    "none": "none",
}


def header(name: object) -> object:
    """A column name as a reader sees it: :data:`HEADERS`, else underscores to spaces, first letter up.

    Non-strings (numbers, None) pass through. Error and feature tags (lower-case identifiers
    such as ``wrong_trigger_type``) read as words: ``Wrong trigger type``.
    """
    if not isinstance(name, str):
        return name
    if name in HEADERS:
        return HEADERS[name]
    text = name.replace("_", " ").strip()
    return text[:1].upper() + text[1:] if text else name


def readable(table: pd.DataFrame, decimals: int = 3, *, rename: dict[str, str] | None = None,
             index: bool = True, missing: str | None = "–") -> pd.DataFrame:
    """``table`` for the book: floats rounded to ``decimals``, column (and index) names readable.

    Works on plain and pivoted (MultiIndex columns) frames; values are not renamed, only the
    headers: plain column names through :func:`header`, the labels of pivoted column levels
    (subsets, systems, metrics) only where :data:`HEADERS` names them. ``rename`` overrides
    :data:`HEADERS` for this table; ``index=False`` leaves the index names alone. Missing numbers
    (NaN) read as ``missing`` (an en dash; None keeps NaN).
    """
    names = {**HEADERS, **(rename or {})}

    def label(name: object) -> object:
        return names[name] if isinstance(name, str) and name in names else header(name)

    def known(value: object) -> object:  # values of a pivoted level (subsets, systems) keep their spelling
        return names.get(value, value) if isinstance(value, str) else value

    out = table.copy()
    floats = [c for c in out.columns if pd.api.types.is_float_dtype(out[c])]
    if floats:
        out[floats] = out[floats].round(decimals)
        if missing is not None:
            for column in floats:
                if out[column].isna().any():
                    out[column] = out[column].astype(object).where(out[column].notna(), missing)
    if isinstance(out.columns, pd.MultiIndex):
        out.columns = pd.MultiIndex.from_tuples([tuple(known(x) for x in col) for col in out.columns],
                                                names=[label(n) for n in out.columns.names])
    else:
        out.columns = [label(c) for c in out.columns]
        out.columns.name = label(table.columns.name)
    if index:
        out.index = out.index.set_names([label(n) for n in out.index.names])
    return out


#: What the book shows for a model size nobody published (a remote model, a server started by hand).
NOT_PUBLISHED = "not published"


def params_label(n: float | None) -> str:
    """A parameter count as model names write it: ``134515008`` -> ``135M``, ``494032768`` -> ``0.5B``,
    ``1543714304`` -> ``1.5B``; None or 0 (unknown) -> ``not published``."""
    if n is None or not np.isfinite(float(n)) or not n:
        return NOT_PUBLISHED
    n = float(n)
    if n >= 4.5e8:
        return f"{round(n / 1e9, 1):g}B"
    if n >= 1e6:
        return f"{n / 1e6:.0f}M"
    return f"{n / 1e3:.0f}k"


def ci_text(mean: float, low: float, high: float, fmt: str = ".3f", unit: str = "") -> str:
    """A mean and its interval in one cell: ``0.580 [0.520, 0.640]``; with ``unit="%"``: ``+4.1% [-2.0%, +9.9%]``;
    ``n/a`` for NaN."""
    if not np.isfinite(mean):
        return "n/a"
    if not (np.isfinite(low) and np.isfinite(high)):
        return f"{mean:{fmt}}{unit}"
    return f"{mean:{fmt}}{unit} [{low:{fmt}}{unit}, {high:{fmt}}{unit}]"


def with_ci(table: pd.DataFrame, mean: str = "mean", low: str = "ci_low", high: str = "ci_high",
            fmt: str = ".3f", unit: str = "") -> pd.Series:
    """:func:`ci_text` of every row of ``table`` (one column instead of three: narrower tables)."""
    return pd.Series([ci_text(m, lo, hi, fmt, unit) for m, lo, hi in zip(table[mean], table[low], table[high])],
                     index=table.index, dtype=object)


#: At most this many value columns in one table of the book: wider tables are split (:func:`split_columns`)
#: so that each fits a 1200-pixel-wide page without clipped columns.
MAX_COLUMNS = 7


def split_columns(table: pd.DataFrame, max_columns: int = MAX_COLUMNS) -> list[pd.DataFrame]:
    """``table`` cut into the fewest tables of at most ``max_columns`` columns (same index, columns in order,
    sizes as even as possible: 8 columns give 4 + 4, not 7 + 1)."""
    columns = list(table.columns)
    if max_columns < 1:
        raise ValueError(f"max_columns must be at least 1, got {max_columns}")
    parts = -(-len(columns) // max_columns)
    if parts <= 1:
        return [table]
    sizes = [len(columns) // parts + (i < len(columns) % parts) for i in range(parts)]  # the first ones larger
    bounds = np.cumsum([0, *sizes])
    return [table[columns[a:b]] for a, b in zip(bounds[:-1], bounds[1:])]


def answered_beyond(everything: pd.DataFrame, summary: pd.DataFrame, metric: str = QUALITY) -> pd.DataFrame:
    """Systems that answered more of an evaluation set than they were compared on: their mean ``metric`` (95% CI)
    on all they answered, with both counts (index: system, subset; empty when there is none).

    ``everything``: :func:`wfutils.evaluation.statistics.system_summary` of the scores kept with
    ``on_incomplete="keep"``; ``summary``: the compared summary (:func:`~wfutils.evaluation.statistics.summary_all_metrics`).
    """
    compared = summary[summary["metric"] == metric][["system", "subset", "n"]]
    more = everything.merge(compared, on=["system", "subset"], how="left", suffixes=("", "_compared"))
    more = more[more["n"] > more["n_compared"].fillna(0)]
    table = pd.DataFrame({"system": more["system"], "subset": more["subset"], "n_answered": more["n"],
                          f"{metric}_ci": with_ci(more), "n_compared": more["n_compared"].fillna(0).astype(int)})
    return table.set_index(["system", "subset"])


def system_table(evaluation: Evaluation) -> pd.DataFrame:
    """The systems of an evaluation as the book lists them (index: system): arm, base model, size (``135M``),
    strategy, k and retrieval (:func:`engine_table` has how each one ran)."""
    rows = {name: {"arm": m.arm, "base_model": m.base_model, "n_params": params_label(m.n_params),
                   "strategy": m.strategy, "k": m.k, "retrieval": m.retrieval}
            for name, m in sorted(evaluation.metas.items())}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "system"
    return table


def engine_table(evaluation: Evaluation) -> pd.DataFrame:
    """How each system of an evaluation ran (index: system): its engine, in one line, and its decoding."""
    rows = {name: {"engine": getattr(m.engine, "label", m.engine) or "not recorded", "decoding": m.decoding}
            for name, m in sorted(evaluation.metas.items())}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "system"
    return table


def coverage_table(evaluation: Evaluation) -> pd.DataFrame:
    """Examples predicted / examples in the set, per system (rows) and evaluation set (columns)."""
    coverage = evaluation.coverage
    return (coverage.assign(predicted=coverage["n_predicted"].astype(str) + " / " + coverage["n_reference"].astype(str))
            .pivot_table(index="system", columns="subset", values="predicted", aggfunc="first"))


def summary_tables(summary: pd.DataFrame, metrics: Sequence[str], *, rows: Sequence[str] = ("arm", "system"),
                   columns: Sequence[str] = ("metric", "subset"), max_columns: int = MAX_COLUMNS) -> list[pd.DataFrame]:
    """:func:`wfutils.evaluation.statistics.summary_all_metrics` for ``metrics`` as the book shows it: one cell
    per mean with its 95% CI, ``rows`` x ``columns`` (metrics in the order given), split to fit the page."""
    part = summary[summary["metric"].isin(list(metrics))]
    grid = part.assign(text=with_ci(part)).pivot_table(index=list(rows), columns=list(columns), values="text",
                                                       aggfunc="first", observed=True)
    rank = {m: i for i, m in enumerate(metrics)}
    level = list(columns).index("metric") if "metric" in columns else None
    if level is not None:
        keys = [c if isinstance(c, tuple) else (c,) for c in grid.columns]
        grid = grid[[c for _, c in sorted(zip(keys, grid.columns), key=lambda kc: (rank[kc[0][level]], kc[0]))]]
    return split_columns(grid, max_columns)


def paired_table(paired: pd.DataFrame) -> pd.DataFrame:
    """:func:`wfutils.evaluation.statistics.paired_comparisons` as the book shows it: the difference and the
    relative improvement each with its CI in one cell, the permutation p-value and its Holm adjustment (the
    means are in the summary table)."""
    table = pd.DataFrame({"n": paired["n"], "diff": with_ci(paired, "diff", "diff_low", "diff_high", "+.3f"),
                          "rel_improvement_pct": with_ci(paired, "rel_improvement_pct", "rel_low", "rel_high",
                                                         "+.1f", "%"),
                          "p_permutation": paired["p_permutation"], "p_holm": paired["p_holm"]})
    table.index = pd.MultiIndex.from_frame(paired[["fine_tuned", "prompted", "subset"]])
    return table


def notes_admonition(notes: Sequence[str], title: str = "Notes on this run's input") -> Any:
    """The notes of an evaluation (what reading skipped or repaired, which systems were restricted) as one
    collapsed note admonition, never as printed lines; empty HTML (nothing shown) when there is no note.

    HTML: ``<div class="admonition note wfbook-notes">`` with the title and a ``<details>`` list.
    """
    from IPython.display import HTML

    if not notes:
        return HTML("")
    items = "".join(f"<li>{html.escape(str(note))}</li>" for note in notes)
    return HTML(f'<div class="admonition note {NOTES_CLASS}"><p class="admonition-title">{html.escape(title)}</p>'
                f"<details><summary>{len(notes)} note{'s' if len(notes) != 1 else ''}</summary>"
                f"<ul>{items}</ul></details></div>")


def admonition(text: str, title: str = "Not measured in this run") -> Any:
    """``text`` (``code`` spans allowed) as one note admonition in the book, as HTML so that it renders the same
    in any notebook output."""
    from IPython.display import HTML

    body = re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))
    return HTML(f'<div class="admonition note"><p class="admonition-title">{html.escape(title)}</p><p>{body}</p></div>')


#: CSS class of the admonition that holds a run's notes (:func:`notes_admonition`).
NOTES_CLASS = "wfbook-notes"

#: CSS class of tables whose cells wrap long unbroken values (``_static/wfbook.css``).
WRAP_CLASS = "wfbook-wrap"


def wrapped(table: pd.DataFrame) -> Any:
    """``table`` as a pandas Styler whose HTML carries :data:`WRAP_CLASS`: in the book its cells wrap
    long values (SHA-256 digests, file names, module lists) instead of widening the page."""
    return table.style.set_table_attributes(f'class="dataframe {WRAP_CLASS}"')


__all__ = ["HEADERS", "MAX_COLUMNS", "META_COLUMNS", "NOTES_CLASS", "NOT_PUBLISHED", "QUALITY", "WRAP_CLASS",
           "admonition", "answered_beyond", "ci_text", "cost_table", "coverage_table", "domain_table", "engine_table",
           "error_rates", "error_rates_by_feature", "error_table", "feature_gains", "feature_table",
           "head_to_head", "header", "implicit_step_table", "largest_differences", "notes_admonition",
           "paired_table", "pareto_front", "params_label", "readable", "split_columns", "summary_tables",
           "system_table", "tag_lists", "with_ci", "with_meta", "worst_examples", "wrapped"]
