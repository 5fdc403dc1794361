"""The papermill pipeline on tiny real notebooks: plan errors, manifest, resume, failures."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from wfutils.study.pipeline import PipelineError, check_resources, load_profiles, parse_overrides, plan, run


def _notebook(path: Path, parameters: str, body: str) -> None:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(parameters)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture()
def notebooks(tmp_path: Path) -> Path:
    folder = tmp_path / "notebooks"
    folder.mkdir()
    _notebook(folder / "01_make.ipynb", 'run_dir = "results/dev"\nn = 3',
              "from pathlib import Path\nPath(run_dir).mkdir(parents=True, exist_ok=True)\n"
              "Path(run_dir, 'numbers.txt').write_text(' '.join(map(str, range(n))))")
    _notebook(folder / "02_read.ipynb", 'run_dir = "results/dev"\nfail = False',
              "from pathlib import Path\nassert not fail, 'asked to fail'\n"
              "Path(run_dir, 'total.txt').write_text(str(sum(map(int, Path(run_dir, 'numbers.txt').read_text().split()))))")
    return folder


PROFILES = {"tiny": {"common": {"n": 4}, "notebooks": {"02_read": {"fail": False}}}}


def test_shipped_profiles_cover_the_shipped_notebooks(tmp_path: Path) -> None:
    profiles = load_profiles()
    assert {"smoke", "default", "paper"} <= set(profiles)
    for name in profiles:
        steps = plan(name, tmp_path / name)
        assert [s.name for s in steps][:1] == ["01_data_exploration"]
        assert all(s.parameters.get("run_dir") == str(tmp_path / name) for s in steps if "run_dir" in s.parameters)


def test_unknown_profile_and_parameters_fail_before_any_work(notebooks: Path, tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="unknown profile 'huge'; known profiles: tiny"):
        plan("huge", tmp_path, notebooks_dir=notebooks, profiles=PROFILES)
    with pytest.raises(PipelineError, match="unknown parameter 'm'; known: fail, n, run_dir"):
        plan("tiny", tmp_path, {"m": 1}, notebooks_dir=notebooks, profiles=PROFILES)
    with pytest.raises(PipelineError, match="unknown notebook '03_x'"):
        plan("tiny", tmp_path, {"03_x.n": 1}, notebooks_dir=notebooks, profiles=PROFILES)
    with pytest.raises(PipelineError, match="must look like name=value"):
        parse_overrides(["n"])
    assert parse_overrides(["n=5", "01_make.flag=true", "names=[a, b]"]) == {"n": 5, "01_make.flag": True, "names": ["a", "b"]}
    # YAML 1.1 leaves exponents without a dot as strings; a learning rate is meant
    assert parse_overrides(["learning_rate=2e-4", "a=1.5E+3", "system=e5", "tag=1e-4x"]) == {
        "learning_rate": 2e-4, "a": 1500.0, "system": "e5", "tag": "1e-4x"}


def test_run_writes_manifest_resumes_and_reports_failures(notebooks: Path, tmp_path: Path) -> None:
    results = tmp_path / "results"
    manifest = run("tiny", "r1", results_dir=results, notebooks_dir=notebooks, progress=False, profiles=PROFILES)
    run_dir = results / "r1"
    assert (run_dir / "total.txt").read_text() == "6"  # n=4 from the profile: 0+1+2+3
    assert (run_dir / "notebooks" / "01_make.ipynb").exists()
    on_disk = json.loads((run_dir / "manifest.json").read_text())
    assert on_disk["status"] == "ok" and on_disk["profile"] == "tiny"
    assert [e["name"] for e in on_disk["notebooks"]] == ["01_make", "02_read"]
    assert all(e["duration_s"] >= 0 and e["started"] and e["finished"] for e in on_disk["notebooks"])
    assert on_disk["versions"]["papermill"] and manifest["notebooks"][0]["parameters"]["n"] == 4

    again = run("tiny", "r1", results_dir=results, notebooks_dir=notebooks, progress=False, profiles=PROFILES)
    assert [e.get("skipped") for e in again["notebooks"]] == [True, True]

    changed = run("tiny", "r1", {"02_read.fail": False, "n": 5}, results_dir=results, notebooks_dir=notebooks,
                  progress=False, profiles=PROFILES)
    assert [e.get("skipped", False) for e in changed["notebooks"]] == [False, False]
    assert (run_dir / "total.txt").read_text() == "10"

    with pytest.raises(PipelineError, match=r"notebook 02_read failed in cell \[3\]: AssertionError: asked to fail"):
        run("tiny", "r1", {"02_read.fail": True, "n": 5}, results_dir=results, notebooks_dir=notebooks,
            progress=False, profiles=PROFILES)
    failed = json.loads((run_dir / "manifest.json").read_text())
    assert failed["status"] == "failed"
    assert [e["status"] for e in failed["notebooks"]] == ["ok", "failed"]
    assert (run_dir / "notebooks" / "01_make.ipynb").exists() and (run_dir / "total.txt").read_text() == "10"


_RUN_WITH_PACKAGE = """
import json, sys
from pathlib import Path
from wfutils.study.pipeline import run
profiles = {"tiny": {"common": {"n": 4}}}
manifest = run("tiny", "r", results_dir=Path(sys.argv[1]), notebooks_dir=Path(sys.argv[2]), progress=False,
               profiles=profiles, force=len(sys.argv) > 3)
print(json.dumps({"code_digest": manifest["code_digest"],
                  "skipped": [bool(e.get("skipped")) for e in manifest["notebooks"]]}))
"""


def _run_with_package(package_root: Path, results: Path, notebooks: Path, *extra: str) -> dict:
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(package_root)}
    out = subprocess.run([sys.executable, "-c", _RUN_WITH_PACKAGE, str(results), str(notebooks), *extra],
                         env=env, capture_output=True, text=True, check=True, cwd=package_root)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.integration
def test_changing_wfutils_source_reruns_the_notebooks(notebooks: Path, tmp_path: Path) -> None:
    import shutil

    import wfutils

    package_root = tmp_path / "copy"
    shutil.copytree(Path(wfutils.__file__).parent, package_root / "wfutils",
                    ignore=shutil.ignore_patterns("__pycache__"))
    results = tmp_path / "results"
    first = _run_with_package(package_root, results, notebooks)
    assert first["skipped"] == [False, False]
    assert _run_with_package(package_root, results, notebooks)["skipped"] == [True, True]

    scorer = package_root / "wfutils" / "flows" / "flowsim.py"
    scorer.write_text(scorer.read_text() + "\n# a change to the metric's module\n")
    changed = _run_with_package(package_root, results, notebooks)
    assert changed["code_digest"] != first["code_digest"]
    assert changed["skipped"] == [False, False]
    manifest = json.loads((results / "r" / "manifest.json").read_text())
    assert manifest["code_digest"] == changed["code_digest"]
    assert {e["code_digest"] for e in manifest["notebooks"]} == {changed["code_digest"]}

    assert _run_with_package(package_root, results, notebooks)["skipped"] == [True, True]
    assert _run_with_package(package_root, results, notebooks, "--force")["skipped"] == [False, False]


def _repeat_profile(**repeat) -> dict:
    return {"rep": {"notebooks": {"02_fit": {"steps": 3}, "02_fit@seed1": {"seed": 1, "system": "s1", **repeat}}}}


@pytest.fixture()
def fit_notebooks(tmp_path: Path) -> Path:
    folder = tmp_path / "fit-notebooks"
    folder.mkdir()
    _notebook(folder / "01_make.ipynb", 'run_dir = "results/dev"\nn = 3',
              "from pathlib import Path\nPath(run_dir).mkdir(parents=True, exist_ok=True)")
    _notebook(folder / "02_fit.ipynb", 'run_dir = "results/dev"\nseed = 0\nsteps = 2\nsystem = None',
              "from pathlib import Path\nPath(run_dir, f\"{system or 'default'}-seed{seed}-steps{steps}.txt\").write_text('x')")
    _notebook(folder / "03_score.ipynb", 'run_dir = "results/dev"',
              "from pathlib import Path\nPath(run_dir, 'scored.txt').write_text(' '.join(sorted(p.name for p in "
              "Path(run_dir).glob('*-seed*'))))")
    return folder


def test_a_repeat_section_runs_its_notebook_again_with_its_own_seed_and_system(fit_notebooks: Path,
                                                                             tmp_path: Path) -> None:
    results = tmp_path / "results"
    manifest = run("rep", "r", results_dir=results, notebooks_dir=fit_notebooks, progress=False,
                   profiles=_repeat_profile())
    run_dir = results / "r"
    assert [e["name"] for e in manifest["notebooks"]] == ["01_make", "02_fit", "02_fit@seed1", "03_score"]
    # the repeat inherits the notebook's parameters (steps 3) and sets its own; the next notebook sees both
    assert (run_dir / "scored.txt").read_text() == "default-seed0-steps3.txt s1-seed1-steps3.txt"
    assert (run_dir / "notebooks" / "02_fit@seed1.ipynb").is_file() and (run_dir / "notebooks" / "02_fit.ipynb").is_file()
    again = run("rep", "r", results_dir=results, notebooks_dir=fit_notebooks, progress=False, profiles=_repeat_profile())
    assert [e.get("skipped") for e in again["notebooks"]] == [True] * 4
    assert [s.name for s in plan("rep", run_dir, notebooks_dir=fit_notebooks, only=["02"],
                                 profiles=_repeat_profile())] == ["02_fit", "02_fit@seed1"]


def test_overrides_reach_a_repeat_unless_it_sets_the_parameter_itself(fit_notebooks: Path, tmp_path: Path) -> None:
    def params(overrides: dict) -> dict:
        steps = plan("rep", tmp_path / "r", overrides, notebooks_dir=fit_notebooks, profiles=_repeat_profile())
        return {s.name: (s.parameters.get("seed", 0), s.parameters.get("steps"), s.parameters.get("system"))
                for s in steps if s.notebook == "02_fit"}

    assert params({}) == {"02_fit": (0, 3, None), "02_fit@seed1": (1, 3, "s1")}
    assert params({"02_fit.steps": 9, "seed": 7}) == {"02_fit": (7, 9, None), "02_fit@seed1": (1, 9, "s1")}
    assert params({"02_fit@seed1.seed": 2}) == {"02_fit": (0, 3, None), "02_fit@seed1": (2, 3, "s1")}
    with pytest.raises(PipelineError, match="unknown notebook '02_fit@seed2'"):
        params({"02_fit@seed2.seed": 2})


@pytest.mark.parametrize(("sections", "message"), [
    ({"02_fit@seed1": {"seed": 1}}, "section '02_fit@seed1' must set `system` to a name of its own"),
    ({"02_fit@seed 1": {"seed": 1, "system": "s"}}, "needs a label of letters, digits"),
    ({"01_make@again": {"n": 1, "system": "s"}}, "repeats 01_make, which declares no `system` parameter"),
    ({"02_fit@a": {"system": "s"}, "02_fit@b": {"system": "s"}}, "02_fit@a and 02_fit@b both write system 's'"),
    ({"02_fit@a": {"system": "s", "colour": 1}}, "notebook 02_fit@a has no parameter 'colour'"),
    ({"04_x@a": {"system": "s"}}, r"names unknown notebook\(s\): 04_x@a"),
])
def test_bad_repeat_sections_are_refused_before_any_work(fit_notebooks: Path, tmp_path: Path, sections: dict,
                                                          message: str) -> None:
    with pytest.raises(PipelineError, match=message):
        plan("bad", tmp_path / "r", notebooks_dir=fit_notebooks, profiles={"bad": {"notebooks": sections}})


@pytest.mark.parametrize(("sections", "clash"), [
    ({"02_slm_finetuning": {"base_model": "smollm2-135m"},
      "02_slm_finetuning@seed1": {"seed": 1, "system": "slm-smollm2-135m-lora"}}, "slm-smollm2-135m-lora"),
    ({"02_slm_finetuning": {"base_model": "smollm2-135m", "constrained": True},
      "02_slm_finetuning@seed1": {"seed": 1, "system": "slm-smollm2-135m-lora-constrained"}},
     "slm-smollm2-135m-lora-constrained"),
])
def test_a_repeat_naming_the_notebooks_default_system_is_refused(tmp_path: Path, sections: dict, clash: str) -> None:
    for only in (None, ["02_slm_finetuning@seed1"]):  # a repeat run alone would overwrite the earlier run's system
        with pytest.raises(PipelineError, match=f"02_slm_finetuning and 02_slm_finetuning@seed1 both write system "
                                                f"'{clash}'"):
            plan("bad", tmp_path / "r", profiles={"bad": {"notebooks": sections}}, only=only)
    sections["02_slm_finetuning@seed1"]["system"] = clash + "-seed1"
    assert [s.name for s in plan("ok", tmp_path / "r", profiles={"ok": {"notebooks": sections}}, only=["02"])] == [
        "02_slm_finetuning", "02_slm_finetuning@seed1"]


def test_force_reaches_notebooks_that_declare_it_and_leaves_the_fingerprint_alone(tmp_path: Path) -> None:
    folder = tmp_path / "nbs"
    folder.mkdir()
    _notebook(folder / "01_make.ipynb", 'run_dir = "results/dev"\nforce = False',
              "from pathlib import Path\nPath(run_dir).mkdir(parents=True, exist_ok=True)\n"
              "Path(run_dir, 'forced.txt').write_text(str(force))")
    results = tmp_path / "results"
    profiles = {"tiny": {}}
    run("tiny", "r", results_dir=results, notebooks_dir=folder, progress=False, profiles=profiles)
    assert (results / "r" / "forced.txt").read_text() == "False"
    forced = run("tiny", "r", results_dir=results, notebooks_dir=folder, progress=False, profiles=profiles, force=True)
    assert (results / "r" / "forced.txt").read_text() == "True" and not forced["notebooks"][0].get("skipped")
    again = run("tiny", "r", results_dir=results, notebooks_dir=folder, progress=False, profiles=profiles)
    assert again["notebooks"][0].get("skipped") is True


def test_book_refuses_a_run_computed_by_other_code(tmp_path: Path) -> None:
    from wfutils.provenance import code_digest
    from wfutils.study.book import BookError, build, stale_notebooks

    run_dir = tmp_path / "results" / "old"
    run_dir.mkdir(parents=True)
    manifest = {"profile": "smoke", "code_digest": "0000000000000000",
                "notebooks": [{"name": "01_data_exploration", "code_digest": code_digest()},
                              {"name": "04_evaluation", "code_digest": "0000000000000000"}]}
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    assert stale_notebooks(run_dir) == ["04_evaluation"]
    with pytest.raises(BookError, match=r"stale notebooks: 04_evaluation\. Rerun them: .*--profile smoke --run old"):
        build(run_dir)


def _sleeping_notebooks(folder: Path) -> Path:
    folder.mkdir()
    _notebook(folder / "01_sleep.ipynb", 'run_dir = "results/dev"',
              "import os, time\nfrom pathlib import Path\nPath(run_dir).mkdir(parents=True, exist_ok=True)\n"
              "Path(run_dir, 'kernel.pid').write_text(str(os.getpid()))\ntime.sleep(120)")
    return folder


def _pipeline_command(results: Path, notebooks: Path) -> list[str]:
    """``python -m wfutils.pipeline --profile tiny --run r`` as a process of its own, on these folders."""
    import sys

    script = ("import sys\nfrom pathlib import Path\nfrom wfutils.study import pipeline\n"
              "pipeline.RESULTS_DIR = Path(sys.argv[1])\npipeline.NOTEBOOKS_DIR = Path(sys.argv[2])\n"
              "from unittest import mock\n"
              "with mock.patch.object(pipeline, 'load_profiles', return_value={'tiny': {}}):\n"
              "    sys.exit(pipeline.main(['--profile', 'tiny', '--run', 'r']))\n")
    return [sys.executable, "-c", script, str(results), str(notebooks)]


def _start_pipeline(command: list[str]):
    """Start the pipeline process as a terminal would: with Ctrl-C's default disposition. A shell that starts a
    background job without job control (``cmd &`` in a script, ``nohup``) makes the job ignore SIGINT, and the
    ignoring is inherited down to this process; the interrupt tests would then wait for a signal never taken."""
    import signal
    import subprocess

    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # noqa: PLW1509


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
def test_interrupt_stops_the_kernel_marks_the_manifest_and_says_how_to_resume(tmp_path: Path, signal_name: str) -> None:
    import os
    import signal
    import time

    notebooks = _sleeping_notebooks(tmp_path / "nbs")
    results = tmp_path / "results"
    proc = _start_pipeline(_pipeline_command(results, notebooks))
    pid_file = results / "r" / "kernel.pid"
    deadline = time.monotonic() + 90
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert pid_file.exists(), proc.stderr.read() if proc.poll() is not None else "kernel never started"
    kernel_pid = int(pid_file.read_text())
    proc.send_signal(getattr(signal, signal_name))
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == (130 if signal_name == "SIGINT" else 143)
    assert "Traceback" not in stderr
    assert f"interrupted ({signal_name}) during 01_sleep" in stderr and "Resume with: python -m wfutils.pipeline" in stderr
    manifest = json.loads((results / "r" / "manifest.json").read_text())
    assert manifest["status"] == "interrupted" and manifest["notebooks"][-1]["status"] == "interrupted"
    assert json.loads((results / "r" / "pipeline.lock.json").read_text())["status"] == "interrupted"  # ended cleanly
    for _ in range(50):  # the kernel is shut down, not orphaned
        try:
            os.kill(kernel_pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        os.kill(kernel_pid, signal.SIGKILL)
        pytest.fail("the notebook's kernel outlived the interrupted pipeline")


def test_parameter_values_are_checked_against_their_declarations_before_any_work(tmp_path: Path) -> None:
    bad = ["seed=abc", "04_evaluation.n_bootstrap=abc", "04_evaluation.on_incomplete=everything",
           "05_error_analysis.systems=a", "01_data_exploration.split_sizes=[0.1]", "03_llm_prompting.k=2.5",
           "02_slm_finetuning.bf16=1"]
    with pytest.raises(PipelineError) as error:
        run("smoke", "r", parse_overrides(bad), results_dir=tmp_path / "results", progress=False)
    message = str(error.value)
    assert message.startswith("bad parameter value(s), nothing was run:\n")
    assert "notebook 01_data_exploration: parameter seed must be int, got 'abc' (str)" in message
    assert "notebook 05_error_analysis: parameter seed must be int, got 'abc' (str)" in message
    assert "notebook 04_evaluation: parameter n_bootstrap must be int, got 'abc' (str)" in message
    assert ("notebook 04_evaluation: parameter on_incomplete must be one of 'error', 'exclude', 'intersect', "
            "'keep', got 'everything' (str)") in message
    assert "notebook 05_error_analysis: parameter systems must be a list of str or None, got 'a' (str)" in message
    assert "parameter split_sizes must be a mapping of float or None, got [0.1] (list)" in message
    assert "notebook 03_llm_prompting: parameter k must be int, got 2.5 (float)" in message
    assert "notebook 02_slm_finetuning: parameter bf16 must be bool, got 1 (int)" in message
    assert not (tmp_path / "results").exists()  # nothing written
    ok = plan("smoke", tmp_path / "r", parse_overrides(["04_evaluation.n_bootstrap=50", "04_evaluation.on_incomplete=keep"]))
    assert next(s for s in ok if s.name == "04_evaluation").parameters["n_bootstrap"] == 50
    with pytest.raises(PipelineError, match="notebook 04_evaluation: EvaluationConfig: n_bootstrap must be >= 1, got 0"):
        plan("smoke", tmp_path / "r", parse_overrides(["04_evaluation.n_bootstrap=0"]))  # the config's own checks too
    with pytest.raises(PipelineError) as error:  # an unknown engine: named with the engines there are, before any work
        plan("smoke", tmp_path / "r", parse_overrides(["03_llm_prompting.local_engine=vllm"]))
    assert "notebook 03_llm_prompting: PromptConfig: local_engine 'vllm'" in str(error.value)
    assert "'llamacpp', 'transformers'" in str(error.value)


BAD_VALUES = {"01_data_exploration": ("n_train", "many", "parameter n_train must be int, got 'many' (str)"),
              "02_slm_finetuning": ("max_steps", "abc", "parameter max_steps must be int or None, got 'abc' (str)"),
              "03_llm_prompting": ("k", "abc", "parameter k must be int, got 'abc' (str)"),
              "04_evaluation": ("n_bootstrap", "abc", "parameter n_bootstrap must be int, got 'abc' (str)"),
              "05_error_analysis": ("n_worst", "abc", "parameter n_worst must be int, got 'abc' (str)")}


@pytest.mark.parametrize("notebook", sorted(BAD_VALUES))
def test_a_notebook_run_directly_with_papermill_stops_at_its_check_cell_with_the_pipelines_message(
        notebook: str, tmp_path: Path) -> None:
    """``papermill notebooks/04_evaluation.ipynb out.ipynb -p run_dir ... -p n_bootstrap abc``: refused right after the
    parameters, not deep in a later cell; the message is the one the pipeline gives for the same value."""
    import papermill

    from wfutils.study.pipeline import NOTEBOOKS_DIR, REPO_ROOT

    name, value, expected = BAD_VALUES[notebook]
    out = tmp_path / "out.ipynb"
    with pytest.raises(papermill.PapermillExecutionError) as error:
        papermill.execute_notebook(str(NOTEBOOKS_DIR / f"{notebook}.ipynb"), str(out), kernel_name="python3",
                                   parameters={"run_dir": str(tmp_path / "run"), name: value}, cwd=str(REPO_ROOT),
                                   progress_bar=False)
    assert error.value.ename == "ParameterError" and f"notebook {notebook}: {expected}" in error.value.evalue
    with pytest.raises(PipelineError) as refused:
        plan("smoke", tmp_path / "run", {f"{notebook}.{name}": value})
    # the same message, word for word (the pipeline's goes on with the repeats the override reaches too)
    assert str(refused.value).startswith(error.value.evalue)
    code = [cell for cell in nbformat.read(str(out), as_version=4).cells if cell.cell_type == "code"]
    failed = [i for i, cell in enumerate(code) if any(o.get("output_type") == "error" for o in cell.outputs)]
    assert len(failed) == 1, "exactly one cell fails"
    tags = [cell.metadata.get("tags", []) for cell in code]
    assert "parameters" in tags[failed[0] - 2] and "injected-parameters" in tags[failed[0] - 1]
    assert "check_parameters(" in code[failed[0]].source
    assert all(cell.execution_count is None for cell in code[failed[0] + 1:])  # nothing after it ran
    assert not (tmp_path / "run").exists()


def test_shipped_notebooks_reject_a_bad_seed(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="notebook 01_data_exploration: parameter seed must be int, got 'abc'"):
        plan("smoke", tmp_path / "r", parse_overrides(["seed=abc"]))
    with pytest.raises(PipelineError, match="parameter max_steps must be int or None, got 'abc'"):
        plan("smoke", tmp_path / "r", parse_overrides(["02_slm_finetuning.max_steps=abc"]))


def test_unusable_run_folders_and_missing_data_are_reported_before_work(notebooks: Path, tmp_path: Path,
                                                                        monkeypatch) -> None:
    from wfutils.study.pipeline import check_inputs, resolve_run_dir

    results = tmp_path / "results"
    results.mkdir()
    (results / "afile").write_text("not a folder")
    with pytest.raises(PipelineError, match="afile exists and is not a folder"):
        run("tiny", "afile", results_dir=results, notebooks_dir=notebooks, progress=False, profiles=PROFILES)
    (results / "r2").mkdir()
    (results / "r2" / "notebooks").write_text("in the way")
    with pytest.raises(PipelineError, match=r"r2/notebooks is a file"):
        run("tiny", "r2", results_dir=results, notebooks_dir=notebooks, progress=False, profiles=PROFILES)
    assert not (results / "r2" / "manifest.json").exists()
    elsewhere = tmp_path / "elsewhere" / "mine"
    assert resolve_run_dir(str(elsewhere), "tiny", results) == elsewhere.resolve()
    manifest = run("tiny", str(elsewhere), results_dir=results, notebooks_dir=notebooks, progress=False, profiles=PROFILES)
    assert manifest["run_dir"] == str(elsewhere.resolve()) and (elsewhere / "total.txt").exists()

    (elsewhere / "manifest.json").write_text('{"profile": "tiny", "notebooks": [')  # truncated
    again = run("tiny", str(elsewhere), results_dir=results, notebooks_dir=notebooks, progress=False, profiles=PROFILES)
    assert again["status"] == "ok" and [e.get("skipped", False) for e in again["notebooks"]] == [False, False]

    monkeypatch.setenv("WFBOOK_SHARED_DATA", str(tmp_path / "nonexistent"))
    steps = plan("smoke", tmp_path / "s")
    with pytest.raises(PipelineError, match=r"corpus 'n8n' needs .*nonexistent/awesome-n8n-templates"):
        check_inputs(steps)


@pytest.mark.integration
def test_terminal_shows_live_cell_and_progress_lines_and_executed_copy_keeps_no_bars(tmp_path: Path) -> None:
    import subprocess
    import sys

    import nbformat

    folder = tmp_path / "nbs"
    folder.mkdir()
    _notebook(folder / "01_train.ipynb", 'run_dir = "results/dev"',
              "import sys, time\nfrom tqdm.auto import tqdm\n"
              "for step in tqdm(range(4), desc='train', mininterval=0):\n    time.sleep(0.6)\n"
              "print('a real message', file=sys.stderr)\nprint('done')")
    script = ("import sys\nfrom pathlib import Path\nfrom unittest import mock\nfrom wfutils.study import pipeline\n"
              "pipeline.RESULTS_DIR = Path(sys.argv[1])\npipeline.NOTEBOOKS_DIR = Path(sys.argv[2])\n"
              "with mock.patch.object(pipeline, 'load_profiles', return_value={'tiny': {}}):\n"
              "    sys.exit(pipeline.main(['--profile', 'tiny', '--run', 'r']))\n")
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "results"), str(folder)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "01_train: cell" in out.stderr and "/3" in out.stderr, out.stderr  # cell i/N of the running notebook
    assert "train:" in out.stderr and "4/4" in out.stderr  # the notebook's own progress line
    assert "without encryption" not in out.stderr  # the kernel's warning stays in its log
    executed = nbformat.read(str(tmp_path / "results" / "r" / "notebooks" / "01_train.ipynb"), as_version=4)
    streams = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "stream"]
    text = "".join(o.text for o in streams)
    assert "a real message" in text and "done" in text and "train:" not in text and "%|" not in text
    log = (tmp_path / "results" / "r" / "notebooks" / "01_train.kernel.log").read_text()
    assert "without encryption" in log


def test_credentials_in_a_base_url_are_refused_before_anything_is_written(tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(PipelineError, match="parameter base_url refused") as error:
        run("smoke", "creds", parse_overrides(["03_llm_prompting.base_url=http://alice:s3cret-pass@127.0.0.1:9/v1"]),
            results_dir=tmp_path, progress=False)
    assert "s3cret-pass" not in str(error.value)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://alice:s3cret-pass@127.0.0.1:9/v1")
    with pytest.raises(PipelineError, match="OPENAI_BASE_URL refused") as error:
        run("smoke", "creds", results_dir=tmp_path, progress=False)
    assert "s3cret-pass" not in str(error.value)
    assert not (tmp_path / "creds").exists()


def test_a_bad_train_corpus_is_refused_before_any_notebook_runs(tmp_path: Path) -> None:
    """train_corpus naming no corpus of the run, one without train lines, or values that differ: errors, nothing run."""
    from wfutils.study.pipeline import check_inputs

    only_test = tmp_path / "only_test.jsonl"
    flow = {"trigger": {"type": "run_once"}, "components": []}
    only_test.write_text("".join(json.dumps({"request": f"r{i}", "flow": flow, "split": "test"}) + "\n"
                                 for i in range(5)), encoding="utf-8")
    cases = [
        (["train_corpus=pairs"], "train_corpus 'pairs' names no corpus of this run (it has: synthetic, n8n, logic_apps)"),
        ([f"corpora=[{only_test}]", "train_corpus=only_test"], "has a `split` column but no line with split \"train\""),
        (["02_slm_finetuning.train_corpus=n8n"], "train_corpus differs between notebooks"),
    ]
    for overrides, expected in cases:
        steps = plan("smoke", tmp_path / "r", parse_overrides(overrides))
        with pytest.raises(PipelineError) as error:
            check_inputs(steps)
        assert expected in str(error.value), str(error.value)
    check_inputs(plan("smoke", tmp_path / "r", parse_overrides(["train_corpus=n8n"])))  # a converter corpus: split by seed
    with pytest.raises(PipelineError, match="names no corpus"):
        run("smoke", "bad", parse_overrides(["train_corpus=pairs"]), results_dir=tmp_path / "results", progress=False)
    assert not (tmp_path / "results" / "bad" / "notebooks").exists()


def test_resources_of_every_notebook_are_checked_before_the_first_one_runs(tmp_path: Path, monkeypatch) -> None:
    """The paper profile without a key, a model not in the cache and bf16 without a GPU: all named, nothing run."""
    import torch

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    overrides = parse_overrides(["02_slm_finetuning.base_model=wfbook-tests/no-such-model"])
    with pytest.raises(PipelineError) as error:
        run("paper", "paper", overrides, results_dir=tmp_path / "results", progress=False)
    message = str(error.value)
    assert message.startswith("missing resources, nothing was run:\n")
    assert ("notebook 03_llm_prompting: parameter base_url: the remote endpoint https://api.openai.com/v1 needs an API "
            "key and $OPENAI_API_KEY is not set") in message
    assert ("notebook 02_slm_finetuning: parameter base_model: model id 'wfbook-tests/no-such-model' is not in the "
            "local Hugging Face cache") in message
    assert "registry names: qwen2.5-coder-0.5b, qwen2.5-coder-1.5b, smollm2-135m" in message
    assert ("notebook 02_slm_finetuning: parameter bf16: bf16=true needs a CUDA GPU" in message) != torch.cuda.is_available()
    assert not (tmp_path / "results").exists()  # notebook 01 never ran

    with pytest.raises(PipelineError) as error:  # --only 03: the missing key before the arm starts
        run("paper", "paper", results_dir=tmp_path / "results", progress=False, only=["03"])
    assert "needs an API key" in str(error.value) and "02_slm_finetuning" not in str(error.value)

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    steps = plan("paper", tmp_path / "r", only=["03"])
    check_resources(steps)  # a key is there: nothing else to check for a remote endpoint
    monkeypatch.delenv("OPENAI_API_KEY")
    check_resources(plan("paper", tmp_path / "r", parse_overrides(["03_llm_prompting.base_url=http://127.0.0.1:9/v1"]),
                         only=["03"]))  # a server on this machine needs no key
    with pytest.raises(PipelineError, match=r"parameter models: the endpoint http://127.0.0.1:9/v1 needs model ids"):
        check_resources(plan("smoke", tmp_path / "r", parse_overrides(["03_llm_prompting.base_url=http://127.0.0.1:9/v1"]),
                             only=["03"]))


def test_unknown_base_model_and_unfetched_weights_are_named_with_the_fix(tmp_path: Path, monkeypatch) -> None:
    from wfutils.engines.llamacpp import xllamacpp_version

    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(PipelineError) as error:
        check_resources(plan("smoke", tmp_path / "r", parse_overrides(["02_slm_finetuning.base_model=gpt-17-tiny"])))
    assert "notebook 02_slm_finetuning: parameter base_model: unknown model 'gpt-17-tiny'" in str(error.value)
    assert "weights registry (qwen2.5-coder-0.5b, qwen2.5-coder-1.5b, smollm2-135m)" in str(error.value)
    check_resources(plan("smoke", tmp_path / "r"))  # the smoke profile needs only what the environment ships

    monkeypatch.setenv("WFBOOK_CACHE", str(tmp_path / "empty-cache"))  # registry weights not fetched here
    with pytest.raises(PipelineError) as error:
        check_resources(plan("default", tmp_path / "r", only=["03"]))
    expected = ("weights qwen2.5-coder-0.5b are not fetched" if xllamacpp_version() is not None
                else "needs the xllamacpp wheel")
    assert "notebook 03_llm_prompting: parameter local_model: " in str(error.value)
    assert expected in str(error.value) and "make models" in str(error.value)
    with pytest.raises(PipelineError) as error:  # a registry name as base_model: its GGUF must be there first
        check_resources(plan("smoke", tmp_path / "r",
                             parse_overrides(["02_slm_finetuning.base_model=qwen2.5-coder-0.5b"]), only=["02"]))
    assert ("notebook 02_slm_finetuning: parameter base_model: weights qwen2.5-coder-0.5b are not fetched"
            in str(error.value)) and "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32" in str(error.value)


def test_a_prompted_arm_in_which_no_system_could_run_stops_with_the_reason(tmp_path: Path, monkeypatch) -> None:
    """The paper's endpoint without a key: the arm reports each model's missing key; then the run stops there
    with those reasons instead of failing later on an empty table."""
    from wfutils.data.store import build_all
    from wfutils.llm.arm import run_arm
    from wfutils.llm.config import PromptConfig
    from wfutils.study.preflight import NoPromptedSystemError, require_prompted_systems

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    run_dir = tmp_path / "run"
    build_all(run_dir, n_train=20, n_test=2, n_ood=1, corpora=())
    config = PromptConfig(base_url="https://api.openai.com/v1", models=["gpt-4o", "gpt-4o-mini"],
                          strategies=["zero_shot"], eval_splits=["synthetic/test"], max_examples=1)
    summary = run_arm(run_dir, config, progress=False)
    assert summary["systems"] == {}
    with pytest.raises(NoPromptedSystemError) as error:
        require_prompted_systems(summary)
    lines = str(error.value).splitlines()
    assert lines[0] == "no prompted system could run, so there is nothing to evaluate:"
    assert [line.split(":")[0].strip() for line in lines[1:]] == ["gpt-4o", "gpt-4o-mini"]
    assert all("OPENAI_API_KEY" in line for line in lines[1:])


_HOLD_LOCK = """
import sys, time
from pathlib import Path
from wfutils.study.runlock import lock_run_folder
with lock_run_folder(Path(sys.argv[1]), "python -m wfutils.pipeline --profile tiny --run r") as held:
    held.update(notebook="02_read")
    print("holding", flush=True)
    time.sleep(120)
"""


def test_one_pipeline_per_run_folder_and_a_killed_one_is_recognised(notebooks: Path, tmp_path: Path, capsys) -> None:
    """A second pipeline on a folder in use stops naming the holder; after the holder is killed with SIGKILL
    the next run takes over and says how the previous one ended."""
    import os
    import signal
    import socket
    import subprocess
    import sys

    results = tmp_path / "results"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(results / "r")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(PipelineError) as error:
            run("tiny", "r", results_dir=results, notebooks_dir=notebooks, progress=False, profiles=PROFILES)
        message = str(error.value)
        assert f"is in use by another pipeline (pid {holder.pid} on {socket.gethostname()}, started " in message
        assert "command: python -m wfutils.pipeline --profile tiny --run r" in message
        assert not (results / "r" / "manifest.json").exists() and not (results / "r" / "numbers.txt").exists()
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)

    manifest = run("tiny", "r", results_dir=results, notebooks_dir=notebooks, progress=False, profiles=PROFILES,
                   command="pytest second run")
    assert manifest["status"] == "ok" and (results / "r" / "total.txt").read_text() == "6"
    note = capsys.readouterr().err
    assert "the previous pipeline on this folder did not finish cleanly" in note
    assert f"pid {holder.pid} on {socket.gethostname()}" in note and "while running notebook 02_read" in note
    assert "that process no longer exists" in note
    assert manifest["previous_run"] in note
    record = json.loads((results / "r" / "pipeline.lock.json").read_text())
    assert record["status"] == "ok" and record["pid"] == os.getpid() and record["command"] == "pytest second run"

    again = run("tiny", "r", results_dir=results, notebooks_dir=notebooks, progress=False, profiles=PROFILES)
    assert "previous_run" not in again and "did not finish cleanly" not in capsys.readouterr().err


def test_a_lock_record_from_another_host_is_reported_as_such(notebooks: Path, tmp_path: Path, capsys) -> None:
    run_dir = tmp_path / "results" / "r"
    run_dir.mkdir(parents=True)
    (run_dir / "pipeline.lock.json").write_text(json.dumps(
        {"pid": 4242, "host": "gpu-node-7", "started": "2026-01-01T00:00:00+00:00", "command": "python -m wfutils.pipeline",
         "status": "running", "notebook": None}))
    manifest = run("tiny", "r", results_dir=tmp_path / "results", notebooks_dir=notebooks, progress=False,
                   profiles=PROFILES)
    assert "pid 4242 on gpu-node-7" in manifest["previous_run"]
    assert "before its first notebook" in manifest["previous_run"]
    assert "another host (gpu-node-7), whose processes cannot be checked from here" in capsys.readouterr().err


def test_a_resumed_notebook_keeps_the_time_of_its_interrupted_part(tmp_path: Path) -> None:
    import signal
    import subprocess
    import time

    notebooks = tmp_path / "nbs"
    notebooks.mkdir()
    _notebook(notebooks / "01_sleep.ipynb", 'run_dir = "results/dev"',
              "import os, time\nfrom pathlib import Path\nPath(run_dir).mkdir(parents=True, exist_ok=True)\n"
              "if not Path(run_dir, 'kernel.pid').exists():\n"
              "    Path(run_dir, 'kernel.pid').write_text(str(os.getpid()))\n    time.sleep(120)")
    results = tmp_path / "results"
    command = _pipeline_command(results, notebooks)
    proc = _start_pipeline(command)
    deadline = time.monotonic() + 90
    while not (results / "r" / "kernel.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    first = json.loads((results / "r" / "manifest.json").read_text())["notebooks"][-1]
    assert first["status"] == "interrupted" and first["duration_s"] >= 2
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    manifest = json.loads((results / "r" / "manifest.json").read_text())
    entry = manifest["notebooks"][-1]
    assert entry["status"] == "ok" and [p["duration_s"] for p in entry["earlier_parts"]] == [first["duration_s"]]
    assert entry["total_s"] == pytest.approx(entry["duration_s"] + first["duration_s"], abs=0.11)
    assert manifest["duration_s"] == pytest.approx(entry["total_s"], abs=0.11)  # each part once
    assert "in 2 parts" in resumed.stdout
    # A rerun that skips the finished notebook keeps its parts.
    again = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert json.loads((results / "r" / "manifest.json").read_text())["notebooks"][-1]["total_s"] == entry["total_s"]
    assert again.returncode == 0
