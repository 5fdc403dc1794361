"""Tables built from an evaluation: feature tags, error tags, cost and latency, the Pareto front.

Per-system tables carry the systems' metadata columns (arm, base_model, n_params, strategy, k,
retrieval) so they can be grouped and coloured by them (:func:`with_meta`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from wfutils.evaluation.loading import system_vocabularies
from wfutils.evaluation.result import META_COLUMNS, Evaluation, meta_of
from wfutils.evaluation.taxonomy import error_tags

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
    """Per system: examples, mean FlowSim with inputs, seconds, tokens and USD per flow, plus metadata columns.

    Columns: system, n, flowsim_with_inputs, seconds_per_flow, tokens_per_flow,
    usd_per_1000_flows, then :data:`~wfutils.evaluation.result.META_COLUMNS`. ``subset``
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
    out = pd.DataFrame({
        "n": counts.reindex(table.index).fillna(0).astype(int),
        QUALITY: table[QUALITY],
        "seconds_per_flow": table["latency_s"],
        "tokens_per_flow": table["prompt_tokens"] + table["completion_tokens"],
        "usd_per_1000_flows": table["cost_usd"] * 1000,
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
    "model_sha256": "Model SHA-256", "train_corpus": "Training corpus",
    "subset": "Evaluation set", "domain": "Domain", "dataset": "Data set", "split": "Split", "feature": "Feature tag",
    "metric": "Metric", "n": "n", "count": "n", "mean": "Mean", "ci_low": "95% CI low", "ci_high": "95% CI high",
    "fine_tuned": "Fine-tuned", "prompted": "Prompted", "mean_fine_tuned": "Mean, fine-tuned",
    "mean_prompted": "Mean, prompted", "diff": "Difference", "diff_low": "95% CI low", "diff_high": "95% CI high",
    "p_bootstrap": "p (bootstrap)", "p_permutation": "p (permutation)", "p_holm": "p (Holm)",
    "rel_improvement_pct": "Relative improvement (%)", "rel_low": "95% CI low (%)", "rel_high": "95% CI high (%)",
    "prompted_mean": "Prompted (mean)", "gain": "Gain",
    "seconds_per_flow": "Seconds per flow", "tokens_per_flow": "Tokens per flow",
    "usd_per_1000_flows": "USD per 1,000 flows", "pareto": "Pareto front",
    "claim_id": "Claim", "claim": "Statement", "paper": "Paper", "measured": "Measured", "unit": "Unit",
    "verdict": "Verdict", "criterion": "Criterion", "details": "Details",
    "n_reference": "Examples", "n_predicted": "Predicted", "n_missing": "Missing", "n_extra": "Extra",
    "status": "Status", "tag": "Error tag", "examples": "Examples", "missing_step_rate": "Missing-step rate",
    "request": "Request", "features": "Feature tags", "finetuned_minus_prompted": "Fine-tuned minus prompted",
    "finetuned_tags": "Error tags, fine-tuned", "prompted_tags": "Error tags, prompted",
    "oracle": "Oracle system", "bm25": "BM25 system", "bm25_errors": "BM25 errors",
    "still_wrong_with_oracle": "Still wrong with oracle", "error_mass_remaining": "Error remaining",
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


#: CSS class of tables whose cells wrap long unbroken values (``_static/wfbook.css``).
WRAP_CLASS = "wfbook-wrap"


def wrapped(table: pd.DataFrame) -> Any:
    """``table`` as a pandas Styler whose HTML carries :data:`WRAP_CLASS`: in the book its cells wrap
    long values (SHA-256 digests, file names, module lists) instead of widening the page."""
    return table.style.set_table_attributes(f'class="dataframe {WRAP_CLASS}"')


__all__ = ["HEADERS", "META_COLUMNS", "QUALITY", "WRAP_CLASS", "cost_table", "error_table", "feature_table",
           "header", "pareto_front", "readable", "with_meta", "wrapped"]
