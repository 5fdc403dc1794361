"""The papermill pipeline on tiny real notebooks: plan errors, manifest, resume, failures."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from wfutils.study.pipeline import PipelineError, load_profiles, parse_overrides, plan, run


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
