"""A run's data: storing and loading its corpora under ``results/<run>/data/``.

Every data set is a :class:`datasets.DatasetDict` with the columns of :mod:`wfutils.data.records`.
:func:`build_all` builds the synthetic corpus (:func:`wfutils.data.synthetic.build_synthetic`:
``train`` / ``validation`` / ``test`` / ``ood``) and the requested corpora (:mod:`wfutils.data.corpora`:
registered converters by name, split ``test``; JSON Lines files by path, saved under their stem
with the splits they have) and saves them.

A run stores each data set as ``results/<run>/data/<name>/<split>.parquet`` plus the same rows
as ``<split>.jsonl`` and an ``info.json`` (parameters, sizes, versions, skipped items).
Other notebooks get every evaluation set of a run with :func:`load_run_data`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from datasets import Dataset, DatasetDict

from wfutils.data.catalog import Catalog, catalog_from_flows, load_catalog
from wfutils.data.corpora import (check_max_flow_chars, check_train_corpus, convert_corpus, corpus_folder,
                                  drop_long_flows, load_jsonl_corpus, resolve_corpora, split_by_seed)
from wfutils.data.records import COLUMNS
from wfutils.data.synthetic import DEFAULT_SIZES, build_synthetic
from wfutils.flows.vocabulary import flow_depth, trigger_kind
from wfutils.provenance import version_record
from wfutils.storage import atomic_write, atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- storage


def data_dir(run_dir: str | os.PathLike[str]) -> Path:
    return Path(run_dir) / "data"


def save_dataset(dd: DatasetDict, run_dir: str | os.PathLike[str], name: str, *,
                 params: dict[str, Any] | None = None, skipped: Iterable[tuple[str, str]] = (),
                 seconds: float | None = None) -> Path:
    """Write ``dd`` to ``<run_dir>/data/<name>/`` as ``<split>.parquet`` + ``<split>.jsonl`` + ``info.json``.

    Writes are atomic (temporary file, then rename). Returns the folder.
    """
    out = data_dir(run_dir) / name
    out.mkdir(parents=True, exist_ok=True)
    for split, ds in dd.items():
        missing = [c for c in COLUMNS if c not in ds.column_names]
        if missing:
            raise ValueError(f"data set {name!r} split {split!r} lacks columns {missing}")
        table = ds.select_columns(list(COLUMNS))
        atomic_write(out / f"{split}.parquet", lambda tmp: table.to_parquet(str(tmp)))
        lines = [json.dumps({c: row[c] for c in COLUMNS}, ensure_ascii=False) for row in ds]
        atomic_write_text(out / f"{split}.jsonl", "\n".join(lines) + ("\n" if lines else ""))
    info = {
        "name": name,
        "splits": {split: len(ds) for split, ds in dd.items()},
        "params": params or {},
        "skipped": [{"path": p, "reason": r} for p, r in skipped],
        "seconds": seconds,
        "versions": version_record(("datasets",)),
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    atomic_write_json(out / "info.json", info, indent=1)
    return out


def load_dataset(run_dir: str | os.PathLike[str], name: str) -> DatasetDict:
    """Read a data set written by :func:`save_dataset` (from its Parquet files)."""
    folder = data_dir(run_dir) / name
    if not folder.is_dir():
        raise FileNotFoundError(f"no data set {name!r} under {data_dir(run_dir)} (expected folder {folder})")
    files = sorted(folder.glob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"data set folder {folder} holds no <split>.parquet file")
    splits = {}
    for f in files:
        ds = Dataset.from_parquet(str(f), keep_in_memory=True)
        missing = [c for c in COLUMNS if c not in ds.column_names]
        if missing:
            raise ValueError(f"{f} lacks columns {missing}")
        splits[f.stem] = ds
    return DatasetDict(splits)


def load_info(run_dir: str | os.PathLike[str], name: str) -> dict[str, Any]:
    """The ``info.json`` written next to a saved data set."""
    path = data_dir(run_dir) / name / "info.json"
    if not path.is_file():
        raise FileNotFoundError(f"missing {path}")
    return json.loads(path.read_text(encoding="utf-8"))


def available_datasets(run_dir: str | os.PathLike[str]) -> list[str]:
    """Names of the data sets saved under ``<run_dir>/data``."""
    root = data_dir(run_dir)
    return sorted(p.name for p in root.iterdir() if p.is_dir() and any(p.glob("*.parquet"))) if root.is_dir() else []


def load_run_data(run_dir: str | os.PathLike[str], *, include_train: bool = False) -> dict[str, DatasetDict]:
    """Every data set of a run: ``{"synthetic": DatasetDict(test, ood[, train]), "n8n": ..., "logic_apps": ...}``.

    By default only evaluation splits are returned (the synthetic ``train`` split is left out);
    data sets that the run did not build are simply absent.
    """
    out: dict[str, DatasetDict] = {}
    for name in available_datasets(run_dir):
        dd = load_dataset(run_dir, name)
        keep = [s for s in dd if include_train or s != "train"]
        out[name] = DatasetDict({s: dd[s] for s in keep})
    if not out:
        raise FileNotFoundError(f"no data sets under {data_dir(run_dir)}; run notebook 01 (or wfutils.data.store.build_all) first")
    return out


def build_all(run_dir: str | os.PathLike[str], *, seed: int = 0, n_train: int = DEFAULT_SIZES["train"],
              n_test: int = DEFAULT_SIZES["test"], n_ood: int = DEFAULT_SIZES["ood"],
              n_validation: int = DEFAULT_SIZES["validation"],
              corpora: Iterable[str | os.PathLike[str]] | str = ("n8n", "logic_apps"),
              shared_data: str | os.PathLike[str] | None = None,
              jsonl_sizes: Mapping[str, float | int] | None = None,
              train_corpus: str = "synthetic", max_flow_chars: int | None = None) -> dict[str, DatasetDict]:
    """Build the synthetic corpus and the requested corpora and save them under ``run_dir``.

    ``corpora`` holds converter names (``n8n``, ``logic_apps``, any registered one; read from
    ``shared_data``) and paths of JSON Lines files (saved as ``data/<stem>/`` with their own
    splits, or split by ``seed`` with ``jsonl_sizes``, see :func:`wfutils.data.corpora.seed_split_sizes`).
    The list is checked first (unknown names, stems that clash, missing folders or files) and
    JSON Lines files are read and checked before anything is built or written. Returns the data
    sets by name (``synthetic`` first, then the corpora in the order given).

    ``train_corpus`` names the corpus the run trains on (:func:`training_data`); a converter
    corpus named there is split by ``seed`` like a JSON Lines file without a ``split`` column
    (:func:`wfutils.data.corpora.split_by_seed`). A name that is no corpus of the run, or a
    corpus left without a ``train`` split, is refused before anything is built.

    ``max_flow_chars`` (None: keep all) drops the corpora's pairs whose flow is longer, in every
    split alike and before a seed split (:func:`wfutils.data.corpora.drop_long_flows`, listed as
    skipped); the synthetic corpus is kept whole.
    """
    check_max_flow_chars(max_flow_chars)
    specs = resolve_corpora(corpora)
    problems = check_train_corpus(train_corpus, corpora, sizes=jsonl_sizes)
    if problems:
        raise ValueError(problems[0])
    for spec in specs:  # fail on a missing corpus folder before the synthetic corpus is built
        if spec.converter is not None:
            corpus_folder(spec.converter, shared_data=shared_data)
    files: dict[str, tuple[DatasetDict, float]] = {}
    for spec in specs:
        if spec.path is not None:
            t0 = time.perf_counter()
            dd = drop_long_flows(load_jsonl_corpus(spec.path, seed=seed, sizes=jsonl_sizes), max_flow_chars)
            _check_trainable(dd, spec.name, train_corpus, max_flow_chars)
            files[spec.name] = (dd, time.perf_counter() - t0)

    built: dict[str, DatasetDict] = {}
    t0 = time.perf_counter()
    built["synthetic"] = build_synthetic(seed, n_train, n_test, n_ood, n_validation)
    save_dataset(built["synthetic"], run_dir, "synthetic", seconds=time.perf_counter() - t0,
                 params={"seed": seed, "n_train": n_train, "n_validation": n_validation, "n_test": n_test, "n_ood": n_ood,
                         "holdout_tables": sorted(load_catalog().holdout_tables),
                         "holdout_actions": sorted(load_catalog().holdout_actions)})
    for spec in specs:
        if spec.path is not None:
            dd, seconds = files[spec.name]
        else:
            t0 = time.perf_counter()
            dd = drop_long_flows(convert_corpus(spec.converter, shared_data=shared_data), max_flow_chars)
            if spec.name == train_corpus:
                dd = split_by_seed(dd, seed=seed, sizes=jsonl_sizes)
                _check_trainable(dd, spec.name, train_corpus, max_flow_chars)
            seconds = time.perf_counter() - t0
        built[spec.name] = dd
        save_dataset(dd, run_dir, spec.name, skipped=getattr(dd, "skipped", []), seconds=seconds,
                     params=getattr(dd, "params", {}))
    return built


def _check_trainable(dd: DatasetDict, name: str, train_corpus: str, max_flow_chars: int | None) -> None:
    if name == train_corpus and ("train" not in dd or len(dd["train"]) == 0):
        raise ValueError(f"train_corpus {name!r} keeps no training pair with flows of at most max_flow_chars="
                         f"{max_flow_chars} characters ({', '.join(f'{s}: {len(d)}' for s, d in dd.items())}); "
                         "raise max_flow_chars or set it to None")


# ----------------------------------------------------------------------------- the training corpus


def _corpus(data: Mapping[str, DatasetDict], train_corpus: str) -> DatasetDict:
    if train_corpus not in data:
        raise ValueError(f"train_corpus {train_corpus!r} is not a data set of this run (it has: {', '.join(data)}); "
                         "name it in notebook 01's corpora and rerun it")
    if "train" not in data[train_corpus]:
        raise ValueError(f"data set {train_corpus!r} has no train split (it has: {', '.join(data[train_corpus])}); "
                         "rerun notebook 01 with the same train_corpus, or give the JSON Lines file train lines")
    return data[train_corpus]


def training_data(data: Mapping[str, DatasetDict], train_corpus: str = "synthetic") -> tuple[Dataset, Dataset | None]:
    """The ``train`` and ``validation`` (None when absent) splits of the run's training corpus.

    ``data`` is :func:`load_run_data` with ``include_train=True``; a name that is not a data set of
    the run, or one without a train split, raises ValueError saying how to fix it.
    """
    dd = _corpus(data, train_corpus)
    return dd["train"], dd["validation"] if "validation" in dd else None


def evaluation_splits(data: Mapping[str, DatasetDict], train_corpus: str = "synthetic",
                      eval_splits: Sequence[str] | None = None) -> list[str]:
    """The ``<data set>/<split>`` names a system is evaluated on, the training corpus's test split first.

    ``None``: every evaluation split of the run (``test`` and ``ood`` splits; never ``train`` or
    ``validation``). A list: those, with the training corpus's test split added in front when
    missing. Names that are not in ``data`` raise ValueError listing what is there.
    """
    _corpus(data, train_corpus)
    if eval_splits is None:
        names = [f"{name}/{split}" for name, dd in data.items() for split in dd if split not in ("train", "validation")]
    else:
        names = [f"{name}/{split}" for name, split in parse_eval_splits(eval_splits)]
    first = f"{train_corpus}/test"
    if first in {f"{n}/{s}" for n, dd in data.items() for s in dd}:
        names = [first] + [n for n in names if n != first]
    missing = [n for n in names if n.partition("/")[0] not in data or n.partition("/")[2] not in data[n.partition("/")[0]]]
    if missing:
        have = [f"{n}/{s}" for n, dd in data.items() for s in dd if s != "train"]
        raise ValueError(f"evaluation split(s) {missing} are not in this run's data; available: {have}")
    return list(dict.fromkeys(names))


def training_catalog(data: Mapping[str, DatasetDict], train_corpus: str = "synthetic") -> Catalog:
    """The catalogue of the training corpus: the shipped one for ``synthetic``, else derived from its train flows."""
    if train_corpus == "synthetic":
        return load_catalog()
    train, _ = training_data(data, train_corpus)
    return catalog_from_flows(train["flow"], source=f"the {train_corpus} train split ({len(train)} flows)")


# ----------------------------------------------------------------------------- exploration helpers


def flow_stats(data: dict[str, DatasetDict]) -> "pandas.DataFrame":  # noqa: F821
    """One row per example: dataset, split, id, component count, depth, trigger, request length, definitions, features."""
    import pandas as pd

    rows = []
    for name, dd in data.items():
        for split, ds in dd.items():
            for row in ds:
                flow = json.loads(row["flow"])
                comps = flow.get("components") or []
                ttype = (flow.get("trigger") or {}).get("type")
                rows.append({"dataset": name, "split": split, "id": row["id"], "n_components": len(comps),
                             "depth": flow_depth(flow), "trigger_type": ttype, "trigger_kind": trigger_kind(ttype or ""),
                             "request_words": len(row["request"].split()), "flow_chars": len(row["flow"]),
                             "definitions": [c.get("definition") for c in comps], "features": list(row["features"])})
    return pd.DataFrame(rows)


def parse_eval_splits(eval_splits: Sequence[str]) -> list[tuple[str, str]]:
    """``["synthetic/test", "n8n"]`` -> ``[("synthetic", "test"), ("n8n", "test")]`` (split defaults to test)."""
    out = []
    for item in eval_splits:
        name, _, split = str(item).partition("/")
        if not name:
            raise ValueError(f"bad eval split {item!r}; use '<dataset>/<split>' such as 'synthetic/test'")
        out.append((name, split or "test"))
    return out
