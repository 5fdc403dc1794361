"""Tables built from an evaluation: feature tags, error tags, cost and latency, the Pareto front.

Per-system tables carry the systems' metadata columns (arm, base_model, n_params, strategy, k,
retrieval) so they can be grouped and coloured by them (:func:`with_meta`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from wfutils.evaluation.loading import known_vocabulary
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


def error_table(evaluation: Evaluation, *, progress: bool = True) -> pd.DataFrame:
    """Error tags (:func:`wfutils.evaluation.taxonomy.error_tags`) of every scored prediction: system, arm, subset, id, tag.

    A prediction without any error gets the tag ``none``.
    """
    from tqdm import tqdm

    vocab = known_vocabulary(evaluation.examples)
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


__all__ = ["META_COLUMNS", "QUALITY", "cost_table", "error_table", "feature_table", "pareto_front", "with_meta"]
