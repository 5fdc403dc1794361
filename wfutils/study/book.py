"""Render a run of the study as the Jupyter Book companion.

    python -m wfutils.book --run results/default

The book never executes notebooks: it renders the papermill-executed copies of the chosen
run (``results/<run>/notebooks/``), copied to ``book/run/`` where ``_toc.yml`` expects them,
and is built with warnings as errors, so a missing figure or glued number fails the build.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

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


def stage_run(run_dir: Path, pages_dir: Path = RUN_PAGES_DIR) -> list[Path]:
    """Copy the run's executed notebooks into the book; name every missing one."""
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
        target = pages_dir / source.name
        shutil.copy2(source, target)
        copied.append(target)
    return copied


def build(run_dir: Path, *, strict: bool = True) -> Path:
    """Stage the run and build the HTML book; return the path of its index page."""
    stage_run(run_dir)
    executable = Path(sys.executable).with_name("jupyter-book")
    # --all: pages that glue numbers from the run (intro, claims) do not change when another
    # run is staged, so an incremental build would keep the previous run's numbers.
    command = [str(executable), "build", str(REPO_ROOT), "--builder", "html", "--keep-going", "--all"]
    if strict:
        command.append("--warningiserror")
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        problems = [line for line in (result.stdout + result.stderr).splitlines()
                    if "WARNING" in line or "ERROR" in line or "Error" in line]
        raise BookError("jupyter-book build failed:\n" + "\n".join(problems[-40:] or result.stderr.splitlines()[-40:]))
    return REPO_ROOT / "_build" / "html" / "index.html"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wfutils.book", description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, type=Path, help="run directory, e.g. results/default")
    parser.add_argument("--no-strict", action="store_true", help="do not turn warnings into errors")
    args = parser.parse_args(argv)
    try:
        index = build(args.run, strict=not args.no_strict)
    except BookError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"book written: {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
