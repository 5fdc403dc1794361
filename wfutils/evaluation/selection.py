"""Which systems a comparison uses, from their metadata; and the fine-tuned system, chosen on validation.

* fine-tuned systems: ``arm == "fine-tuned"``; prompted systems: ``arm == "prompted"`` with a
  retrieval other than ``oracle`` (oracle-retrieval variants are an upper bound, not a system
  anyone can deploy);
* oracle pairs: a prompted ``retrieval == "oracle"`` system and the prompted ``retrieval ==
  "bm25"`` system with the same base model, strategy and k;
* the fine-tuned system of the headline (:func:`select_finetuned`): the only one when the run
  has one; otherwise the one with the highest mean FlowSim with inputs on the synthetic
  ``validation`` split, on the examples every fine-tuned system predicted there. Test scores
  never take part. When several fine-tuned systems lack validation predictions there is no
  selection, and the reason says so.

Names play no part: a system called ``slm-...-3shot`` whose sidecar says ``prompted`` is prompted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from wfutils.evaluation.loading import SELECTION_SPLIT, is_selection_split
from wfutils.evaluation.result import meta_of

FINE_TUNED, PROMPTED = "fine-tuned", "prompted"
SELECTION_METRIC = "flowsim_with_inputs"


@dataclass(frozen=True)
class Selection:
    """The fine-tuned system chosen for the headline, or None with the reason."""

    system: str | None
    candidates: tuple[str, ...]
    how: str  # how it was chosen, or why none was
    validation_means: dict[str, float] = field(default_factory=dict)
    n_validation: int = 0

    @property
    def ok(self) -> bool:
        return self.system is not None


@dataclass(frozen=True)
class Comparison:
    """The systems of the fine-tuned vs prompted comparison of a run."""

    selection: Selection
    prompted: tuple[str, ...]  # prompted systems, oracle-retrieval variants excluded
    oracle_pairs: tuple[tuple[str, str], ...]  # (oracle system, its BM25 counterpart)

    @property
    def finetuned(self) -> str | None:
        return self.selection.system


def finetuned_systems(scores: pd.DataFrame) -> list[str]:
    """Fine-tuned systems in a score table (from its ``arm`` column)."""
    meta = meta_of(scores)
    return sorted(meta.index[meta["arm"] == FINE_TUNED])


def prompted_systems(scores: pd.DataFrame, *, include_oracle: bool = False) -> list[str]:
    """Prompted systems in a score table; oracle-retrieval variants only with ``include_oracle``."""
    meta = meta_of(scores)
    mask = meta["arm"] == PROMPTED
    if not include_oracle:
        mask &= meta["retrieval"] != "oracle"
    return sorted(meta.index[mask])


def oracle_pairs(scores: pd.DataFrame) -> list[tuple[str, str]]:
    """(oracle, BM25) prompted systems with the same base model, strategy and k."""
    meta = meta_of(scores)
    prompted = meta[meta["arm"] == PROMPTED]
    pairs = []
    for oracle, row in prompted[prompted["retrieval"] == "oracle"].iterrows():
        twins = prompted[(prompted["retrieval"] == "bm25") & (prompted["base_model"] == row["base_model"])
                         & (prompted["strategy"] == row["strategy"]) & (prompted["k"] == row["k"])]
        if len(twins) == 1:
            pairs.append((str(oracle), str(twins.index[0])))
    return sorted(pairs)


def select_finetuned(scores: pd.DataFrame, selection_scores: pd.DataFrame | None,
                     metric: str = SELECTION_METRIC) -> Selection:
    """The fine-tuned system of the headline (see the module docstring); never looks at test scores.

    ``selection_scores``: scores on the ``validation`` split (:attr:`Evaluation.selection_scores`);
    None takes the validation rows of ``scores``, if any.
    """
    if selection_scores is None and len(scores):
        selection_scores = scores[scores["subset"].map(is_selection_split).astype(bool)]
    candidates = tuple(finetuned_systems(scores)) if len(scores) else ()
    if not candidates:
        return Selection(None, (), "no fine-tuned system in this run")
    if len(candidates) == 1:
        return Selection(candidates[0], candidates, "the run's only fine-tuned system (no selection needed)")
    part = pd.DataFrame() if selection_scores is None or selection_scores.empty else selection_scores[
        (selection_scores["metric"] == metric) & selection_scores["system"].isin(candidates)]
    values = (part.pivot_table(index="id", columns="system", values="value", aggfunc="first", observed=True)
              if len(part) else pd.DataFrame())
    missing = [c for c in candidates if c not in values.columns]
    if missing:
        return Selection(None, candidates,
                         f"{len(candidates)} fine-tuned systems and {', '.join(missing)} "
                         f"{'has' if len(missing) == 1 else 'have'} no predictions on the {SELECTION_SPLIT} split: "
                         f"choosing on test would bias the comparison; generate on synthetic/{SELECTION_SPLIT}")
    values = values[list(candidates)].dropna()
    if values.empty:
        return Selection(None, candidates, f"the fine-tuned systems share no {SELECTION_SPLIT} example")
    means = values.mean()
    best = min(candidates, key=lambda s: (-means[s], s))  # ties: first by name
    return Selection(best, candidates,
                     f"highest mean {metric} on the {SELECTION_SPLIT} split ({len(values)} examples) of "
                     f"{len(candidates)} fine-tuned systems",
                     {str(k): float(v) for k, v in means.items()}, len(values))


def compared_systems(scores: pd.DataFrame, selection_scores: pd.DataFrame | None = None,
                     metric: str = SELECTION_METRIC) -> Comparison:
    """The selected fine-tuned system, the prompted systems and the oracle pairs of a score table."""
    if scores.empty:
        return Comparison(Selection(None, (), "no scores"), (), ())
    return Comparison(select_finetuned(scores, selection_scores, metric), tuple(prompted_systems(scores)),
                      tuple(oracle_pairs(scores)))
