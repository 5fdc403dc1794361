"""Which systems a comparison uses, from their metadata; and the fine-tuned system, chosen on validation.

* fine-tuned systems: ``arm == "fine-tuned"``; prompted systems: ``arm == "prompted"`` with a
  retrieval other than ``oracle`` (oracle-retrieval variants are an upper bound, not a system
  anyone can deploy);
* oracle pairs: a prompted ``retrieval == "oracle"`` system and the prompted ``retrieval ==
  "bm25"`` system with the same base model, strategy and k;
* seeds of one training (:func:`seed_repeats`): fine-tuned systems whose metadata name the same recipe
  (:mod:`wfutils.slm.recipe`), base model and decoding with other training seeds are one candidate, its lowest
  seed; the other seeds are weighed as a spread in notebook 06, never chosen among (picking the luckiest seed
  is not a result);
* the fine-tuned system of the headline (:func:`select_finetuned`): the only candidate when the run
  has one; otherwise the one with the highest mean FlowSim with inputs on the synthetic
  ``validation`` split, on the examples every candidate predicted there. Test scores
  never take part. When several candidates lack validation predictions there is no
  selection, and the reason says so;
* the evaluation set of the headline and the claims (:func:`evaluation_values`) and the best
  prompted system on it (:func:`best_prompted`); :func:`comparison_setup` gathers all of the above
  once, for the claims, the headline and the error analysis alike.

Ties are broken the same way everywhere: the highest mean wins, then the first name in sorted order.

Names play no part: a system called ``slm-...-3shot`` whose sidecar says ``prompted`` is prompted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from wfutils.data.predictions import FINE_TUNED, PROMPTED
from wfutils.evaluation.loading import SELECTION_SPLIT, is_selection_split, subset_name
from wfutils.evaluation.result import meta_of, wide
SELECTION_METRIC = "flowsim_with_inputs"


@dataclass(frozen=True)
class Selection:
    """The fine-tuned system chosen for the headline, or None with the reason."""

    system: str | None
    candidates: tuple[str, ...]
    how: str  # how it was chosen, or why none was
    validation_means: dict[str, float] = field(default_factory=dict)
    n_validation: int = 0
    seed_repeats: tuple[str, ...] = ()  # other seeds of a candidate's recipe: not candidates (:func:`seed_repeats`)

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


def highest_mean(means: pd.Series, systems: Sequence[str]) -> str | None:
    """The system of ``systems`` with the highest mean, ties to the first name in sorted order.

    The one tie rule of the package (the selected fine-tuned system, the best prompted system), so the
    headline, the claims and the error analysis always name the same system. A NaN mean never wins.
    """
    ranked = [(-float(means[s]), str(s)) for s in systems if s in means and np.isfinite(means[s])]
    return min(ranked)[1] if ranked else None


def finetuned_systems(scores: pd.DataFrame) -> list[str]:
    """Fine-tuned systems in a score table (from its ``arm`` column)."""
    meta = meta_of(scores)
    return sorted(meta.index[meta["arm"] == FINE_TUNED])


#: What makes fine-tuned systems seeds of one training: one base model, decoding and recipe (the corpus included).
SAME_TRAINING = ("base_model", "decoding", "recipe")


def seed_groups(systems: pd.DataFrame) -> list[list[str]]:
    """Fine-tuned systems that are seeds of one training (:data:`SAME_TRAINING`), each group sorted by training
    seed, then name. ``systems``: indexed by system, with those columns and ``training_seed`` (as :func:`meta_of`
    gives them); a system without a recipe or a seed (a sidecar older than both) is in no group."""
    if systems.empty:
        return []
    recorded = np.array([isinstance(r, str) and bool(r) for r in systems["recipe"]], dtype=bool)
    known = systems[recorded & systems["training_seed"].notna().to_numpy()]
    return [sorted(map(str, group.index), key=lambda s: (group.at[s, "training_seed"], s))
            for _, group in known.groupby(list(SAME_TRAINING), sort=True, dropna=False)]


def seed_repeats(scores: pd.DataFrame) -> dict[str, str]:
    """Each fine-tuned system that repeats another's training with another seed -> that other system.

    Of each :func:`seed_groups` group the lowest seed (then name) is kept; a system of another seed repeats it.
    Two systems of one seed are no repeats (one adapter decoded two ways, say): both stay candidates."""
    meta = meta_of(scores)
    repeats: dict[str, str] = {}
    for group in seed_groups(meta[meta["arm"] == FINE_TUNED]):
        kept = group[0]
        repeats.update({other: kept for other in group
                        if meta.at[other, "training_seed"] != meta.at[kept, "training_seed"]})
    return repeats


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
    repeats = seed_repeats(scores) if len(scores) else {}
    candidates = tuple(s for s in finetuned_systems(scores) if s not in repeats) if len(scores) else ()
    if not candidates:
        return Selection(None, (), "no fine-tuned system in this run")
    if len(candidates) == 1:
        seeds = sorted(r for r, kept in repeats.items() if kept == candidates[0])
        how = ("the run's only fine-tuned system (no selection needed)" if not seeds else
               f"the first seed of the run's only fine-tuned recipe, no selection needed (the other seed(s), "
               f"{', '.join(seeds)}, make the seed spread)")
        return Selection(candidates[0], candidates, how, seed_repeats=tuple(sorted(repeats)))
    part = pd.DataFrame() if selection_scores is None or selection_scores.empty else selection_scores[
        (selection_scores["metric"] == metric) & selection_scores["system"].isin(candidates)]
    values = (part.pivot_table(index="id", columns="system", values="value", aggfunc="first", observed=True)
              if len(part) else pd.DataFrame())
    missing = [c for c in candidates if c not in values.columns]
    if missing:
        return Selection(None, candidates,
                         f"{len(candidates)} fine-tuned systems and {', '.join(missing)} "
                         f"{'has' if len(missing) == 1 else 'have'} no predictions on the {SELECTION_SPLIT} split: "
                         f"choosing on test would bias the comparison; generate on synthetic/{SELECTION_SPLIT}",
                         seed_repeats=tuple(sorted(repeats)))
    values = values[list(candidates)].dropna()
    if values.empty:
        return Selection(None, candidates, f"the fine-tuned systems share no {SELECTION_SPLIT} example",
                         seed_repeats=tuple(sorted(repeats)))
    means = values.mean()
    best = highest_mean(means, candidates)
    return Selection(best, candidates,
                     f"highest mean {metric} on the {SELECTION_SPLIT} split ({len(values)} examples) of "
                     f"{len(candidates)} fine-tuned systems"
                     + (f" (other seeds of their recipes left out: {', '.join(sorted(repeats))})" if repeats else ""),
                     {str(k): float(v) for k, v in means.items()}, len(values), tuple(sorted(repeats)))


def compared_systems(scores: pd.DataFrame, selection_scores: pd.DataFrame | None = None,
                     metric: str = SELECTION_METRIC) -> Comparison:
    """The selected fine-tuned system, the prompted systems and the oracle pairs of a score table."""
    if scores.empty:
        return Comparison(Selection(None, (), "no scores"), (), ())
    return Comparison(select_finetuned(scores, selection_scores, metric), tuple(prompted_systems(scores)),
                      tuple(oracle_pairs(scores)))


def evaluation_values(scores: pd.DataFrame, metric: str = SELECTION_METRIC) -> tuple[pd.DataFrame, str]:
    """Examples x systems for ``metric`` on the claims' evaluation set, and that set's name.

    The test split of the systems' training corpus when there is one (``test`` for the synthetic
    corpus, the corpus's name for another), else the subsets every system ran, pooled; the
    selection split (``validation``) is never part of it.
    """
    scores = scores[~scores["subset"].map(is_selection_split).astype(bool)]
    matrix = wide(scores, metric)
    subsets = list(matrix.index.get_level_values(0).unique())
    corpora = set(scores["train_corpus"].astype(str)) if "train_corpus" in scores.columns else {"synthetic"}
    home = subset_name(corpora.pop(), "test") if len(corpora) == 1 else "test"
    if home in subsets:
        return matrix.loc[home], home
    full = [s for s in subsets if matrix.loc[s].notna().all().all()]
    chosen = full or subsets
    return matrix.loc[matrix.index.get_level_values(0).isin(chosen)], "+".join(map(str, chosen))


def best_prompted(values: pd.DataFrame, prompted: Sequence[str]) -> str | None:
    """The prompted system with the highest mean in ``values`` (examples x systems), by :func:`highest_mean`."""
    return highest_mean(values[[p for p in prompted if p in values]].mean(), prompted)


@dataclass(frozen=True)
class ComparisonSetup:
    """Fine-tuned vs prompted on the claims' evaluation set: the systems, their values and what is missing."""

    values: pd.DataFrame  # examples x systems, one metric, on ``where``
    where: str  # the evaluation set's name
    comparison: Comparison
    prompted: tuple[str, ...]  # the comparison's prompted systems that have values on ``where``
    best_prompted: str | None

    @property
    def finetuned(self) -> str | None:
        return self.comparison.finetuned

    @property
    def oracle_pairs(self) -> tuple[tuple[str, str], ...]:
        return self.comparison.oracle_pairs

    @property
    def missing(self) -> str | None:
        """Why there is no fine-tuned vs prompted comparison here, or None when there is one."""
        if self.finetuned is None:
            return f"no fine-tuned system selected ({self.comparison.selection.how})"
        if self.finetuned not in self.values:
            return f"the selected fine-tuned system {self.finetuned} has no predictions on {self.where}"
        if not self.prompted:
            return "no prompted (non-oracle) system in this run"
        return None

    @property
    def ready(self) -> bool:
        return self.missing is None


def comparison_setup(scores: pd.DataFrame, selection_scores: pd.DataFrame | None = None,
                     metric: str = SELECTION_METRIC) -> ComparisonSetup:
    """The comparison every table, claim and figure of a run uses (one place, so they agree).

    ``scores`` / ``selection_scores``: :attr:`Evaluation.scores` and :attr:`Evaluation.selection_scores`.
    """
    values, where = evaluation_values(scores, metric)
    comparison = compared_systems(scores, selection_scores)
    prompted = tuple(p for p in comparison.prompted if p in values)
    return ComparisonSetup(values, where, comparison, prompted, best_prompted(values, prompted))
