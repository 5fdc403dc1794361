"""Evaluation of a small fixed run: the expected tidy table, coverage checks and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from wfutils.evaluation.scoring import (METRICS, SCORE_COLUMNS, error_table, evaluate_run, feature_table, load_evaluation,
                                save_evaluation, system_info)
from wfutils.flows.parsing import dumps_flow
from wfutils.data.predictions import Prediction, PredictionWriter, predictions_path

DAILY_LOG = {"trigger": {"type": "daily"}, "components": [{"order": 1, "definition": "log"}]}
INCIDENT = {
    "trigger": {"type": "record_create", "inputs": [{"name": "table", "value": "incident"},
                                                    {"name": "condition", "value": "priority=1"}]},
    "components": [
        {"order": 1, "category": "flowlogic", "definition": "IF",
         "inputs": [{"name": "condition", "value": "{{trigger.current.active}}=true"}]},
        {"order": 2, "block": 1, "category": "action", "definition": "send_email", "scope": "global",
         "inputs": [{"name": "to", "value": "{{trigger.current.caller_id.email}}"}]},
    ],
}
WEEKLY_NOTE = {"trigger": {"type": "weekly"}, "components": [{"order": 1, "definition": "add_work_note"}]}
EXAMPLES = {  # id -> (split, request, flow, features)
    "sn-test-0": ("test", "Every day, write a log line.", DAILY_LOG, ["scheduled_trigger"]),
    "sn-test-1": ("test", "When a P1 incident is created and active, email the caller.", INCIDENT,
                  ["encoded_query", "flow_logic", "implicit_condition", "record_trigger"]),
    "sn-test-2": ("test", "Every week add a work note.", WEEKLY_NOTE, ["scheduled_trigger"]),
    "sn-ood-0": ("ood", "Every day, write a log line, out of distribution.", DAILY_LOG, ["scheduled_trigger"]),
    "sn-ood-1": ("ood", "Weekly work note, out of distribution.", WEEKLY_NOTE, ["scheduled_trigger"]),
}
LLM = "gpt-4o-few-shot"  # as wfutils.llm.strategies.system_name spells it


def write_data(run: Path) -> None:
    """The run's data set in the layout of wfutils.data.store.save_dataset (data/<name>/<split>.parquet)."""
    for split in ("test", "ood"):
        rows = [{"id": i, "request": r, "flow": dumps_flow(f), "features": feats, "domain": "servicenow"}
                for i, (s, r, f, feats) in EXAMPLES.items() if s == split]
        folder = run / "data" / "synthetic"
        folder.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_parquet(folder / f"{split}.parquet")


def write_system(run: Path, system: str, outputs: dict[str, str], *, latency: float = 1.0,
                 tokens: tuple[int, int] = (1000, 100)) -> None:
    with PredictionWriter(predictions_path(run, system)) as writer:
        for ident, output in outputs.items():
            split, request, flow, _ = EXAMPLES[ident]
            writer.write(Prediction.from_output(id=ident, split=split, system=system, request=request,
                                                reference=dumps_flow(flow), output=output, latency_s=latency,
                                                prompt_tokens=tokens[0], completion_tokens=tokens[1]))


def make_run(run: Path, *, with_data: bool = True) -> Path:
    """A tiny run: a perfect fine-tuned system on test + ood, a flawed prompted one on test only."""
    if with_data:
        write_data(run)
    write_system(run, "slm-tiny", {i: dumps_flow(EXAMPLES[i][2]) for i in EXAMPLES}, latency=0.2, tokens=(50, 30))
    weekly_log = json.loads(dumps_flow(DAILY_LOG))
    weekly_log["trigger"]["type"] = "weekly"
    write_system(run, LLM, {
        "sn-test-0": dumps_flow(weekly_log),  # wrong trigger type
        "sn-test-1": "I am sorry, I cannot help with that.",  # not JSON
        "sn-test-2": "Here it is:\n```json\n" + json.dumps(WEEKLY_NOTE, indent=2) + "\n```\nHope this helps!",
    })
    return run


def value(scores: pd.DataFrame, system: str, ident: str, metric: str) -> float:
    hit = scores[(scores.system == system) & (scores.id == ident) & (scores.metric == metric)]
    assert len(hit) == 1, (system, ident, metric, len(hit))
    return float(hit["value"].iloc[0])


def test_small_run_gives_the_expected_table(tmp_path: Path) -> None:
    run = make_run(tmp_path / "tiny")
    ev = evaluate_run(run, progress=False)
    assert list(ev.scores.columns) == list(SCORE_COLUMNS)
    assert len(ev.scores) == (5 + 3) * len(METRICS)
    assert ev.notes == []
    s = ev.scores
    for ident in EXAMPLES:  # the perfect system
        for metric, expected in (("flowsim", 1), ("flowsim_no_inputs", 1), ("trigger_match", 1), ("component_f1", 1),
                                 ("json_valid", 1), ("schema_valid", 1), ("truncated", 0), ("length_error", 0),
                                 ("hallucinated_steps", 0), ("hallucinated_tables", 0), ("cost_usd", 0)):
            assert value(s, "slm-tiny", ident, metric) == expected, (ident, metric)
    # Wrong trigger type: relabel cost 2 over |T_c| + |T_r| = 2 + 2 nodes.
    assert value(s, LLM, "sn-test-0", "flowsim") == 0.5
    assert value(s, LLM, "sn-test-0", "flowsim_no_inputs") == 0.5
    assert value(s, LLM, "sn-test-0", "trigger_match") == 0
    assert value(s, LLM, "sn-test-0", "component_f1") == 1
    # Not JSON: scored as the empty flow.
    for metric, expected in (("flowsim", 0), ("json_valid", 0), ("schema_valid", 0), ("component_f1", 0),
                             ("length_error", 2)):
        assert value(s, LLM, "sn-test-1", metric) == expected, metric
    # A fenced block with prose around it: the metric extracts it, the parse is "ok".
    assert value(s, LLM, "sn-test-2", "flowsim") == 1
    assert value(s, LLM, "sn-test-2", "json_valid") == 1
    # Cost at gpt-4o list price (2.50 / 10.00 USD per 1M tokens), latency as recorded.
    assert value(s, LLM, "sn-test-2", "cost_usd") == pytest.approx(1000 * 2.5e-6 + 100 * 10e-6)
    assert value(s, "slm-tiny", "sn-ood-1", "latency_s") == pytest.approx(0.2)
    # Columns from the data set.
    row = s[(s.system == "slm-tiny") & (s.id == "sn-ood-0")].iloc[0]
    assert (row["dataset"], row["split"], row["subset"], row["domain"]) == ("synthetic", "ood", "ood", "servicenow")
    cov = ev.coverage.set_index(["system", "subset"])["status"]
    assert cov[("slm-tiny", "test")] == "complete" and cov[(LLM, "ood")] == "not run"
    feats = feature_table(ev.examples)
    assert set(feats[feats.feature == "flow_logic"]["id"]) == {"sn-test-1"}

    out = save_evaluation(ev, run, params={"seed": 0})
    assert (out / "scores.parquet").is_file() and json.loads((out / "info.json").read_text())["params"] == {"seed": 0}
    back = load_evaluation(run)
    pd.testing.assert_frame_equal(back.scores.astype({c: str for c in SCORE_COLUMNS[:-1]}),
                                  ev.scores.astype({c: str for c in SCORE_COLUMNS[:-1]}))

    errors = error_table(ev, progress=False).groupby(["system", "id"])["tag"].apply(list).to_dict()
    assert errors[(LLM, "sn-test-0")] == ["wrong_trigger_type"]
    assert errors[(LLM, "sn-test-1")] == ["invalid_json"]
    assert errors[("slm-tiny", "sn-test-1")] == ["none"]


def test_run_without_data_uses_the_references_in_the_predictions(tmp_path: Path) -> None:
    ev = evaluate_run(make_run(tmp_path / "nodata", with_data=False), progress=False)
    assert "holds no data sets" in ev.notes[0]
    assert set(ev.scores["subset"]) == {"test", "ood"}
    assert value(ev.scores, LLM, "sn-test-0", "flowsim") == 0.5
    flow_logic = ev.examples.set_index("id").loc["sn-test-1", "features"]
    assert "flow_logic" in flow_logic and "implicit_condition" not in flow_logic  # structural tags only


def test_duplicate_ids_and_missing_files_are_errors(tmp_path: Path) -> None:
    run = make_run(tmp_path / "dup")
    path = predictions_path(run, LLM)
    first = path.read_text().splitlines()[0]
    path.write_text(path.read_text() + first + "\n")
    with pytest.raises(ValueError, match=r"gpt-4o-few-shot.jsonl: duplicate id 'sn-test-0' \(records 1 and 4\)"):
        evaluate_run(run, progress=False)
    with pytest.raises(FileNotFoundError, match="system 'slm-missing' not found"):
        evaluate_run(run, ["slm-missing"], progress=False)


def test_incomplete_system_is_an_error_or_an_explicit_exclusion(tmp_path: Path) -> None:
    run = make_run(tmp_path / "partial")
    write_system(run, "slm-partial", {"sn-test-0": dumps_flow(DAILY_LOG)})
    with pytest.raises(ValueError, match="incomplete predictions .*slm-partial on test: 1 of 3"):
        evaluate_run(run, progress=False)
    ev = evaluate_run(run, on_incomplete="exclude", progress=False)
    assert "slm-partial" not in set(ev.scores["system"])
    assert any("slm-partial on test: 1 of 3" in note for note in ev.notes)
    assert ev.coverage.set_index(["system", "subset"]).loc[("slm-partial", "test"), "status"] == "incomplete"
    ev = evaluate_run(run, on_incomplete="intersect", progress=False)
    test_ids = set(ev.scores[ev.scores.subset == "test"]["id"])
    assert test_ids == {"sn-test-0"}
    assert set(ev.scores[ev.scores.subset == "ood"]["id"]) == {"sn-ood-0", "sn-ood-1"}


def test_mismatched_references_and_unknown_ids_are_errors(tmp_path: Path) -> None:
    run = make_run(tmp_path / "mismatch")
    with PredictionWriter(predictions_path(run, "slm-other")) as writer:
        for ident, (split, request, flow, _) in EXAMPLES.items():
            reference = WEEKLY_NOTE if ident == "sn-test-0" else flow
            writer.write(Prediction.from_output(id=ident, split=split, system="slm-other", request=request,
                                                reference=dumps_flow(reference), output="{}", latency_s=0,
                                                prompt_tokens=0, completion_tokens=0))
    with pytest.raises(ValueError, match="'slm-other', id 'sn-test-0': the prediction's reference flow differs"):
        evaluate_run(run, progress=False)
    run2 = make_run(tmp_path / "extra")
    write_system(run2, "slm-more", {i: "{}" for i in EXAMPLES})
    with open(predictions_path(run2, "slm-more"), "a") as handle:
        handle.write(Prediction.from_output(id="sn-test-99", split="test", system="slm-more", request="?",
                                            reference="{}", output="{}", latency_s=0, prompt_tokens=0,
                                            completion_tokens=0).to_json() + "\n")
    with pytest.raises(ValueError, match="not in the run's data sets: slm-more: 1"):
        evaluate_run(run2, progress=False)


def test_system_names() -> None:
    info = system_info("gpt-4o-rag-few-shot-oracle")
    assert (info.arm, info.model, info.strategy, info.oracle, info.baseline_name) == (
        "llm", "gpt-4o", "rag_few_shot", True, "gpt-4o-rag-few-shot")
    assert system_info("slm-smollm2-lora").arm == "slm"
    assert system_info("gemini-2.0-flash_zero_shot").strategy == "zero_shot"


@pytest.mark.slow
def test_notebooks_run_on_a_run_with_only_small_prediction_files(tmp_path: Path) -> None:
    import papermill

    repo = Path(__file__).resolve().parent.parent
    for with_data in (True, False):
        run = make_run(tmp_path / f"run-{with_data}", with_data=with_data)
        for name in ("04_evaluation", "05_error_analysis"):
            papermill.execute_notebook(str(repo / "notebooks" / f"{name}.ipynb"), str(tmp_path / f"{name}-{with_data}.ipynb"),
                                       parameters={"run_dir": str(run), "n_bootstrap": 200} if name.startswith("04")
                                       else {"run_dir": str(run)}, progress_bar=False)
        out = run / "eval"
        table = pd.read_csv(out / "paper_claims.csv")
        assert set(table["verdict"]) == {"not testable here"}  # 3 paired examples, no oracle system
        for figure in ("flowsim_per_system", "paired_differences", "quality_cost_latency", "error_rates"):
            assert (out / "figures" / f"{figure}.png").stat().st_size > 1000
        tags = pd.read_parquet(out / "errors.parquet")
        assert set(tags[tags.system == LLM]["tag"]) == {"wrong_trigger_type", "invalid_json", "none"}
