"""Save and load an :class:`~wfutils.evaluation.result.Evaluation` and the tables and figures built from it.

Everything goes under ``results/<run>/eval/`` and is written atomically (:mod:`wfutils.storage`):

``scores.parquet`` / ``selection_scores.parquet`` (tidy score tables), ``examples.parquet``,
``predictions.parquet``, ``coverage.csv``, ``systems.json`` (every system's
:class:`SystemMeta`), ``info.json`` (metrics, notes, parameters, :func:`wfutils.provenance.version_record`),
plus whatever tables (:func:`save_table`) and figures (:func:`save_figure`) the notebooks add.
Temporary files of an interrupted write (unique names, ``.<name>.<random>.tmp``) are removed
when a notebook starts writing (:func:`remove_eval_leftovers`; :func:`save_evaluation` does it first).
:func:`evaluate_and_save` scores a run and saves it in one step; :func:`load_or_evaluate` reuses saved scores.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from wfutils.data.predictions import SystemMeta
from wfutils.evaluation.result import CATEGORY_COLUMNS, SCORE_COLUMNS, Evaluation
from wfutils.evaluation.loading import data_notes
from wfutils.evaluation.scoring import METRICS, evaluate_run
from wfutils.provenance import version_record
from wfutils.storage import atomic_write, atomic_write_json, remove_leftovers

#: Version of the layout below; :func:`load_evaluation` refuses another one (3: score rows carry the fine-tuned
#: systems' decoding, recipe and training seed).
FORMAT = 3
FIGURES = "figures"


def eval_dir(run_dir: str | os.PathLike[str]) -> Path:
    """``<run_dir>/eval``."""
    return Path(run_dir) / "eval"


def remove_eval_leftovers(run_dir: str | os.PathLike[str]) -> list[Path]:
    """Delete what interrupted writes left under ``eval/`` (call before a notebook's first write)."""
    return remove_leftovers(eval_dir(run_dir))


def save_table(table: pd.DataFrame, run_dir: str | os.PathLike[str], name: str, *, index: bool = False) -> Path:
    """Write ``eval/<name>`` atomically as CSV or Parquet (by the name's suffix); returns its path."""
    path = eval_dir(run_dir) / name
    if path.suffix == ".csv":
        return atomic_write(path, lambda tmp: table.to_csv(tmp, index=index))
    if path.suffix == ".parquet":
        return atomic_write(path, lambda tmp: table.to_parquet(tmp, index=index))
    raise ValueError(f"{name}: tables are saved as .csv or .parquet")


def save_figure(figure: Any, run_dir: str | os.PathLike[str], name: str, *, dpi: int = 150) -> Path | None:
    """Write a matplotlib figure to ``eval/figures/<name>.png`` atomically; returns its path.

    ``figure`` None (what :mod:`wfutils.evaluation.figures` returns for an empty table) writes nothing.
    """
    if figure is None:
        return None
    path = eval_dir(run_dir) / FIGURES / f"{name}.png"
    return atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight"))


def save_evaluation(evaluation: Evaluation, run_dir: str | os.PathLike[str], *,
                    params: dict[str, Any] | None = None) -> Path:
    """Write the evaluation's tables, ``systems.json`` and ``info.json`` under ``eval/``; returns the folder."""
    out = eval_dir(run_dir)
    remove_eval_leftovers(run_dir)
    save_table(evaluation.scores, run_dir, "scores.parquet")
    save_table(evaluation.selection_scores, run_dir, "selection_scores.parquet")
    save_table(evaluation.examples, run_dir, "examples.parquet")
    save_table(evaluation.predictions, run_dir, "predictions.parquet")
    save_table(evaluation.coverage, run_dir, "coverage.csv")
    atomic_write_json(out / "systems.json", {name: meta.to_dict() for name, meta in sorted(evaluation.metas.items())})
    info = {
        "format": FORMAT, "run": evaluation.run, "systems": evaluation.systems, "metrics": METRICS,
        "n_rows": len(evaluation.scores), "n_selection_rows": len(evaluation.selection_scores),
        "notes": evaluation.notes, "params": params or {}, "seconds": round(evaluation.seconds, 3),
        "versions": version_record(("numpy", "pandas", "pyarrow", "numba", "scipy")),
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    atomic_write_json(out / "info.json", info, indent=1)
    return out


def _read_scores(path: Path) -> pd.DataFrame:
    frame = pd.read_parquet(path)
    for name in CATEGORY_COLUMNS:
        if not isinstance(frame[name].dtype, pd.CategoricalDtype):
            frame[name] = frame[name].astype("category")
    return frame[list(SCORE_COLUMNS)]


def load_evaluation(run_dir: str | os.PathLike[str]) -> Evaluation:
    """Read back what :func:`save_evaluation` wrote.

    FileNotFoundError when there are no scores, or only scores in an older layout (score the run
    again with :func:`wfutils.evaluation.scoring.evaluate_run`).
    """
    folder = eval_dir(run_dir)
    path = folder / "scores.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"no scores at {path}; run wfutils.evaluation.scoring.evaluate_run and "
                                "wfutils.evaluation.store.save_evaluation first")
    info = json.loads((folder / "info.json").read_text(encoding="utf-8"))
    if info.get("format") != FORMAT:
        raise FileNotFoundError(f"{folder} holds scores in an older layout (format {info.get('format')!r}, "
                                f"expected {FORMAT}); score the run again")
    metas = {name: SystemMeta.from_dict(data, where=str(folder / "systems.json"))
             for name, data in json.loads((folder / "systems.json").read_text(encoding="utf-8")).items()}
    examples = pd.read_parquet(folder / "examples.parquet")
    examples["features"] = [list(f) for f in examples["features"]]
    return Evaluation(run=info["run"], scores=_read_scores(path),
                      selection_scores=_read_scores(folder / "selection_scores.parquet"), examples=examples,
                      predictions=pd.read_parquet(folder / "predictions.parquet"),
                      coverage=pd.read_csv(folder / "coverage.csv"), metas=metas, notes=info.get("notes", []),
                      seconds=info.get("seconds", 0.0))


def evaluate_and_save(run_dir: str | os.PathLike[str], systems: Sequence[str] | None = None, *,
                      on_incomplete: str = "error", params: dict[str, Any] | None = None) -> Evaluation:
    """Score a run (:func:`~wfutils.evaluation.scoring.evaluate_run`) and save it under ``eval/``.

    What reading skipped or repaired (:func:`wfutils.evaluation.loading.data_notes`) joins the
    evaluation's notes, so nothing is dropped without a note naming ``file:line``.
    """
    with data_notes() as skipped:
        evaluation = evaluate_run(run_dir, systems, on_incomplete=on_incomplete)
    evaluation.notes += [note for note in skipped if note not in evaluation.notes]
    save_evaluation(evaluation, run_dir, params=params)
    return evaluation


def load_or_evaluate(run_dir: str | os.PathLike[str], *, on_incomplete: str = "error") -> tuple[Evaluation, str]:
    """The saved evaluation of a run, or a fresh one (:func:`evaluate_and_save`) when there is none yet;
    with a sentence saying which."""
    try:
        return load_evaluation(run_dir), f"using the scores notebook 04 wrote: {eval_dir(run_dir) / 'scores.parquet'}"
    except FileNotFoundError:
        evaluation = evaluate_and_save(run_dir, on_incomplete=on_incomplete, params={"on_incomplete": on_incomplete})
        return evaluation, f"scored the run here (no scores were saved yet), on_incomplete={on_incomplete!r}"
