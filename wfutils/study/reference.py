"""The committed reference run: what of a run folder a reader needs, copied, checked before rendering.

    python -m wfutils.study.reference copy results/default --adapt-run results/n8n --to results/reference
    python -m wfutils.study.reference check results/reference

:func:`select_files` sorts every file of a run into kept (:data:`KEPT`: manifest, data summaries,
predictions and their sidecars, evaluation tables and figures, training and prompting records,
executed notebooks) and excluded (weights, adapters, checkpoints, caches, logs, data splits: their
size and SHA-256 are recorded, the files are not copied). :func:`copy_reference` copies the kept
files atomically and writes :data:`RECORD_FILE` beside the manifest; it refuses a kept set over
:data:`MAX_BYTES`. :func:`validate_reference` refuses a reference folder the book cannot render
truthfully (a file missing, a manifest without a readable commit or code digest, predictions
without their sidecar), and :func:`check_headline` recomputes the headline from ``eval/scores.parquet``
and compares it with the values glued in the executed notebook 04.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import os
import platform
import re
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd

from wfutils.data.predictions import META_SUFFIX, meta_path
from wfutils.evaluation import companion, selection
from wfutils.provenance import code_digest
from wfutils.slm.layout import ADAPTER_DIR, CHECKPOINT_DIR, CURVE_DIR, FINETUNING_DIR
from wfutils.storage import atomic_dir, atomic_write_json
from wfutils.study.parameters import declared_defaults
from wfutils.study.pipeline import REPO_ROOT
from wfutils.weights import file_sha256

__all__ = ["ADAPT_FOLDER", "KEPT", "MAX_BYTES", "RECORD_FILE", "REFERENCE_DIR", "ReferenceRunError", "RunFile",
           "Inventory", "check_headline", "copy_reference", "excluded_kind", "executed_parameters",
           "glued_values", "is_reference", "kept_kind", "read_provenance", "select_files", "validate_reference"]

REFERENCE_DIR = REPO_ROOT / "results" / "reference"
#: Written beside the reference's manifest: what was kept and excluded (with hashes), when, on which machine.
RECORD_FILE = "reference.json"
FORMAT = 1
#: The most the kept files of a reference (worked example included) may weigh, in bytes.
MAX_BYTES = 20_000_000
#: Folder holding the worked example's run inside a reference (the book's "Adapt it to your domain").
ADAPT_FOLDER = "n8n"
#: What a reference keeps of a run folder: (path pattern relative to the run, what it is); ``*`` stays
#: within one folder level. Anything else is excluded, its hash recorded.
KEPT: tuple[tuple[str, str], ...] = (
    ("manifest.json", "manifest"),
    ("data/*/info.json", "data summary"),
    ("data/figures/*.png", "data figure"),
    ("predictions/*.jsonl", "predictions"),
    (f"predictions/*{META_SUFFIX}", "predictions sidecar"),
    ("predictions/*.adapter_check.json", "adapter check"),
    ("eval/*.csv", "evaluation table"),
    ("eval/*.json", "evaluation record"),
    ("eval/scores.parquet", "evaluation table"),
    ("eval/selection_scores.parquet", "evaluation table"),
    ("eval/predictions.parquet", "evaluation table"),
    ("eval/errors.parquet", "evaluation table"),
    ("eval/figures/*.png", "evaluation figure"),
    (f"{FINETUNING_DIR}/*.json", "fine-tuning record"),
    (f"{FINETUNING_DIR}/*.csv", "fine-tuning table"),
    (f"{FINETUNING_DIR}/*.png", "fine-tuning figure"),
    (f"{FINETUNING_DIR}/*/training_record.json", "fine-tuning record of a named system (another seed)"),
    (f"{FINETUNING_DIR}/*/generation_summary.json", "fine-tuning record of a named system (another seed)"),
    (f"{FINETUNING_DIR}/*/*.png", "fine-tuning figure of a named system"),
    (f"{FINETUNING_DIR}/{CURVE_DIR}/*/adapter_config.json", "learning-curve point's adapter configuration"),
    (f"{FINETUNING_DIR}/{CURVE_DIR}/*/trainer_state.json", "learning-curve point's trainer state"),
    ("llm/*.json", "prompting record"),
    ("llm/*.csv", "prompting table"),
    ("llm/traces/*.jsonl", "request traces"),
    ("notebooks/*.ipynb", "executed notebook"),
)
#: Never kept, whatever pattern they match: weights and what holds them.
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth", ".ckpt", ".onnx", ".npz")
_EXCLUDED_FOLDERS = {ADAPTER_DIR: "adapter", CHECKPOINT_DIR: "checkpoint", "cache": "cache", "merged": "weights"}
#: Excluded by name: the evaluation's examples are whole test splits of the corpora (rebuilt by notebook 01).
_EXCLUDED_FILES = {"eval/examples.parquet": "corpus rows"}
#: The glued headline values that do not depend on resampling: compared whatever code computed the run.
POINT_VALUES = ("headline_relative_gain_pct", "headline_n", "n_prompted_systems", "finetuned_flowsim_with_inputs",
                "finetuned_n", "finetuned_system", "best_prompted_flowsim_with_inputs", "best_prompted_n",
                "best_prompted_system", "paired_diff", "paired_n", "n_test_examples", "evaluation_set")
#: Files a reference must hold whatever its record lists: what the book renders and checks its headline against.
REQUIRED = ("notebooks/04_evaluation.ipynb", "eval/scores.parquet", "eval/selection_scores.parquet")
ADAPT_REQUIRED = ("notebooks/04_evaluation.ipynb",)
NOT_NEEDED = "not needed by the book"
_COMMIT = re.compile(r"[0-9a-f]{40}")
_DIGEST = re.compile(r"[0-9a-f]{16}")


class ReferenceRunError(RuntimeError):
    """A reference run that cannot be copied or rendered as it is; the message names the file."""


@dataclass(frozen=True)
class RunFile:
    """One file of a run: its path relative to the run (POSIX), size, SHA-256 and what it is."""

    path: str
    size: int
    sha256: str
    kind: str

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256, "kind": self.kind}


@dataclass(frozen=True)
class Inventory:
    """Every file of a run, kept or excluded."""

    run_dir: Path
    kept: tuple[RunFile, ...]
    excluded: tuple[RunFile, ...]

    @property
    def kept_bytes(self) -> int:
        return sum(f.size for f in self.kept)


def _matches(path: PurePosixPath, pattern: str) -> bool:
    parts = PurePosixPath(pattern).parts
    return len(parts) == len(path.parts) and all(fnmatchcase(p, q) for p, q in zip(path.parts, parts))


def excluded_kind(relative: str) -> str | None:
    """Why a file is never kept (``weights``, ``adapter``, ``checkpoint``, ``cache``, ``log``, ``corpus rows``, ...),
    else None."""
    if relative in _EXCLUDED_FILES:
        return _EXCLUDED_FILES[relative]
    path = PurePosixPath(relative)
    for part in path.parts[:-1]:
        if part in _EXCLUDED_FOLDERS:
            return _EXCLUDED_FOLDERS[part]
        if part.startswith("checkpoint"):
            return "checkpoint"
    name = path.name
    if name.endswith(_WEIGHT_SUFFIXES):
        return "weights"
    if name.startswith("."):
        return "hidden or temporary"
    if name.endswith(".log"):
        return "log"
    if name.endswith((".lock", ".lock.json")):
        return "run lock"
    return None


def kept_kind(relative: str) -> str | None:
    """What a file is when a reference keeps it (:data:`KEPT`), None when it is excluded."""
    if excluded_kind(relative) is not None:
        return None
    path = PurePosixPath(relative)
    return next((what for pattern, what in KEPT if _matches(path, pattern)), None)


def _run_file(run_dir: Path, path: Path, kind: str) -> RunFile:
    return RunFile(path.relative_to(run_dir).as_posix(), path.stat().st_size, file_sha256(path), kind)


def select_files(run_dir: str | os.PathLike[str]) -> Inventory:
    """Every file of ``run_dir``: kept (:func:`kept_kind`) or excluded (named by :func:`excluded_kind`, else
    ``data split`` under ``data/``, else ``not needed by the book``), each with its size and SHA-256."""
    run_dir = Path(run_dir)
    if not (run_dir / "manifest.json").is_file():
        raise ReferenceRunError(f"{run_dir / 'manifest.json'} not found: {run_dir} is not a finished run of the study")
    kept, excluded = [], []
    for path in sorted(p for p in run_dir.rglob("*") if p.is_file() and not p.is_symlink()):
        relative = path.relative_to(run_dir).as_posix()
        kind = kept_kind(relative)
        if kind is not None:
            kept.append(_run_file(run_dir, path, kind))
        else:
            why = excluded_kind(relative) or ("data split" if relative.startswith("data/") else NOT_NEEDED)
            excluded.append(_run_file(run_dir, path, why))
    return Inventory(run_dir, tuple(kept), tuple(excluded))


def _machine() -> dict[str, Any]:
    memory = None
    try:
        memory = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    return {"platform": platform.platform(), "machine": platform.machine(), "cpu_count": os.cpu_count(),
            "memory_gib": memory}


def _largest(files: list[RunFile], count: int = 5) -> str:
    return ", ".join(f"{f.path} ({f.size / 1e6:.1f} MB)" for f in sorted(files, key=lambda f: -f.size)[:count])


def copy_reference(run_dir: str | os.PathLike[str], target: str | os.PathLike[str] = REFERENCE_DIR, *,
                   adapt_run: str | os.PathLike[str] | None = None, study_seconds: float | None = None,
                   max_bytes: int = MAX_BYTES) -> Path:
    """Copy what a reference keeps of ``run_dir`` (and of the worked example ``adapt_run``, into
    ``<target>/n8n``) into ``target`` atomically, with :data:`RECORD_FILE`; refuse a kept set over ``max_bytes``.

    ``study_seconds``: the wall time of the study that produced the run (``make reference`` measures it).
    """
    _validate_run(Path(run_dir), REQUIRED)
    runs = {"": select_files(run_dir)}
    if adapt_run is not None:
        _validate_run(Path(adapt_run), ADAPT_REQUIRED)
        runs[ADAPT_FOLDER + "/"] = select_files(adapt_run)
    kept = [RunFile(prefix + f.path, f.size, f.sha256, f.kind) for prefix, inv in runs.items() for f in inv.kept]
    excluded = [RunFile(prefix + f.path, f.size, f.sha256, f.kind) for prefix, inv in runs.items() for f in inv.excluded]
    total = sum(f.size for f in kept)
    if total > max_bytes:
        raise ReferenceRunError(f"the reference would weigh {total / 1e6:.1f} MB, over the {max_bytes / 1e6:g} MB "
                                f"limit; largest kept files: {_largest(kept)}")
    record = {
        "format": FORMAT, "run": runs[""].run_dir.name,
        "adapt_run": ADAPT_FOLDER if adapt_run is not None else None,
        "copied_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "study_seconds": None if study_seconds is None else round(float(study_seconds), 1),
        "machine": _machine(), "kept_bytes": total, "excluded_bytes": sum(f.size for f in excluded),
        "kept": [f.to_dict() for f in kept], "excluded": [f.to_dict() for f in excluded],
    }
    target = Path(target)
    with atomic_dir(target) as tmp:
        for prefix, inventory in runs.items():
            for f in inventory.kept:
                destination = tmp / (prefix + f.path)
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(inventory.run_dir / f.path, destination)
        atomic_write_json(tmp / RECORD_FILE, record, indent=1)
    return target


# --------------------------------------------------------------------------- checks before rendering

def is_reference(folder: str | os.PathLike[str]) -> bool:
    """Whether ``folder`` is a reference run (it holds :data:`RECORD_FILE`)."""
    return (Path(folder) / RECORD_FILE).is_file()


def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise ReferenceRunError(f"{path} is missing: {what}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReferenceRunError(f"{path} cannot be read as JSON ({what}): {exc}") from None


def read_provenance(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The run's manifest, refused (naming the file and field) when its commit or code digest cannot be read."""
    path = Path(run_dir) / "manifest.json"
    manifest = _read_json(path, "the run's manifest (commit, code digest, versions, durations)")
    if not isinstance(manifest, dict):
        raise ReferenceRunError(f"{path}: a manifest is a JSON object, found {type(manifest).__name__}")
    for field, pattern, what in (("commit", _COMMIT, "40 hexadecimal digits"),
                                 ("code_digest", _DIGEST, "16 hexadecimal digits")):
        value = manifest.get(field)
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise ReferenceRunError(f"{path}: field {field!r} is {value!r}, expected {what}: the book cannot say "
                                    "which code computed this run")
    for entry in manifest.get("notebooks", []):
        digest = entry.get("code_digest", manifest["code_digest"]) if isinstance(entry, dict) else None
        if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
            name = entry.get("name") if isinstance(entry, dict) else entry
            raise ReferenceRunError(f"{path}: notebook {name!r} has code digest {digest!r}, expected 16 hexadecimal "
                                    "digits")
    return manifest


def _validate_run(run_dir: Path, required: tuple[str, ...]) -> None:
    """A run the book can render: readable provenance, a sidecar for every predictions file, ``required`` files
    and an executed copy of every notebook of its manifest."""
    manifest = read_provenance(run_dir)
    for predictions in sorted((run_dir / "predictions").glob("*.jsonl")):
        if not meta_path(predictions).is_file():
            raise ReferenceRunError(f"{predictions} has no sidecar {meta_path(predictions).name}: what system "
                                    "produced these predictions is unknown")
    for entry in manifest.get("notebooks", []):
        output = run_dir / entry.get("output", f"notebooks/{entry.get('name')}.ipynb")
        if not output.is_file():
            raise ReferenceRunError(f"{output} is missing: notebook {entry.get('name')} of the manifest has no "
                                    "executed copy")
    for name in required:
        if not (run_dir / name).is_file():
            raise ReferenceRunError(f"{run_dir / name} is missing: the book renders it or checks its numbers "
                                    "against it")


def validate_reference(folder: str | os.PathLike[str] = REFERENCE_DIR) -> dict[str, Any]:
    """Refuse a reference folder that cannot be rendered truthfully, naming the file; returns its record.

    Checked in this order, so the message names the first real problem: :data:`RECORD_FILE` readable; the
    manifest's commit and code digest readable; a sidecar beside every predictions file; the files the book
    renders and an executed copy of every notebook of the manifest (the worked example's run too); every
    file the record lists as kept present, with the SHA-256 it had when it was copied.
    """
    folder = Path(folder)
    record = _read_json(folder / RECORD_FILE, "the reference record written by python -m wfutils.study.reference copy")
    kept = record.get("kept") if isinstance(record, dict) else None
    if not isinstance(kept, list) or not all(isinstance(f, dict) and "path" in f for f in kept):
        raise ReferenceRunError(f"{folder / RECORD_FILE}: no list of kept files ('kept': [{{'path': ...}}])")
    _validate_run(folder, REQUIRED)
    if record.get("adapt_run"):
        _validate_run(folder / record["adapt_run"], ADAPT_REQUIRED)
    for entry in kept:
        path = folder / entry["path"]
        if not path.is_file():
            raise ReferenceRunError(f"{path} is missing ({entry.get('kind', 'kept file')} listed in "
                                    f"{folder / RECORD_FILE})")
    for entry in kept:
        path = folder / entry["path"]
        if entry.get("sha256") and file_sha256(path) != entry["sha256"]:
            raise ReferenceRunError(f"{path} differs from the file that was copied (SHA-256 "
                                    f"{entry['sha256']} in {folder / RECORD_FILE}); refresh it with make reference")
    return record


# --------------------------------------------------------------------------- glued values

def _literal(text: str) -> Any:
    if text.strip() in ("nan", "-nan"):
        return float("nan")
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def glued_values(notebook: str | os.PathLike[str]) -> dict[str, Any]:
    """The values an executed notebook glued (myst-nb ``glue``), by name, read back from their plain-text form."""
    data = json.loads(Path(notebook).read_text(encoding="utf-8"))
    values: dict[str, Any] = {}
    for cell in data.get("cells", []):
        for output in cell.get("outputs", []):
            record = output.get("metadata", {}).get("scrapbook")
            if not record or "name" not in record:
                continue
            prefix = record.get("mime_prefix", "")
            text = output.get("data", {}).get(prefix + "text/plain")
            if text is not None:
                values[record["name"]] = _literal("".join(text) if isinstance(text, list) else text)
    return values


def executed_parameters(notebook: str | os.PathLike[str]) -> dict[str, Any]:
    """The parameter values an executed notebook ran with: its parameters cell, then what papermill injected."""
    data = json.loads(Path(notebook).read_text(encoding="utf-8"))
    values: dict[str, Any] = {}
    for cell in data.get("cells", []):
        if cell.get("cell_type") == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            for node in ast.parse(source).body:
                if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                    try:
                        values[node.targets[0].id] = ast.literal_eval(node.value)
                    except ValueError:
                        pass
            break
    values.update(data.get("metadata", {}).get("papermill", {}).get("parameters", {}))
    return values


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=0, abs_tol=1e-9)
    return a == b


def check_headline(run_dir: str | os.PathLike[str], *, intervals: bool | None = None) -> dict[str, Any]:
    """Recompute the headline from ``eval/scores.parquet`` and compare it with what notebook 04 glued.

    ``intervals``: also compare the bootstrap intervals (default: only when notebook 04 was executed by the
    installed code, since resampling code may change while point estimates may not). Returns the values
    compared; :class:`ReferenceRunError` names every value that differs.
    """
    run_dir = Path(run_dir)
    notebook = run_dir / "notebooks" / "04_evaluation.ipynb"
    scores_path = run_dir / "eval" / "scores.parquet"
    for path in (notebook, scores_path, run_dir / "eval" / "selection_scores.parquet"):
        if not path.is_file():
            raise ReferenceRunError(f"{path} is missing: the headline cannot be checked")
    glued = glued_values(notebook)
    params = {**declared_defaults("04_evaluation"), **executed_parameters(notebook)}
    if intervals is None:
        manifest = read_provenance(run_dir)
        entry = next((e for e in manifest.get("notebooks", []) if e.get("name") == "04_evaluation"), {})
        intervals = entry.get("code_digest", manifest["code_digest"]) == code_digest()
    scores = pd.read_parquet(scores_path)
    setup = selection.comparison_setup(scores, pd.read_parquet(run_dir / "eval" / "selection_scores.parquet"),
                                       "flowsim_with_inputs")
    numbers = companion.headline(setup.values, setup.finetuned, setup.prompted,
                                 n_boot=int(params["n_bootstrap"]), seed=int(params["seed"]))
    recomputed = companion.headline_glue(numbers, evaluation_set=setup.where,
                                         n_test_examples=int(setup.values.dropna(how="all").shape[0]))
    names = list(recomputed) if intervals else [n for n in POINT_VALUES if n in recomputed]
    missing = [n for n in names if n not in glued]
    if missing:
        raise ReferenceRunError(f"{notebook} does not glue {', '.join(missing)}: the book's headline cannot be "
                                "checked against eval/scores.parquet")
    differing = [f"{n}: glued {glued[n]!r}, recomputed {recomputed[n]!r}" for n in names
                 if not _same(glued[n], recomputed[n])]
    if differing:
        raise ReferenceRunError(f"{notebook}: the glued headline differs from the one recomputed from "
                                f"{scores_path}:\n  " + "\n  ".join(differing))
    return {n: recomputed[n] for n in names}


# --------------------------------------------------------------------------- command line

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wfutils.study.reference", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    copy = commands.add_parser("copy", help="copy what the book needs of a finished run into the reference folder")
    copy.add_argument("run", type=Path, help="the finished run, e.g. results/default")
    copy.add_argument("--adapt-run", type=Path, default=None, help="the worked example's run (results/n8n)")
    copy.add_argument("--to", type=Path, default=REFERENCE_DIR, help="the reference folder (results/reference)")
    copy.add_argument("--study-seconds", type=float, default=None, help="wall time of the study that produced it")
    check = commands.add_parser("check", help="validate a reference folder and its glued headline")
    check.add_argument("folder", type=Path, nargs="?", default=REFERENCE_DIR)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        if args.command == "copy":
            target = copy_reference(args.run, args.to, adapt_run=args.adapt_run, study_seconds=args.study_seconds)
            record = json.loads((target / RECORD_FILE).read_text(encoding="utf-8"))
            print(f"reference written: {target} ({len(record['kept'])} files, {record['kept_bytes'] / 1e6:.1f} MB; "
                  f"{len(record['excluded'])} excluded files, {record['excluded_bytes'] / 1e6:.1f} MB, hashed)")
            unknown = [f["path"] for f in record["excluded"] if f["kind"] == NOT_NEEDED]
            if unknown:  # matched by no rule of KEPT: say so, a new kind of result may need a rule
                print("not kept (no rule of wfutils.study.reference.KEPT matches them):", *unknown, sep="\n  ")
        else:
            validate_reference(args.folder)
            compared = check_headline(args.folder)
            print(f"reference ok: {args.folder} ({len(compared)} glued headline values match eval/scores.parquet, "
                  f"{time.perf_counter() - started:.1f} s)")
    except ReferenceRunError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
