"""What a run holds for evaluation: its systems (with their :class:`SystemMeta`), predictions and examples.

>>> metas = load_system_metas("results/dev")        # doctest: +SKIP  (every sidecar checked first)
>>> predictions = load_predictions("results/dev", list(metas))
>>> examples = load_examples("results/dev")          # None when the run has no data sets

What a system *is* (arm, base model, strategy, retrieval, k, parameters) comes from the sidecar
``predictions/<system>.meta.json`` written beside every predictions file
(:func:`wfutils.data.predictions.read_system_meta`), never from its name. A predictions file
without its sidecar, or with an unknown arm, is an error naming the file, raised before any
prediction is read or scored.

Nothing is lost or dropped silently: an empty predictions file is an error naming it
(:func:`load_system`; a system that produced nothing never just vanishes from the scores), as
are unreadable lines (``file:line``), records naming another system and unknown system names.
What reading skips or repairs (a write cut short in a predictions file, an unusable cost in a
trace) is a :class:`~wfutils.data.predictions.DataWarning`; :func:`data_notes` collects those
as the evaluation's notes.

Examples of the synthetic ``validation`` split (:data:`SELECTION_SPLIT`) are for choosing
between fine-tuned systems; :func:`is_selection_split` tells them apart so that they never enter
the test tables.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from wfutils.data.predictions import (META_SUFFIX, DataWarning, Prediction, SystemMeta, meta_path, predictions_path,
                                      read_predictions, read_system_meta)
from wfutils.data.store import available_datasets, data_dir, load_run_data
from wfutils.evaluation.taxonomy import vocabulary
from wfutils.flows.vocabulary import flow_features

#: The split whose predictions choose between fine-tuned systems (never reported as a result).
SELECTION_SPLIT = "validation"


def is_selection_split(split: Any) -> bool:
    """True for the split used to select systems (:data:`SELECTION_SPLIT`)."""
    return str(split) == SELECTION_SPLIT


def list_systems(run_dir: str | os.PathLike[str]) -> list[str]:
    """Systems with a predictions file under ``<run_dir>/predictions``."""
    folder = Path(run_dir) / "predictions"
    return sorted(p.name.removesuffix(".jsonl") for p in folder.glob("*.jsonl")) if folder.is_dir() else []


def load_system_metas(run_dir: str | os.PathLike[str], systems: Sequence[str] | None = None, *,
                      learning_curve: bool = False) -> dict[str, SystemMeta]:
    """The :class:`SystemMeta` of each named system (default: every predictions file of the run, learning-curve
    points only with ``learning_curve``: they answer part of the paired requests and are weighed in notebook 06).

    Raises FileNotFoundError when a predictions file or its sidecar is missing and ValueError
    when a sidecar is invalid (unknown arm, missing field), each naming the file. With
    ``systems=None``, a sidecar without its predictions file is a
    :class:`~wfutils.data.predictions.DataWarning` (a note).
    """
    run_dir = Path(run_dir)
    names = list(systems) if systems is not None else list_systems(run_dir)
    if systems is None:  # a sidecar whose predictions file is gone: said, not skipped silently
        folder = run_dir / "predictions"
        for sidecar in sorted(folder.glob(f"*{META_SUFFIX}")) if folder.is_dir() else ():
            name = sidecar.name.removesuffix(META_SUFFIX)
            if name not in names:
                warnings.warn(f"{sidecar}: system {name!r} has metadata but no predictions file ({name}.jsonl); "
                              "it is not evaluated", DataWarning, stacklevel=2)
    if not names:
        raise FileNotFoundError(f"no predictions files under {run_dir / 'predictions'}")
    metas: dict[str, SystemMeta] = {}
    for name in names:
        path = predictions_path(run_dir, name)
        if not path.is_file():
            known = ", ".join(list_systems(run_dir)) or "none"
            raise FileNotFoundError(f"predictions file for system {name!r} not found: {path} (found: {known})")
        metas[name] = read_system_meta(path)
    if systems is None and not learning_curve:
        metas = {name: meta for name, meta in metas.items() if not meta.learning_curve}
        if not metas:
            raise FileNotFoundError(f"only learning-curve points under {run_dir / 'predictions'}: no system to compare")
    return metas


def load_system(path: str | os.PathLike[str]) -> list[Prediction]:
    """Read one predictions file for evaluation (:func:`wfutils.data.predictions.read_predictions`).

    ValueError naming the file when it holds no prediction (an empty file, or only a write cut
    short: the system produced nothing, and is never silently left out of the scores), when a
    record names another system than the file's, or for duplicate ids (with the records).
    """
    path = Path(path)
    records = read_predictions(path)
    system = path.name.removesuffix(".jsonl")
    if not records:
        what = "is empty" if path.stat().st_size == 0 else "holds no complete prediction"
        raise ValueError(
            f"{path} {what}: system {system!r} produced no prediction (every call failed? see llm/summary.json "
            f"or the arm's log). It is not left out of the scores silently: rerun it, or remove {path.name} and "
            f"{meta_path(path).name} to evaluate without it, or name the systems to evaluate (systems=[...])")
    seen: dict[str, int] = {}
    for line, record in enumerate(records, start=1):
        if record.system != system:
            raise ValueError(f"{path}: record {line} (id {record.id!r}) names system {record.system!r}, "
                             f"the file holds {system!r}")
        if record.id in seen:
            raise ValueError(f"{path}: duplicate id {record.id!r} (records {seen[record.id]} and {line}); "
                             "one prediction per example is expected")
        seen[record.id] = line
    return records


@contextmanager
def data_notes() -> Iterator[list[str]]:
    """Collect the :class:`~wfutils.data.predictions.DataWarning` messages raised inside the block.

    >>> with data_notes() as notes:                                    # doctest: +SKIP
    ...     ev = evaluate_run(run_dir)
    >>> ev.notes += notes        # e.g. "predictions/x.jsonl:4: the last line is incomplete ..."

    The list is filled when the block ends; other warnings are passed on unchanged.
    """
    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield notes
    for w in caught:
        if issubclass(w.category, DataWarning):
            if str(w.message) not in notes:
                notes.append(str(w.message))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def load_predictions(run_dir: str | os.PathLike[str], systems: Iterable[str]) -> dict[str, list[Prediction]]:
    """Predictions of the named systems, read with :func:`load_system`."""
    return {name: load_system(predictions_path(run_dir, name)) for name in systems}


def subset_name(dataset: str, split: str) -> str:
    """The evaluation set an example belongs to: the split for the synthetic corpus, else the corpus."""
    return split if dataset == "synthetic" else dataset


def load_examples(run_dir: str | os.PathLike[str]) -> pd.DataFrame | None:
    """Examples of a run (id, dataset, split, subset, domain, features, request, reference).

    Reads the run's data sets with :func:`wfutils.data.store.load_run_data` (every split but
    ``train``, the ``validation`` split included); None when the run has no data sets. Duplicate ids across
    data sets raise ValueError.
    """
    if not available_datasets(run_dir):
        return None
    root = data_dir(run_dir)
    frames = []
    for dataset, splits in load_run_data(run_dir).items():
        for split, ds in splits.items():
            frame = ds.to_pandas()
            frames.append(pd.DataFrame({
                "id": frame["id"].astype(str), "dataset": dataset, "split": split,
                "subset": subset_name(dataset, split), "domain": frame["domain"].astype(str),
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


def examples_from_predictions(predictions: dict[str, list[Prediction]]) -> pd.DataFrame:
    """Examples rebuilt from the references inside the predictions (``dataset`` = ``predictions``).

    ``subset`` is the records' split; feature tags are the structural ones
    (:func:`wfutils.flows.vocabulary.flow_features`). Systems that disagree on an example's split
    or reference raise ValueError.
    """
    rows: dict[str, dict[str, Any]] = {}
    for system, records in predictions.items():
        for r in records:
            row = rows.get(r.id)
            if row is None:
                rows[r.id] = {"id": r.id, "dataset": "predictions", "split": r.split, "subset": r.split,
                              "domain": "unknown", "features": sorted(flow_features(r.reference)),
                              "request": r.request, "reference": r.reference, "_system": system}
            elif row["split"] != r.split or not same_flow(row["reference"], r.reference):
                what = "split" if row["split"] != r.split else "reference flow"
                raise ValueError(f"example {r.id!r}: {what} differs between systems {row['_system']!r} and {system!r}")
    frame = pd.DataFrame(list(rows.values()), columns=["id", "dataset", "split", "subset", "domain", "features",
                                                       "request", "reference", "_system"])
    return frame.drop(columns="_system").sort_values(["subset", "id"], ignore_index=True)


def same_flow(a: str, b: str) -> bool:
    """Two flow texts are the same flow (equal text, or equal parsed JSON)."""
    if a == b:
        return True
    try:
        return json.loads(a) == json.loads(b)
    except json.JSONDecodeError:
        return False


def coverage(predictions: dict[str, list[Prediction]], examples: pd.DataFrame) -> pd.DataFrame:
    """Per system and subset: examples in the data, predicted, missing, extra, and a status.

    ``status`` is ``complete``, ``incomplete``, ``not run``, or ``extra ids: ...`` for predictions
    whose ids are in no data set (subset ``<not in data>``).
    """
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


Vocabulary = dict[str, tuple[set[str], set[str]]]  # data set -> (known definitions, known tables)


def known_vocabulary(examples: pd.DataFrame, catalog: Any, train_corpus: str = "synthetic") -> Vocabulary:
    """Component definitions and tables a system may use without "hallucinating", per data set.

    ``catalog`` is the training corpus's catalogue (:func:`wfutils.data.store.training_catalog`:
    the shipped ServiceNow one for ``synthetic``, else the one derived from the corpus's train
    flows). The training corpus's own evaluation sets are judged against it alone; any other
    corpus against it plus the vocabulary of that corpus's reference flows.
    """
    base_defs, base_tables = set(catalog.definitions), set(catalog.tables)
    out: Vocabulary = {}
    for dataset, group in examples.groupby("dataset"):
        if dataset == train_corpus:
            out[str(dataset)] = (base_defs, base_tables)
        else:
            defs, tables = vocabulary(group["reference"])
            out[str(dataset)] = (base_defs | defs, base_tables | tables)
    return out


def system_vocabularies(run_dir: str | os.PathLike[str], examples: pd.DataFrame,
                        metas: dict[str, SystemMeta]) -> tuple[dict[str, Vocabulary], list[str]]:
    """Each system's known vocabulary (by its ``train_corpus``) and one note per training catalogue used.

    A run without its training corpus's data (predictions only) falls back to the shipped
    catalogue for ``synthetic`` and to the evaluation references for others, and says so.
    """
    from wfutils.data.catalog import load_catalog
    from wfutils.data.store import training_catalog

    try:
        data = load_run_data(run_dir, include_train=True)
    except FileNotFoundError:
        data = {}
    by_corpus: dict[str, Vocabulary] = {}
    notes: list[str] = []
    for corpus in sorted({m.train_corpus for m in metas.values()}):
        if corpus in data and "train" in data[corpus]:
            catalog = training_catalog(data, corpus)
        elif corpus == "synthetic":
            catalog = load_catalog()
        else:
            catalog = None
        if catalog is None:
            by_corpus[corpus] = {str(d): vocabulary(g["reference"]) for d, g in examples.groupby("dataset")}
            notes.append(f"hallucinated steps / tables of systems trained on {corpus!r}: its train split is not in "
                         "the run, so they are judged against the evaluation references' vocabulary")
        else:
            by_corpus[corpus] = known_vocabulary(examples, catalog, corpus)
            if corpus != "synthetic":  # the shipped catalogue is the default the tables document
                notes.append(f"hallucinated steps / tables of systems trained on {corpus!r} are judged against "
                             f"{catalog.notes.get('source', 'its catalogue')} (a catalogue derived from the training flows)")
    return {system: by_corpus[m.train_corpus] for system, m in metas.items()}, notes
