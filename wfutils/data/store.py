"""Data sets of the study: the synthetic ServiceNow-style corpus and its storage under a run.

Every data set is a :class:`datasets.DatasetDict` with the columns

``id`` (str), ``request`` (str), ``flow`` (compact JSON string, :func:`wfutils.flows.parsing.dumps_flow`),
``features`` (list[str], see :data:`wfutils.data.synthetic.FEATURE_TAGS`), ``domain`` (str).

* :func:`build_synthetic` -> splits ``train`` / ``test`` / ``ood`` (domain ``servicenow``).
  ``ood`` uses the tables and actions listed in ``wfutils/data/catalog_data/holdout.json``
  (HR cases, work orders, security incidents, projects, contracts, hardware assets; Teams,
  Jira, SMS, Zoom, PDF and Azure VM actions); ``train`` and ``test`` never use them.
* :func:`wfutils.data.corpora.load_n8n` / :func:`wfutils.data.corpora.load_logic_apps` -> split ``test``
  (re-exported here).

A run stores each data set as ``results/<run>/data/<name>/<split>.parquet`` plus the same rows
as ``<split>.jsonl`` and an ``info.json`` (parameters, sizes, versions, skipped items).
Other notebooks get every evaluation set of a run with :func:`load_run_data`.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import random
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import datasets
from datasets import Dataset, DatasetDict

from wfutils.data.catalog import load_catalog
from wfutils.data.corpora import load_logic_apps, load_n8n  # noqa: F401  (re-exported)
from wfutils.flows.parsing import dumps_flow
from wfutils.flows.schema import validate_flow
from wfutils.data.synthetic import generate_example

log = logging.getLogger(__name__)

COLUMNS = ("id", "request", "flow", "features", "domain")
FEATURES = datasets.Features({
    "id": datasets.Value("string"),
    "request": datasets.Value("string"),
    "flow": datasets.Value("string"),
    "features": datasets.Sequence(datasets.Value("string")),
    "domain": datasets.Value("string"),
})
SYNTHETIC_DOMAIN = "servicenow"
SYNTHETIC_SPLITS = ("train", "test", "ood")
DEFAULT_SIZES = {"train": 2000, "test": 300, "ood": 200}
#: Splits that are evaluation data (the synthetic ``train`` split is not).
EVAL_SPLITS = {"synthetic": ("test", "ood"), "n8n": ("test",), "logic_apps": ("test",)}


def rows_to_dataset(rows: list[dict[str, Any]]) -> Dataset:
    """A Dataset with the standard columns (and types, even when ``rows`` is empty)."""
    return Dataset.from_dict({c: [r[c] for r in rows] for c in COLUMNS}, features=FEATURES)


def build_synthetic(seed: int = 0, n_train: int = DEFAULT_SIZES["train"], n_test: int = DEFAULT_SIZES["test"],
                    n_ood: int = DEFAULT_SIZES["ood"], *, validate: bool = True) -> DatasetDict:
    """Generate the synthetic corpus deterministically from ``seed``.

    No request occurs twice across (or within) the splits. With ``validate`` every flow is
    checked with :func:`wfutils.flows.schema.validate_flow` (a failure is a generator bug and raises).
    """
    for name, n in (("n_train", n_train), ("n_test", n_test), ("n_ood", n_ood)):
        if not isinstance(n, int) or n < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {n!r}")
    catalog = load_catalog()
    seen: set[str] = set()
    splits = {}
    for split, n, mode in (("train", n_train, "in"), ("test", n_test, "in"), ("ood", n_ood, "ood")):
        rng = random.Random(f"wfbook-synthetic:{seed}:{split}")
        rows = []
        attempts = 0
        while len(rows) < n:
            attempts += 1
            if attempts > 20 * n + 100:
                raise RuntimeError(f"split {split}: too many duplicate requests ({len(rows)} of {n} after {attempts} tries)")
            ex = generate_example(rng, mode, catalog)
            if ex.request in seen:
                continue
            if validate:
                errors = validate_flow(ex.flow)
                if errors:
                    raise AssertionError(f"generator produced an invalid flow for {ex.request!r}: {errors}")
            seen.add(ex.request)
            rows.append({"id": f"sn-{split}-{len(rows):05d}", "request": ex.request, "flow": dumps_flow(ex.flow),
                         "features": ex.features, "domain": SYNTHETIC_DOMAIN})
        splits[split] = rows_to_dataset(rows)
    return DatasetDict(splits)


# ----------------------------------------------------------------------------- storage


def data_dir(run_dir: str | os.PathLike[str]) -> Path:
    return Path(run_dir) / "data"


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


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
        tmp = out / f"{split}.parquet.tmp"
        ds.select_columns(list(COLUMNS)).to_parquet(str(tmp))
        os.replace(tmp, out / f"{split}.parquet")
        lines = [json.dumps({c: row[c] for c in COLUMNS}, ensure_ascii=False) for row in ds]
        _atomic_write_text(out / f"{split}.jsonl", "\n".join(lines) + ("\n" if lines else ""))
    info = {
        "name": name,
        "splits": {split: len(ds) for split, ds in dd.items()},
        "params": params or {},
        "skipped": [{"path": p, "reason": r} for p, r in skipped],
        "seconds": seconds,
        "versions": {"python": platform.python_version(), "datasets": datasets.__version__},
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    _atomic_write_text(out / "info.json", json.dumps(info, indent=1, ensure_ascii=False) + "\n")
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


def eval_examples(run_dir: str | os.PathLike[str]) -> list[tuple[str, str, dict[str, Any]]]:
    """Flattened evaluation rows of a run as ``(dataset, split, row)`` (split names: ``synthetic/test`` style via dataset)."""
    rows = []
    for name, dd in load_run_data(run_dir).items():
        for split, ds in dd.items():
            rows.extend((name, split, row) for row in ds)
    return rows


def build_all(run_dir: str | os.PathLike[str], *, seed: int = 0, n_train: int = DEFAULT_SIZES["train"],
              n_test: int = DEFAULT_SIZES["test"], n_ood: int = DEFAULT_SIZES["ood"],
              corpora: Iterable[str] = ("n8n", "logic_apps"), shared_data: str | os.PathLike[str] | None = None
              ) -> dict[str, DatasetDict]:
    """Build the synthetic corpus and the requested real corpora and save them under ``run_dir``."""
    built: dict[str, DatasetDict] = {}
    t0 = time.perf_counter()
    built["synthetic"] = build_synthetic(seed, n_train, n_test, n_ood)
    save_dataset(built["synthetic"], run_dir, "synthetic", seconds=time.perf_counter() - t0,
                 params={"seed": seed, "n_train": n_train, "n_test": n_test, "n_ood": n_ood,
                         "holdout_tables": sorted(load_catalog().holdout_tables),
                         "holdout_actions": sorted(load_catalog().holdout_actions)})
    loaders = {"n8n": load_n8n, "logic_apps": load_logic_apps}
    for name in corpora:
        if name not in loaders:
            raise ValueError(f"unknown corpus {name!r} (known: {', '.join(loaders)})")
        t0 = time.perf_counter()
        dd = loaders[name](shared_data)
        built[name] = dd
        save_dataset(dd, run_dir, name, skipped=getattr(dd, "skipped", []), seconds=time.perf_counter() - t0,
                     params={"root": str(getattr(dd, "root", ""))})
    return built


# ----------------------------------------------------------------------------- exploration helpers


def flow_depth(flow: dict[str, Any]) -> int:
    """Deepest nesting level of a flow's components (0 = no component, 1 = all top level)."""
    by_order = {c.get("order"): c for c in flow.get("components") or []}
    depth = 0
    for c in by_order.values():
        d, seen, cur = 1, set(), c
        while "block" in cur and cur["block"] in by_order and cur["block"] not in seen:
            seen.add(cur["block"])
            cur = by_order[cur["block"]]
            d += 1
        depth = max(depth, d)
    return depth


def flow_stats(data: dict[str, DatasetDict]) -> "pandas.DataFrame":  # noqa: F821
    """One row per example: dataset, split, id, component count, depth, trigger, request length, definitions, features."""
    import pandas as pd

    from wfutils.flows.schema import trigger_kind

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


def render_flow(flow: dict[str, Any] | str) -> str:
    """An indented, human-readable outline of a flow (trigger, then components by nesting)."""
    if isinstance(flow, str):
        flow = json.loads(flow)
    trig = flow.get("trigger") or {}
    fmt = lambda items: ", ".join(f"{i['name']}={i['value']}" for i in items or [])  # noqa: E731
    lines = [f"TRIGGER {trig.get('type')}({fmt(trig.get('inputs'))})"]
    comps = flow.get("components") or []
    children: dict[Any, list[dict[str, Any]]] = {}
    for c in comps:
        children.setdefault(c.get("block"), []).append(c)

    def walk(parent: Any, indent: int) -> None:
        for c in children.get(parent, []):
            scope = f" [{c['scope']}]" if c.get("scope") not in (None, "global") else ""
            lines.append(f"{'    ' * indent}{c['order']}. {c['definition']}{scope}({fmt(c.get('inputs'))})")
            walk(c["order"], indent + 1)

    walk(None, 1)
    return "\n".join(lines)


def parse_eval_splits(eval_splits: Sequence[str]) -> list[tuple[str, str]]:
    """``["synthetic/test", "n8n"]`` -> ``[("synthetic", "test"), ("n8n", "test")]`` (split defaults to test)."""
    out = []
    for item in eval_splits:
        name, _, split = str(item).partition("/")
        if not name:
            raise ValueError(f"bad eval split {item!r}; use '<dataset>/<split>' such as 'synthetic/test'")
        out.append((name, split or "test"))
    return out
