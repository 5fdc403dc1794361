"""The committed reference run: what it keeps of a real run, what it refuses before rendering, that it renders
with its age shown, that its glued headline is the one its own scores give, and the workflow that publishes it.

The run tested is a real one: the committed ``results/reference`` when it exists, else a finished run named
by ``$WFBOOK_TEST_RUN`` (for example the ``results/smoke`` of ``make smoke``), else ``results/smoke``. It is
copied into a temporary folder before anything is changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from wfutils.evaluation import selection
from wfutils.provenance import code_digest
from wfutils.study import book
from wfutils.study.reference import (ADAPT_FOLDER, RECORD_FILE, REFERENCE_DIR, ReferenceRunError, check_headline,
                                     copy_reference, excluded_kind, executed_parameters, glued_values, kept_kind,
                                     select_files, validate_reference)

ROOT = Path(__file__).resolve().parent.parent
STALE_DIGEST = "0" * 16


def _source() -> Path | None:
    if (REFERENCE_DIR / RECORD_FILE).is_file():
        return REFERENCE_DIR
    for candidate in (os.environ.get("WFBOOK_TEST_RUN"), ROOT / "results" / "smoke"):
        if candidate and (Path(candidate) / "manifest.json").is_file() \
                and (Path(candidate) / "notebooks" / "04_evaluation.ipynb").is_file():
            return Path(candidate)
    return None


SOURCE = _source()
needs_run = pytest.mark.skipif(SOURCE is None, reason="no real run to test on: no committed results/reference, "
                               "no $WFBOOK_TEST_RUN, no results/smoke (make smoke writes one)")
FROM_RAW_RUN = SOURCE is not None and not (SOURCE / RECORD_FILE).is_file()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def raw_run(tmp_path_factory) -> Path:
    """A copy of the real run (the committed reference itself when that is the source)."""
    target = tmp_path_factory.mktemp("run") / SOURCE.name
    shutil.copytree(SOURCE, target, symlinks=True)
    return target


@pytest.fixture()
def reference(raw_run: Path, tmp_path: Path) -> Path:
    """A reference folder of the real run, fresh for each test (a raw run is its own worked example too)."""
    target = tmp_path / "reference"
    if FROM_RAW_RUN:
        copy_reference(raw_run, target, adapt_run=raw_run, study_seconds=123.0)
    else:
        shutil.copytree(raw_run, target)
    return target


def _record(reference: Path) -> dict:
    return json.loads((reference / RECORD_FILE).read_text(encoding="utf-8"))


def _rewrite(reference: Path, relative: str, change) -> None:
    """Change a kept file and record its new hash, as a copy of a run that had it so would."""
    path = reference / relative
    path.write_text(change(path.read_text(encoding="utf-8")), encoding="utf-8")
    record = _record(reference)
    for entry in record["kept"]:
        if entry["path"] == relative:
            entry["sha256"], entry["size"] = _sha256(path), path.stat().st_size
    (reference / RECORD_FILE).write_text(json.dumps(record), encoding="utf-8")


def _make_stale(folder: Path) -> None:
    def change(text: str) -> str:
        manifest = json.loads(text)
        manifest["code_digest"] = STALE_DIGEST
        for entry in manifest["notebooks"]:
            entry["code_digest"] = STALE_DIGEST
        return json.dumps(manifest)
    if (folder / RECORD_FILE).is_file():
        _rewrite(folder, "manifest.json", change)
    else:
        (folder / "manifest.json").write_text(change((folder / "manifest.json").read_text()), encoding="utf-8")


def _pages_state() -> tuple[bool, int]:
    pages = book.RUN_PAGES_DIR
    return pages.exists(), pages.stat().st_mtime_ns if pages.exists() else 0


# --------------------------------------------------------------------------- (a) what is kept


def test_kept_and_excluded_kinds_by_path() -> None:
    for kept in ("manifest.json", "notebooks/04_evaluation.ipynb", "predictions/a.jsonl", "predictions/a.meta.json",
                 "eval/scores.parquet", "eval/figures/x.png", "data/n8n/info.json", "slm/training_record.json",
                 "predictions/a.adapter_check.json", "slm/curve/step-12/adapter_config.json",
                 "slm/curve/step-12/trainer_state.json", "slm/slm-x-seed1/training_record.json",
                 "slm/slm-x-seed1/generation_summary.json", "slm/slm-x-seed1/loss_curve.png"):
        assert kept_kind(kept) is not None, kept
    for path, why in (("slm/adapter/adapter_model.safetensors", "adapter"),
                      ("slm/curve/step-12/adapter_model.safetensors", "weights"), ("slm/checkpoints/step-4/x.json",
                      "checkpoint"), ("llm/cache/ab/abc.json", "cache"), ("notebooks/04_evaluation.kernel.log", "log"),
                      ("eval/model.safetensors", "weights"), ("pipeline.lock", "run lock"),
                      ("eval/examples.parquet", "corpus rows"),
                      ("slm/slm-x-seed1/adapter/adapter_model.safetensors", "adapter"),
                      ("slm/slm-x-seed1/checkpoints/checkpoint-4/optimizer.pt", "checkpoint")):
        assert kept_kind(path) is None and excluded_kind(path) == why, path
    assert kept_kind("data/n8n/test.jsonl") is None and kept_kind("eval/sub/deeper.csv") is None
    assert kept_kind("slm/adapter/adapter_config.json") is None and kept_kind("slm/adapter/tokenizer.json") is None


def _runs_with_repeats() -> list[Path]:
    """The real runs at hand whose profile trained notebook 02 more than once (`make smoke` writes one; the
    committed `large` run in results/reference-large has one)."""
    candidates = [os.environ.get("WFBOOK_TEST_RUN"), ROOT / "results" / "smoke", REFERENCE_DIR,
                  REFERENCE_DIR.parent / "reference-large"]
    found = []
    for candidate in candidates:
        manifest = Path(candidate) / "manifest.json" if candidate else None
        if manifest is not None and manifest.is_file() and any(
                e["name"].startswith("02_slm_finetuning@") for e in json.loads(manifest.read_text())["notebooks"]):
            found.append(Path(candidate))
    return found


@pytest.mark.skipif(not _runs_with_repeats(), reason="no real run with a repeated notebook 02 (make smoke writes one)")
def test_a_repeated_training_is_kept_and_read_as_a_seed_spread() -> None:
    """A profile section such as 02_slm_finetuning@seed1 (the smoke profile has one): its training record lies
    under its system's name (kept by a reference: see the kinds above), and the decision chapter found two seeds
    of one recipe."""
    run = _runs_with_repeats()[0]
    manifest = json.loads((run / "manifest.json").read_text())
    repeats = [e for e in manifest["notebooks"] if e["name"].startswith("02_slm_finetuning@")]
    for entry in repeats:
        system = entry["parameters"]["system"]
        record = json.loads((run / "slm" / system / "training_record.json").read_text())
        assert record["config"]["seed"] == entry["parameters"]["seed"]
        assert (run / "predictions" / f"{system}.jsonl").is_file()
        assert (run / "notebooks" / f"{entry['name']}.ipynb").is_file()
    seeds = [row.split(", ") for row in pd.read_csv(run / "eval" / "decision_seeds.csv", dtype=str)["seeds"]]
    assert all(any(str(entry["parameters"]["seed"]) in row for row in seeds) for entry in repeats)
    # The sidecars say which systems are seeds of one recipe; the headline takes the first seed, never a rival seed.
    trained = {m["system"]: m for m in (json.loads(p.read_text()) for p in (run / "predictions").glob("*.meta.json"))
               if m["arm"] == "fine-tuned" and not m.get("learning_curve")}
    setup = selection.comparison_setup(pd.read_parquet(run / "eval" / "scores.parquet"),
                                       pd.read_parquet(run / "eval" / "selection_scores.parquet"))
    for entry in repeats:
        mine = trained[entry["parameters"]["system"]]
        assert mine.get("training_seed") == entry["parameters"]["seed"] and mine.get("recipe"), \
            f"{run}: the sidecar of {mine['system']} lacks its recipe or seed (a run older than them: run it again)"
        first = min((m for m in trained.values() if all(m.get(k) == mine.get(k) for k in selection.SAME_TRAINING)),
                    key=lambda m: (m["training_seed"], m["system"]))
        assert first["training_seed"] < mine["training_seed"]
        assert setup.finetuned == first["system"] and mine["system"] in setup.comparison.selection.seed_repeats


@needs_run
def test_reference_keeps_what_the_book_needs_and_hashes_the_rest(raw_run: Path, reference: Path) -> None:
    record = _record(reference)
    kept = {entry["path"]: entry for entry in record["kept"]}
    on_disk = {p.relative_to(reference).as_posix() for p in reference.rglob("*") if p.is_file()}
    assert on_disk == set(kept) | {RECORD_FILE}
    for relative, entry in kept.items():
        path = reference / relative
        assert entry["sha256"] == _sha256(path) and entry["size"] == path.stat().st_size
        assert excluded_kind(relative.removeprefix((record.get("adapt_run") or "\0") + "/")) is None, relative
    main = [p for p in kept if not (record.get("adapt_run") and p.startswith(record["adapt_run"] + "/"))]
    assert "manifest.json" in main and "eval/scores.parquet" in main
    notebooks = {entry["name"] for entry in json.loads((reference / "manifest.json").read_text())["notebooks"]}
    assert {f"notebooks/{name}.ipynb" for name in notebooks} <= set(main)
    predictions = [p for p in main if p.startswith("predictions/") and p.endswith(".jsonl")]
    assert predictions and all(p.removesuffix(".jsonl") + ".meta.json" in kept for p in predictions)
    assert any(p.startswith("eval/figures/") for p in main) and any(p.startswith("data/") for p in main)
    excluded = {entry["path"]: entry for entry in record["excluded"]}
    assert not set(excluded) & set(kept)
    assert {"adapter", "weights", "checkpoint"} & {entry["kind"] for entry in excluded.values()}
    assert all(re.fullmatch(r"[0-9a-f]{64}", entry["sha256"]) for entry in excluded.values())
    assert record["kept_bytes"] == sum(entry["size"] for entry in kept.values()) < 20_000_000
    if FROM_RAW_RUN:  # every file of the run accounted for, hashes computed from the run's own bytes
        run_files = {p.relative_to(raw_run).as_posix() for p in raw_run.rglob("*") if p.is_file()}
        assert set(kept) | set(excluded) == run_files | {f"{ADAPT_FOLDER}/{p}" for p in run_files}
        assert record["adapt_run"] == ADAPT_FOLDER and f"{ADAPT_FOLDER}/notebooks/04_evaluation.ipynb" in kept
        adapter = next(p for p in excluded if p.endswith(".safetensors"))
        assert excluded[adapter]["sha256"] == _sha256(raw_run / adapter)
        assert record["study_seconds"] == 123.0 and record["machine"]["cpu_count"] == os.cpu_count()


@needs_run
def test_copy_refuses_a_reference_over_the_limit_naming_the_largest(reference: Path, tmp_path: Path) -> None:
    largest = max(select_files(reference).kept, key=lambda f: f.size)
    with pytest.raises(ReferenceRunError, match=rf"over the .* limit; largest kept files: {re.escape(largest.path)}"):
        copy_reference(reference, tmp_path / "small", max_bytes=largest.size - 1)
    assert not (tmp_path / "small").exists()


@needs_run
def test_copy_refuses_a_run_whose_predictions_lack_their_sidecar(reference: Path, tmp_path: Path) -> None:
    sidecar = sorted((reference / "predictions").glob("*.meta.json"))[0]
    sidecar.unlink()
    with pytest.raises(ReferenceRunError, match=re.escape(sidecar.name.replace(".meta.json", ".jsonl"))):
        copy_reference(reference, tmp_path / "copy")
    assert not (tmp_path / "copy").exists()


# --------------------------------------------------------------------------- (b) bad input, before rendering


def _refused_before_rendering(reference: Path, *names: str) -> str:
    before = _pages_state()
    with pytest.raises(book.BookError) as error:
        book.build(reference)
    assert isinstance(error.value.__cause__, ReferenceRunError)
    assert _pages_state() == before, "the book was staged although the reference was refused"
    for name in names:
        assert name in str(error.value)
    return str(error.value)


@needs_run
def test_a_missing_file_is_named(reference: Path) -> None:
    figure = next(p for p in sorted((reference / "eval" / "figures").glob("*.png")))
    figure.unlink()
    _refused_before_rendering(reference, str(figure), "missing")


@needs_run
def test_a_missing_executed_notebook_is_named(reference: Path) -> None:
    (reference / "notebooks" / "04_evaluation.ipynb").unlink()
    _refused_before_rendering(reference, "04_evaluation.ipynb", "missing")


@needs_run
@pytest.mark.parametrize("field, value", [("commit", None), ("commit", "HEAD"), ("code_digest", ""),
                                          ("code_digest", "not-a-digest")])
def test_a_manifest_without_readable_provenance_is_refused(reference: Path, field: str, value: object) -> None:
    _rewrite(reference, "manifest.json", lambda text: json.dumps({**json.loads(text), field: value}))
    _refused_before_rendering(reference, str(reference / "manifest.json"), field)


@needs_run
def test_an_unreadable_manifest_is_refused(reference: Path) -> None:
    _rewrite(reference, "manifest.json", lambda text: text[: len(text) // 2])
    _refused_before_rendering(reference, str(reference / "manifest.json"), "cannot be read")


@needs_run
def test_predictions_without_sidecar_are_named(reference: Path) -> None:
    sidecar = sorted((reference / "predictions").glob("*.meta.json"))[0]
    sidecar.unlink()
    predictions = sidecar.with_name(sidecar.name.replace(".meta.json", ".jsonl"))
    _refused_before_rendering(reference, str(predictions), "sidecar")


@needs_run
def test_a_changed_file_is_named(reference: Path) -> None:
    table = reference / "eval" / "summary.csv"
    table.write_text(table.read_text() + "\n", encoding="utf-8")
    _refused_before_rendering(reference, str(table), "differs")


@needs_run
def test_validation_accepts_the_real_reference(reference: Path) -> None:
    assert validate_reference(reference)["kept"]


# --------------------------------------------------------------------------- (d) the glued headline


@needs_run
def test_glued_headline_equals_the_one_recomputed_from_scores(reference: Path) -> None:
    notebook = reference / "notebooks" / "04_evaluation.ipynb"
    glued = glued_values(notebook)
    compared = check_headline(reference)
    assert {"headline_relative_gain_pct", "finetuned_flowsim_with_inputs", "best_prompted_system",
            "headline_n"} <= set(compared)
    assert {name: glued[name] for name in compared} == compared
    manifest = json.loads((reference / "manifest.json").read_text())
    ran = next(e for e in manifest["notebooks"] if e["name"] == "04_evaluation")["parameters"]
    assert executed_parameters(notebook)["n_bootstrap"] == ran.get("n_bootstrap", 2000)


@needs_run
def test_a_glued_headline_that_disagrees_with_the_scores_is_refused(reference: Path) -> None:
    def change(text: str) -> str:
        data = json.loads(text)
        for cell in data["cells"]:
            for output in cell.get("outputs", []):
                if output.get("metadata", {}).get("scrapbook", {}).get("name") == "headline_relative_gain_pct":
                    key = output["metadata"]["scrapbook"]["mime_prefix"] + "text/plain"
                    output["data"][key] = repr(float(output["data"][key]) + 12.5)
        return json.dumps(data)
    _rewrite(reference, "notebooks/04_evaluation.ipynb", change)
    with pytest.raises(ReferenceRunError, match="headline_relative_gain_pct"):
        check_headline(reference)
    _refused_before_rendering(reference, "headline_relative_gain_pct", "eval/scores.parquet")


@needs_run
@pytest.mark.integration
@pytest.mark.skipif(not FROM_RAW_RUN, reason="re-executing notebook 04 needs a whole run (its data splits)")
def test_intervals_are_compared_when_the_installed_code_computed_the_run(raw_run: Path, tmp_path: Path) -> None:
    import papermill

    run = tmp_path / "run"
    shutil.copytree(raw_run, run)
    manifest = json.loads((run / "manifest.json").read_text())
    entry = next(e for e in manifest["notebooks"] if e["name"] == "04_evaluation")
    papermill.execute_notebook(str(ROOT / "notebooks" / "04_evaluation.ipynb"), str(run / entry["output"]),
                               parameters={**entry["parameters"], "run_dir": str(run)}, progress_bar=False,
                               cwd=str(ROOT))
    entry["code_digest"] = code_digest()
    (run / "manifest.json").write_text(json.dumps(manifest))
    compared = check_headline(run)
    assert {"headline_ci_low_pct", "headline_ci_high_pct", "paired_diff_low", "finetuned_ci_high"} <= set(compared)
    glued = glued_values(run / entry["output"])
    assert {name: glued[name] for name in compared} == compared


# --------------------------------------------------------------------------- (c) rendering


@needs_run
def test_the_stale_note_names_commit_digest_and_notebooks(reference: Path) -> None:
    _make_stale(reference)
    stale = book.stale_notebooks(reference)
    manifest = json.loads((reference / "manifest.json").read_text())
    assert stale == [entry["name"] for entry in manifest["notebooks"]]
    note = book.reference_note(reference, stale)
    assert note.startswith("```{admonition}") and ":class: warning" in note
    assert manifest["commit"] in note and STALE_DIGEST in note and code_digest() in note
    assert all(f"`{name}`" in note for name in stale)
    fresh = book.reference_note(reference, [])
    assert ":class: note" in fresh and "installed code is the code that computed it" in fresh


@needs_run
def test_a_normal_run_of_a_stale_folder_is_still_refused(reference: Path) -> None:
    (reference / RECORD_FILE).unlink()
    _make_stale(reference)
    before = _pages_state()
    with pytest.raises(book.BookError, match="stale notebooks: .*04_evaluation"):
        book.build(reference)
    assert _pages_state() == before


@needs_run
@pytest.mark.integration
def test_the_reference_renders_with_its_age_and_a_normal_run_without(reference: Path) -> None:
    _make_stale(reference)
    manifest = json.loads((reference / "manifest.json").read_text())
    assert book.main(["--run", str(reference)]) == 0
    html = ROOT / "_build" / "html" / "book"
    for page in ("intro.html", "run/04_evaluation.html"):
        text = re.sub(r"<[^>]+>", "", (html / page).read_text(encoding="utf-8"))
        assert f"Reference run: commit {manifest['commit'][:7]}, code digest {STALE_DIGEST}" in text, page
        assert manifest["commit"] in text and code_digest() in text and "04_evaluation" in text, page
    if _record(reference).get("adapt_run"):  # the worked example it holds is rendered, not the "no run" note
        adapt = (html / "adapt.html").read_text(encoding="utf-8")
        assert "has no worked-example run" not in adapt and "pasted-text" in adapt
    (reference / RECORD_FILE).unlink()
    book.build(reference, allow_stale=True)
    for page in ("intro.html", "run/04_evaluation.html"):
        assert "Reference run" not in (html / page).read_text(encoding="utf-8"), page


# --------------------------------------------------------------------------- publishing


def test_gitignore_keeps_the_reference_and_ignores_other_runs() -> None:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")

    def ignored(path: str) -> bool:
        return subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT, check=False).returncode == 0
    assert not ignored("results/reference/manifest.json")
    assert not ignored("results/reference/notebooks/04_evaluation.ipynb")
    assert not ignored("results/reference-large/manifest.json")
    assert ignored("results/default/manifest.json") and ignored("results/smoke/slm/adapter/x.safetensors")


def test_pages_workflow_builds_with_the_make_target_and_deploys() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "book.yml").read_text(encoding="utf-8"))
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads the key `on` as True
    assert triggers["push"]["branches"] == ["main"] and "workflow_dispatch" in triggers
    assert workflow["permissions"]["pages"] == "write" and workflow["permissions"]["id-token"] == "write"
    steps = [step for job in workflow["jobs"].values() for step in job["steps"]]
    uses = {step["uses"].partition("@")[0] for step in steps if "uses" in step}
    assert {"actions/setup-python", "actions/configure-pages", "actions/upload-pages-artifact",
            "actions/deploy-pages"} <= uses
    python = next(step for step in steps if step.get("uses", "").startswith("actions/setup-python"))
    assert str(python["with"]["python-version"]) == "3.11"
    upload = next(step for step in steps if step.get("uses", "").startswith("actions/upload-pages-artifact"))
    assert upload["with"]["path"] == "_build/html"
    targets = set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(encoding="utf-8"), re.MULTILINE))
    commands = [step["run"].split() for step in steps if "run" in step]
    assert commands and all(c[0] == "make" and c[1] in targets for c in commands)
    assert ["make", "book-reference"] == commands[0][:2]
    dry = subprocess.run(["make", "-n", "book-reference"], cwd=ROOT, check=False, capture_output=True, text=True)
    assert dry.returncode == 0 and "wfutils.book --reference results/reference" in dry.stdout
