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

The committed reference run (``--reference``, or any run folder holding ``reference.json``) is
checked first (:func:`wfutils.study.reference.validate_reference` and its glued headline against
``eval/scores.parquet``), and its age is shown instead of refused: a note at the top of the intro
and of every results page says which commit and code digest computed it and, when the installed
code differs, which notebooks' inputs changed (:func:`reference_note`).
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
from wfutils.study.reference import (RECORD_FILE, REFERENCE_DIR, ReferenceRunError, check_headline, is_reference,
                                     read_provenance, validate_reference)

RUN_PAGES_DIR = REPO_ROOT / "book" / "run"
ADAPT_PAGES_DIR = REPO_ROOT / "book" / "adapt_run"
#: The run shown as the worked example of "Adapt it to your domain" (``--profile n8n``), beside the rendered run.
ADAPT_RUN_NAME = "n8n"
#: Staged beside the run's pages and included by ``book/intro.md``: the reference run's note, empty for other runs.
NOTE_FILE = "provenance.md"


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


def add_note(notebook: dict, note: str) -> None:
    """Put ``note`` (MyST) under the notebook's title, in its first Markdown cell (in place)."""
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") == "markdown":
            source = cell.get("source", "")
            lines = (source if isinstance(source, list) else source.splitlines(keepends=True)) or [""]
            title = next((i for i, line in enumerate(lines) if line.startswith("# ")), None)
            at = 0 if title is None else title + 1
            if at and not lines[at - 1].endswith("\n"):
                lines[at - 1] += "\n"
            cell["source"] = lines[:at] + ["\n", note.rstrip("\n") + "\n", "\n"] + lines[at:]
            return
    notebook.setdefault("cells", []).insert(0, {"cell_type": "markdown", "metadata": {}, "source": [note]})


def stage_notebook(source: Path, target: Path, *, note: str = "") -> Path:
    """Copy an executed notebook into the book with :func:`reader_tags` applied (and ``note`` under its title)."""
    notebook = json.loads(Path(source).read_text(encoding="utf-8"))
    reader_tags(notebook)
    if note:
        add_note(notebook, note)
    target.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    shutil.copystat(source, target)
    return target


def stage_run(run_dir: Path, pages_dir: Path = RUN_PAGES_DIR, *, note: str = "") -> list[Path]:
    """Copy the run's executed notebooks into the book (cells hidden by :func:`reader_tags`); name every missing one.

    ``note`` (MyST, empty for none) goes under each page's title and into :data:`NOTE_FILE`, which the intro includes.
    """
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
        copied.append(stage_notebook(source, pages_dir / source.name, note=note))
    (pages_dir / NOTE_FILE).write_text(note, encoding="utf-8")
    return copied


def reference_note(run_dir: Path, stale: list[str]) -> str:
    """The reference run's age as a MyST admonition: the commit and code digest that computed it and, when
    the installed code differs (``stale``: :func:`stale_notebooks`), which notebooks' inputs changed since."""
    manifest = read_provenance(run_dir)
    record = json.loads((Path(run_dir) / RECORD_FILE).read_text(encoding="utf-8"))
    commit, digest = manifest["commit"], manifest["code_digest"]
    seconds = manifest.get("duration_s")
    cores = (record.get("machine") or {}).get("cpu_count")
    took = (f" after {seconds / 60:.0f} minutes of computing{f' on {cores} CPU cores' if cores else ''}"
            if isinstance(seconds, (int, float)) else "")
    finished = str(manifest.get("finished", "")).partition("T")[0]
    text = (f"This book renders the committed reference run of the study (profile `{manifest.get('profile', '?')}`), "
            f"computed by commit `{commit}` (`wfutils` code digest `{digest}`)"
            f"{f', finished on {finished}' if finished else ''}{took}. Nothing was trained or prompted to "
            "build this book: every number comes from that run's files.")
    if stale:
        text += (f"\n\nThe installed code (code digest `{code_digest()}`) differs from the code that computed it: "
                 f"the inputs of {', '.join(f'`{name}`' for name in stale)} have changed since, so these pages show "
                 "what the recorded commit computed. `make reference` recomputes the run with the current code.")
    else:
        text += "\n\nThe installed code is the code that computed it."
    title = f"Reference run: commit {commit[:7]}, code digest {digest}"
    return f"```{{admonition}} {title}\n:class: {'warning' if stale else 'note'}\n{text}\n```\n"


def _check_fresh(run_dir: Path, allow_stale: bool) -> None:
    stale = stale_notebooks(run_dir) if (Path(run_dir) / "manifest.json").exists() else []
    if stale:
        profile = json.loads((Path(run_dir) / "manifest.json").read_text(encoding="utf-8")).get("profile", "default")
        message = (f"{run_dir} was computed by other wfutils code than the installed one (code digest "
                   f"{code_digest()}); stale notebooks: {', '.join(stale)}. Rerun them: "
                   f"python -m wfutils.pipeline --profile {profile} --run {Path(run_dir).name}")
        if not allow_stale:
            raise BookError(message)
        print(f"warning: {message}", file=sys.stderr)


#: What "Adapt it to your domain" says about its worked example: glued from the example run's notebook 04.
_ADAPT_RESULTS = """\
On the n8n test templates (run `{run}`, profile `{profile}`), the model fine-tuned on the n8n
train split ({{glue:text}}`adapt_run/04_evaluation.ipynb::finetuned_system:s`) wrote
{{glue:text}}`adapt_run/04_evaluation.ipynb::finetuned_schema_valid:d` schema-valid flows in
{{glue:text}}`adapt_run/04_evaluation.ipynb::finetuned_answers:d` answers and reached a mean
FlowSim with inputs of **{{glue:text}}`adapt_run/04_evaluation.ipynb::finetuned_flowsim_with_inputs:.3f`**
[{{glue:text}}`adapt_run/04_evaluation.ipynb::finetuned_ci_low:.3f`,
{{glue:text}}`adapt_run/04_evaluation.ipynb::finetuned_ci_high:.3f`] (n = {{glue:text}}`adapt_run/04_evaluation.ipynb::finetuned_n:d`),
and the best prompted system with n8n examples
({{glue:text}}`adapt_run/04_evaluation.ipynb::best_prompted_system:s`;
{{glue:text}}`adapt_run/04_evaluation.ipynb::best_prompted_schema_valid:d` schema-valid flows in
{{glue:text}}`adapt_run/04_evaluation.ipynb::best_prompted_answers:d` answers)
**{{glue:text}}`adapt_run/04_evaluation.ipynb::best_prompted_flowsim_with_inputs:.3f`**
[{{glue:text}}`adapt_run/04_evaluation.ipynb::best_prompted_ci_low:.3f`,
{{glue:text}}`adapt_run/04_evaluation.ipynb::best_prompted_ci_high:.3f`]
(n = {{glue:text}}`adapt_run/04_evaluation.ipynb::best_prompted_n:d`). Paired on the same templates, fine-tuned minus
prompted is {{glue:text}}`adapt_run/04_evaluation.ipynb::paired_diff:+.3f`
[{{glue:text}}`adapt_run/04_evaluation.ipynb::paired_diff_low:+.3f`,
{{glue:text}}`adapt_run/04_evaluation.ipynb::paired_diff_high:+.3f`]. The whole evaluation of that run
is rendered in {{doc}}`adapt_run/04_evaluation`.
"""

_ADAPT_MISSING = """\
```{{note}}
This build has no worked-example run: `{path}` was not found. Run
`python -m wfutils.pipeline --profile n8n --run n8n` (about 20 minutes on 2 CPU cores), then build
the book again, to see its results here and in {{doc}}`adapt_run/04_evaluation`.
```
"""


def stage_adapt_run(adapt_run: Path | None, pages_dir: Path = ADAPT_PAGES_DIR, *, allow_stale: bool = False) -> Path:
    """Stage the worked example of "Adapt it to your domain": its executed notebook 04 and the glued summary.

    ``adapt_run`` None or missing: a page saying how to produce it (the book still builds).
    Returns the staged notebook.
    """
    if pages_dir.exists():
        shutil.rmtree(pages_dir)
    pages_dir.mkdir(parents=True)
    target = pages_dir / "04_evaluation.ipynb"
    source = Path(adapt_run) / "notebooks" / "04_evaluation.ipynb" if adapt_run is not None else None
    if source is not None and source.exists():
        if not is_reference(Path(adapt_run).parent):  # inside a reference run, its age is in the reference's note
            _check_fresh(Path(adapt_run), allow_stale)
        stage_notebook(source, target)
        notebook = json.loads(target.read_text(encoding="utf-8"))
        notebook["cells"].insert(0, {"cell_type": "markdown", "metadata": {}, "source": [
            "# Worked example: the n8n run\n", "\n",
            f"The evaluation notebook of run `{Path(adapt_run).name}`, fine-tuned and prompted on n8n templates by "
            "parameters only (see {doc}`../adapt`). Its headings below are those of notebook 04.\n"]})
        for cell in notebook["cells"][1:]:
            if cell.get("cell_type") == "markdown":  # one title per page: the notebook's own become sections
                cell["source"] = [("#" + line) if line.startswith("#") else line for line in cell.get("source", [])]
            figure = cell.get("metadata", {}).get("mystnb", {}).get("figure", {})
            if figure.get("name"):  # the rendered run's notebook 04 has the same figure labels
                figure["name"] = "adapt-" + figure["name"]
        target.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        manifest = json.loads((Path(adapt_run) / "manifest.json").read_text(encoding="utf-8"))
        text = _ADAPT_RESULTS.format(run=Path(adapt_run).name, profile=manifest.get("profile", "?"))
    else:
        where = adapt_run if adapt_run is not None else f"results/{ADAPT_RUN_NAME}"
        notebook = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": [
            "# Worked example: the n8n run\n", "\n", _ADAPT_MISSING.format(path=where).replace("{doc}`adapt_run/04_evaluation`", "this page")]}],
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
            "nbformat": 4, "nbformat_minor": 5}
        target.write_text(json.dumps(notebook, indent=1) + "\n", encoding="utf-8")
        text = _ADAPT_MISSING.format(path=where)
    (pages_dir / "results.md").write_text(text, encoding="utf-8")
    return target


def build(run_dir: Path, *, strict: bool = True, allow_stale: bool = False, adapt_run: Path | None = None) -> Path:
    """Stage the run (and the worked example of the adapt chapter) and build the HTML book; return its index page.

    ``adapt_run`` defaults to ``results/n8n`` beside ``run_dir``; for a reference run (:func:`is_reference`), to the
    worked example it holds. A reference run is validated and its glued headline checked before anything is
    staged (:class:`BookError` naming the file); its stale notebooks are a note in the book, not a refusal.
    """
    run_dir = Path(run_dir)
    if is_reference(run_dir):
        try:
            record = validate_reference(run_dir)
            check_headline(run_dir)
            stale = stale_notebooks(run_dir)
            if record.get("adapt_run"):
                stale += [f"{record['adapt_run']}/{name}" for name in stale_notebooks(run_dir / record["adapt_run"])]
            note = reference_note(run_dir, stale)
        except ReferenceRunError as exc:
            raise BookError(f"the reference run cannot be rendered: {exc}") from exc
        if adapt_run is None and record.get("adapt_run"):
            adapt_run = run_dir / record["adapt_run"]
        stage_run(run_dir, note=note)
        stage_adapt_run(adapt_run, allow_stale=allow_stale)
    else:
        _check_fresh(run_dir, allow_stale)
        stage_run(run_dir)
        stage_adapt_run(adapt_run if adapt_run is not None else run_dir.parent / ADAPT_RUN_NAME,
                        allow_stale=allow_stale)
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
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--run", type=Path, help="run directory, e.g. results/default")
    which.add_argument("--reference", nargs="?", type=Path, const=REFERENCE_DIR,
                       help=f"render the committed reference run (default {REFERENCE_DIR.relative_to(REPO_ROOT)})")
    parser.add_argument("--no-strict", action="store_true", help="do not turn warnings into errors")
    parser.add_argument("--adapt-run", type=Path, default=None,
                        help=f"the worked example of the adapt chapter (default: results/{ADAPT_RUN_NAME} beside --run)")
    parser.add_argument("--allow-stale", action="store_true",
                        help="render notebooks computed by other wfutils code than the installed one")
    args = parser.parse_args(argv)
    if args.reference is not None and not is_reference(args.reference):
        print(f"error: no reference run in {args.reference} ({RECORD_FILE} not found); maintainers write it with "
              "make reference", file=sys.stderr)
        return 2
    try:
        index = build(args.run or args.reference, strict=not args.no_strict, allow_stale=args.allow_stale,
                      adapt_run=args.adapt_run)
    except BookError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"book written: {index}")
    return 0

