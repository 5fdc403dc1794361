"""The whole study on the smoke profile: every notebook, the manifest, and a book whose pages exist.

The browser check of the book needs Chromium: where it is missing the check is skipped with the
reason (``pytest -ra`` lists it), except under CI (``CI=true``), where a missing browser fails.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.browser import require_chromium
from wfutils.study import book, bookcheck, pipeline

NOTEBOOKS = ["01_data_exploration", "02_slm_finetuning", "03_llm_prompting", "04_evaluation", "05_error_analysis",
             "06_decision"]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The smoke profile run once for the module: (run folder, manifest)."""
    results = tmp_path_factory.mktemp("smoke")
    manifest = pipeline.run("smoke", "e2e", results_dir=results, progress=False)
    return results / "e2e", manifest


@pytest.fixture(scope="module")
def smoke_book(smoke_run: tuple[Path, dict]) -> Path:
    """The book of the smoke run, built once: its HTML folder."""
    return book.build(smoke_run[0]).parent


@pytest.mark.slow
def test_smoke_profile_end_to_end(smoke_run: tuple[Path, dict], smoke_book: Path) -> None:
    run_dir, manifest = smoke_run
    names = [entry["name"] for entry in manifest["notebooks"]]
    assert names == NOTEBOOKS
    assert all((run_dir / "notebooks" / f"{name}.ipynb").exists() for name in names)
    on_disk = json.loads((run_dir / "manifest.json").read_text())
    assert on_disk["status"] == "ok" and on_disk["commit"] and on_disk["versions"]["torch"]
    assert sorted(p.name for p in (run_dir / "predictions").glob("*.jsonl"))
    assert (run_dir / "eval" / "scores.parquet").exists() and (run_dir / "eval" / "paper_claims.csv").exists()
    for page in ("book/intro.html", "book/metric.html", "book/claims.html", *(f"book/run/{n}.html" for n in names)):
        assert (smoke_book / page).exists(), page


@pytest.mark.slow
def test_the_built_book_in_a_browser(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    require_chromium()  # before the run: a missing browser is reported without minutes of pipeline first
    html = request.getfixturevalue("smoke_book")
    reports = bookcheck.check_book(html, tmp_path / "book.png")
    assert reports and all(not r.problems for r in reports)
