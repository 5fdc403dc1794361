"""Render a run of the study as the Jupyter Book companion.

    python -m wfutils.book --run results/default

The book never executes notebooks: it renders the papermill-executed copies of the chosen
run (``results/<run>/notebooks/``), copied to ``book/run/`` where ``_toc.yml`` expects them,
and is built with warnings as errors, so a missing figure or glued number fails the build.
While copying, the cells a reader does not need are hidden (:func:`reader_tags`): papermill's
injected-parameters cell and each notebook's parameters cell get the ``remove-cell`` tag (the
run's parameters are in its manifest and in the book's tables); the tags the notebooks carry
themselves (``remove-input``, ``hide-input``, figure captions) are kept as they are.
A run whose notebooks were executed by other ``wfutils`` code than the installed one (its
``code_digest`` differs) is not rendered: the build names the stale notebooks and how to rerun
them (``--allow-stale`` renders them anyway, with the digests printed).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from wfutils.provenance import code_digest
from wfutils.study.pipeline import REPO_ROOT

RUN_PAGES_DIR = REPO_ROOT / "book" / "run"


class BookError(RuntimeError):
    """The run lacks something the book needs, or the build failed."""


def run_pages(toc_path: Path = REPO_ROOT / "_toc.yml") -> list[str]:
    """Names of the executed notebooks the table of contents expects under book/run/."""
    toc = yaml.safe_load(toc_path.read_text(encoding="utf-8"))
    files: list[str] = []
    for part in toc.get("parts", []):
        for chapter in part.get("chapters", []):
            file = chapter.get("file", "")
            if file.startswith("book/run/"):
                files.append(file.removeprefix("book/run/"))
    return files


def stale_notebooks(run_dir: Path) -> list[str]:
    """Notebooks of the run executed with a ``wfutils`` code digest other than the installed one."""
    manifest = json.loads((Path(run_dir) / "manifest.json").read_text(encoding="utf-8"))
    current = code_digest()
    return [entry["name"] for entry in manifest.get("notebooks", [])
            if entry.get("code_digest", manifest.get("code_digest")) != current]


#: Cells removed from the book whatever the notebook's own tags say (matched by cell tag).
REMOVED_CELL_TAGS = ("injected-parameters", "parameters")
_HIDING_TAGS = {"remove-cell", "remove_cell", "remove-input", "remove_input", "hide-cell", "hide-input"}


def reader_tags(notebook: dict) -> int:
    """Tag papermill's injected-parameters cell and the parameters cell ``remove-cell`` (in place).

    A cell already hidden by one of its own tags (``remove-input``, ``hide-input``, ...) keeps
    them. Returns the number of cells tagged.
    """
    changed = 0
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if any(t in REMOVED_CELL_TAGS for t in tags) and not _HIDING_TAGS & set(tags):
            tags.append("remove-cell")
            changed += 1
    return changed


def stage_notebook(source: Path, target: Path) -> Path:
    """Copy an executed notebook into the book with :func:`reader_tags` applied."""
    notebook = json.loads(Path(source).read_text(encoding="utf-8"))
    reader_tags(notebook)
    target.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    shutil.copystat(source, target)
    return target


def stage_run(run_dir: Path, pages_dir: Path = RUN_PAGES_DIR) -> list[Path]:
    """Copy the run's executed notebooks into the book (cells hidden by :func:`reader_tags`); name every missing one."""
    run_dir = Path(run_dir)
    if not (run_dir / "manifest.json").exists():
        raise BookError(f"{run_dir / 'manifest.json'} not found: run the study first "
                        f"(python -m wfutils.pipeline --profile default --run {run_dir.name})")
    wanted = run_pages()
    sources = [run_dir / "notebooks" / f"{name}.ipynb" for name in wanted]
    missing = [str(path) for path in sources if not path.exists()]
    if missing:
        raise BookError("the book needs executed notebooks that this run lacks: " + ", ".join(missing))
    if pages_dir.exists():
        shutil.rmtree(pages_dir)
    pages_dir.mkdir(parents=True)
    copied = []
    for source in sources:
        copied.append(stage_notebook(source, pages_dir / source.name))
    return copied


def build(run_dir: Path, *, strict: bool = True, allow_stale: bool = False) -> Path:
    """Stage the run and build the HTML book; return the path of its index page."""
    stale = stale_notebooks(run_dir) if (Path(run_dir) / "manifest.json").exists() else []
    if stale:
        profile = json.loads((Path(run_dir) / "manifest.json").read_text(encoding="utf-8")).get("profile", "default")
        message = (f"{run_dir} was computed by other wfutils code than the installed one (code digest "
                   f"{code_digest()}); stale notebooks: {', '.join(stale)}. Rerun them: "
                   f"python -m wfutils.pipeline --profile {profile} --run {Path(run_dir).name}")
        if not allow_stale:
            raise BookError(message)
        print(f"warning: {message}", file=sys.stderr)
    stage_run(run_dir)
    executable = Path(sys.executable).with_name("jupyter-book")
    # --all: pages that glue numbers from the run (intro, claims) do not change when another
    # run is staged, so an incremental build would keep the previous run's numbers.
    command = [str(executable), "build", str(REPO_ROOT), "--builder", "html", "--keep-going", "--all"]
    if strict:
        command.append("--warningiserror")
    result = subprocess.run(command, check=False, cwd=REPO_ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        problems = [line for line in (result.stdout + result.stderr).splitlines()
                    if "WARNING" in line or "ERROR" in line or "Error" in line]
        raise BookError("jupyter-book build failed:\n" + "\n".join(problems[-40:] or result.stderr.splitlines()[-40:]))
    return REPO_ROOT / "_build" / "html" / "index.html"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wfutils.book", description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, type=Path, help="run directory, e.g. results/default")
    parser.add_argument("--no-strict", action="store_true", help="do not turn warnings into errors")
    parser.add_argument("--allow-stale", action="store_true",
                        help="render notebooks computed by other wfutils code than the installed one")
    args = parser.parse_args(argv)
    try:
        index = build(args.run, strict=not args.no_strict, allow_stale=args.allow_stale)
    except BookError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"book written: {index}")
    return 0

