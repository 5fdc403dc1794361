"""The study on a user's own JSON Lines corpus, by parameters only (issue 14).

A small veterinary-clinic corpus written here (its own actions and tables, none of them in the
shipped ServiceNow catalogue) goes through exactly the README's command shape::

    python -m wfutils.pipeline --profile smoke --run mine -p "corpora=[/abs/path/pairs.jsonl]" -p train_corpus=pairs
    python -m wfutils.book --run results/mine
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from wfutils.data.predictions import predictions_path, read_system_meta
from wfutils.data.store import load_run_data

SPECIES = ["dog", "cat", "rabbit", "parrot", "horse", "hamster"]
CHANNELS = ["#front-desk", "#surgery", "#billing"]


def clinic_pairs(n: int, seed: int = 7) -> list[dict]:
    """(request, flow) pairs of a domain the package has never seen: appointments, pets, vaccines."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        species = rng.choice(SPECIES)
        kind = i % 3
        if kind == 0:
            channel = rng.choice(CHANNELS)
            request = f"When a {species} appointment is booked, text the owner a reminder and post it in {channel}."
            flow = {"trigger": {"type": "record_create", "inputs": [
                        {"name": "table", "value": "x_vet_appointment"}, {"name": "condition", "value": f"species={species}"}]},
                    "components": [
                        {"order": 1, "category": "action", "definition": "send_sms", "scope": "x_vet",
                         "inputs": [{"name": "to", "value": "{{trigger.current.owner.phone}}"},
                                    {"name": "message", "value": f"Reminder: your {species} has an appointment"}]},
                        {"order": 2, "category": "action", "definition": "post_team_message", "scope": "x_vet",
                         "inputs": [{"name": "channel", "value": channel},
                                    {"name": "message", "value": "New appointment {{trigger.current.number}}"}]}]}
        elif kind == 1:
            days = rng.choice([7, 14, 30])
            request = f"Every day, find {species}s whose vaccine is due within {days} days and email each owner."
            flow = {"trigger": {"type": "daily", "inputs": [{"name": "time", "value": "08:00:00"}]},
                    "components": [
                        {"order": 1, "category": "action", "definition": "look_up_records", "scope": "global",
                         "inputs": [{"name": "table", "value": "x_vet_vaccination"},
                                    {"name": "conditions", "value": f"species={species}^due_inDAYS<{days}"}]},
                        {"order": 2, "category": "flowlogic", "definition": "FOREACH",
                         "inputs": [{"name": "items", "value": "{{1.records}}"}]},
                        {"order": 3, "block": 2, "category": "action", "definition": "send_email", "scope": "global",
                         "inputs": [{"name": "to", "value": "{{2.item.owner.email}}"},
                                    {"name": "subject", "value": f"Your {species}'s vaccine is due"}]}]}
        else:
            request = f"When a {species} is discharged, create an invoice for the owner and close the stay."
            flow = {"trigger": {"type": "record_update", "inputs": [
                        {"name": "table", "value": "x_vet_stay"}, {"name": "condition", "value": "stateCHANGESTOdischarged"}]},
                    "components": [
                        {"order": 1, "category": "action", "definition": "create_invoice", "scope": "x_vet",
                         "inputs": [{"name": "owner", "value": "{{trigger.current.owner}}"},
                                    {"name": "stay", "value": "{{trigger.current}}"}]},
                        {"order": 2, "category": "action", "definition": "update_record", "scope": "global",
                         "inputs": [{"name": "record", "value": "{{trigger.current}}"},
                                    {"name": "table", "value": "x_vet_stay"}, {"name": "values", "value": "state=closed"}]}]}
        out.append({"id": f"vet-{i:03d}", "request": request, "flow": flow})
    return out


@pytest.mark.slow
@pytest.mark.integration
def test_whole_study_on_a_users_jsonl_corpus_by_parameters_only(tmp_path: Path) -> None:
    corpus = tmp_path / "data" / "pairs.jsonl"
    corpus.parent.mkdir()
    corpus.write_text("".join(json.dumps(p) + "\n" for p in clinic_pairs(40)), encoding="utf-8")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    work = tmp_path / "work"  # results/ of the commands land under the working directory
    work.mkdir()

    study = subprocess.run(
        [sys.executable, "-m", "wfutils.pipeline", "--profile", "smoke", "--run", "mine",
         "-p", f"corpora=[{corpus}]", "-p", "train_corpus=pairs"],
        cwd=work, env=env, capture_output=True, text=True, timeout=3600)
    assert study.returncode == 0, study.stdout[-3000:] + study.stderr[-3000:]
    run_dir = work / "results" / "mine"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "ok"

    data = load_run_data(run_dir, include_train=True)
    assert set(data) == {"synthetic", "pairs"}  # the list replaced the default corpora
    assert {"train", "test"} <= set(data["pairs"]) and len(data["pairs"]["train"]) >= 20

    finetuned = read_system_meta(predictions_path(run_dir, "slm-smollm2-135m-lora"))
    assert finetuned.train_corpus == "pairs"
    slm_record = json.loads((run_dir / "slm" / "training_record.json").read_text())
    assert slm_record["n_examples"] + len(slm_record["dropped_too_long"]) == len(data["pairs"]["train"])

    llm_summary = json.loads((run_dir / "llm" / "summary.json").read_text())
    assert llm_summary["parameters"]["train_corpus"] == "pairs"
    assert llm_summary["parameters"]["eval_splits"][0] == "pairs/test"
    train_ids = set(data["pairs"]["train"]["id"])
    assert set(llm_summary["fixed_examples"]) <= train_ids

    scores = pd.read_parquet(run_dir / "eval" / "scores.parquet")
    assert "pairs" in set(scores["subset"]) and set(scores["train_corpus"]) == {"pairs"}
    # hallucinations of systems trained on the clinic corpus are judged against its own vocabulary
    notes = json.loads((run_dir / "eval" / "info.json").read_text())["notes"]
    assert any("trained on 'pairs'" in n and "derived from the training flows" in n for n in notes), notes
    hallucinated = scores[(scores["subset"] == "pairs") & (scores["metric"] == "hallucinated_steps")]
    assert len(hallucinated) > 0

    book = subprocess.run([sys.executable, "-m", "wfutils.book", "--run", "results/mine"],
                          cwd=work, env=env, capture_output=True, text=True, timeout=1200)
    assert book.returncode == 0, book.stdout[-3000:] + book.stderr[-3000:]
    index = Path(book.stdout.strip().splitlines()[-1].removeprefix("book written: "))
    evaluation_page = index.parent / "book" / "run" / "04_evaluation.html"
    assert "pairs" in evaluation_page.read_text(encoding="utf-8")
