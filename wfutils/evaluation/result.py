"""The result of scoring a run: :class:`Evaluation` and the layout of its tidy score table.

``scores`` has one row per example, system and metric (:data:`SCORE_COLUMNS`); every row
carries the system's metadata (:data:`META_COLUMNS`, from its :class:`SystemMeta` sidecar) so
tables can be grouped by arm, strategy, retrieval, base model or size. Predictions on the
selection split (``validation``) are kept apart in ``selection_scores``: they choose between
fine-tuned systems and never enter the reported tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace

import pandas as pd

from wfutils.data.predictions import SystemMeta

#: Fields of :class:`SystemMeta` copied onto every score row.
META_COLUMNS: tuple[str, ...] = ("arm", "base_model", "n_params", "strategy", "k", "retrieval", "train_corpus",
                                 "decoding", "recipe", "training_seed")
SCORE_COLUMNS: tuple[str, ...] = ("run", "system", *META_COLUMNS, "dataset", "split", "subset", "domain", "id",
                                  "metric", "value")
#: Score columns stored as pandas categoricals (the others: id and recipe str, k int64, n_params / training_seed /
#: value float64, NaN: not published or not fine-tuned).
CATEGORY_COLUMNS: tuple[str, ...] = ("run", "system", "arm", "base_model", "strategy", "retrieval", "train_corpus", "dataset",
                                     "split", "subset", "domain", "metric")
PREDICTION_COLUMNS: tuple[str, ...] = ("system", "id", "subset", "output", "flow", "parse_status")
COVERAGE_COLUMNS: tuple[str, ...] = ("system", "subset", "n_reference", "n_predicted", "n_missing", "n_extra", "status")


@dataclass
class Evaluation:
    """What :func:`wfutils.evaluation.scoring.evaluate_run` returns and :mod:`wfutils.evaluation.store` saves."""

    run: str
    scores: pd.DataFrame  # SCORE_COLUMNS, evaluation sets only (no selection split)
    selection_scores: pd.DataFrame  # SCORE_COLUMNS, the selection split (validation) only; may be empty
    examples: pd.DataFrame  # id, dataset, split, subset, domain, features, request, reference (evaluation sets)
    predictions: pd.DataFrame  # PREDICTION_COLUMNS (evaluation sets)
    coverage: pd.DataFrame  # COVERAGE_COLUMNS (every subset, the selection split included)
    metas: dict[str, SystemMeta]  # system -> its metadata (every system asked for)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def systems(self) -> list[str]:
        """Systems with at least one score on an evaluation set."""
        return sorted(map(str, self.scores["system"].unique())) if len(self.scores) else []

    def wide(self, metric: str = "flowsim_with_inputs") -> pd.DataFrame:
        """Rows = examples (subset, id), columns = systems, values = the metric."""
        return wide(self.scores, metric)

    def system_table(self) -> pd.DataFrame:
        """One row per system with every :class:`SystemMeta` field."""
        return systems_frame(self.metas)

    def only(self, systems: Sequence[str] | None) -> Evaluation:
        """This evaluation restricted to ``systems`` (None: all of them), so a notebook can analyse a few.

        Raises ValueError naming the systems that are not scored here, with those that are.
        """
        if systems is None:
            return self
        if isinstance(systems, str):
            raise TypeError(f"systems must be a list of system names, got the string {systems!r}")
        missing = sorted(set(systems) - set(self.systems))
        if missing:
            raise ValueError(f"systems {missing} are not in the scores of {self.run} (have: {self.systems})")
        keep = set(systems)

        def rows(frame: pd.DataFrame) -> pd.DataFrame:
            return frame[frame["system"].astype(str).isin(keep)] if len(frame) else frame

        return replace(self, scores=rows(self.scores), selection_scores=rows(self.selection_scores),
                       predictions=rows(self.predictions), coverage=rows(self.coverage),
                       metas={name: meta for name, meta in self.metas.items() if name in keep},
                       notes=list(self.notes))


def wide(scores: pd.DataFrame, metric: str = "flowsim_with_inputs") -> pd.DataFrame:
    """Pivot the tidy table to (subset, id) x system for one metric."""
    if metric not in set(scores["metric"]):
        raise KeyError(f"metric {metric!r} is not in the scores (have: {', '.join(sorted(map(str, set(scores['metric']))))})")
    part = scores[scores["metric"] == metric]
    return part.pivot_table(index=["subset", "id"], columns="system", values="value", aggfunc="first", observed=True)


def systems_frame(metas: dict[str, SystemMeta]) -> pd.DataFrame:
    """:class:`SystemMeta` records as a table, one row per system, sorted by name."""
    columns = [f.name for f in fields(SystemMeta)]
    rows = [metas[name].to_dict() for name in sorted(metas)]
    return pd.DataFrame(rows, columns=columns)


_LATER_META = ("decoding", "recipe", "training_seed")  # absent from score tables written before them: unknown


def has_meta(scores: pd.DataFrame) -> bool:
    """Whether a score table carries the systems' metadata columns (:func:`meta_of` can read them)."""
    return all(c in scores.columns for c in META_COLUMNS if c not in _LATER_META)


def meta_of(scores: pd.DataFrame) -> pd.DataFrame:
    """The metadata columns of each system in a score table (index: system).

    Raises ValueError when the table lacks them (scores not produced by ``evaluate_run``).
    """
    if not has_meta(scores):
        missing = [c for c in META_COLUMNS if c not in scores.columns and c not in _LATER_META]
        raise ValueError(f"the scores lack the system metadata column(s) {', '.join(missing)}; score the run with "
                         "wfutils.evaluation.scoring.evaluate_run, which reads each system's sidecar")
    scores = scores.assign(**{c: None for c in _LATER_META if c not in scores.columns})
    rows = scores[["system", *META_COLUMNS]].astype({"system": str})
    frame = rows.drop_duplicates("system").set_index("system")
    # a system's rows from score tables of two layouts: a value its first row lacks is taken from a later one
    later_meta = list(_LATER_META)
    later = rows.groupby("system", sort=False)[later_meta].first().reindex(frame.index)
    frame[later_meta] = frame[later_meta].where(frame[later_meta].notna() | later.isna(), later)
    for column in ("arm", "base_model", "strategy", "retrieval"):
        frame[column] = frame[column].astype(str)
    return frame.astype({"n_params": "float64", "k": "int64", "training_seed": "float64"}).sort_index()
