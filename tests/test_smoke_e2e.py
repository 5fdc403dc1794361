"""The whole study on the smoke profile: every notebook, the manifest, and a book whose pages exist."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from wfutils.study import book, bookcheck, pipeline


@pytest.mark.slow
def test_smoke_profile_end_to_end(tmp_path: Path) -> None:
    manifest = pipeline.run("smoke", "e2e", results_dir=tmp_path, progress=False)
    run_dir = tmp_path / "e2e"
    names = [entry["name"] for entry in manifest["notebooks"]]
    assert names == ["01_data_exploration", "02_slm_finetuning", "03_llm_prompting", "04_evaluation", "05_error_analysis"]
    assert all((run_dir / "notebooks" / f"{name}.ipynb").exists() for name in names)
    on_disk = json.loads((run_dir / "manifest.json").read_text())
    assert on_disk["status"] == "ok" and on_disk["commit"] and on_disk["versions"]["torch"]
    assert sorted(p.name for p in (run_dir / "predictions").glob("*.jsonl"))
    assert (run_dir / "eval" / "scores.parquet").exists() and (run_dir / "eval" / "paper_claims.csv").exists()

    index = book.build(run_dir)
    html = index.parent
    for page in ("book/intro.html", "book/metric.html", "book/claims.html", *(f"book/run/{n}.html" for n in names)):
        assert (html / page).exists(), page
    if shutil.which("chromium"):
        reports = bookcheck.check_book(html, tmp_path / "book.png")
        assert all(not r.problems for r in reports)
