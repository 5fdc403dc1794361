"""Evaluation of a small fixed run: the expected tidy table, sidecars, coverage checks and bad input."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from wfutils.data.predictions import DataWarning, Prediction, PredictionWriter, SystemMeta, meta_path, predictions_path
from wfutils.evaluation import loading, scoring, selection
from wfutils.evaluation import statistics as stats
from wfutils.evaluation.result import META_COLUMNS, SCORE_COLUMNS
from wfutils.evaluation.scoring import METRICS, evaluate_run
from wfutils.evaluation.store import load_evaluation, load_or_evaluate, save_evaluation
from wfutils.evaluation.tables import cost_table, error_table, feature_table
from wfutils.flows.parsing import dumps_flow

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
VALIDATION = {  # the selection split (synthetic/validation)
    "sn-val-0": ("validation", "Each day write a log line.", DAILY_LOG, ["scheduled_trigger"]),
    "sn-val-1": ("validation", "Add a work note every week.", WEEKLY_NOTE, ["scheduled_trigger"]),
}
SLM = "slm-tiny"
LLM = "gpt-4o-few-shot"  # as wfutils.llm.strategies.system_name spells it
LOCAL_ENGINE = {"name": "transformers", "version": "4.57.0", "local": True, "quantisation": "float32"}  # as a sidecar records an engine
OPENAI_ENGINE = {"name": "openai-compatible", "endpoint": "https://api.openai.com/v1", "local": False}


def finetuned_meta(system: str = SLM, **kw) -> SystemMeta:
    return SystemMeta(**{"system": system, "arm": "fine-tuned", "base_model": "smollm2-135m", "n_params": 134_515_008,
                         "adapter": "slm/adapter", "engine": LOCAL_ENGINE, **kw})


def prompted_meta(system: str = LLM, **kw) -> SystemMeta:
    return SystemMeta(**{"system": system, "arm": "prompted", "base_model": "gpt-4o", "n_params": 0,
                         "strategy": "few_shot", "k": 3, "engine": OPENAI_ENGINE, **kw})


def write_data(run: Path, *, validation: bool = False) -> None:
    """The run's data set in the layout of wfutils.data.store.save_dataset (data/<name>/<split>.parquet)."""
    examples = {**EXAMPLES, **(VALIDATION if validation else {})}
    for split in ("test", "ood", "validation") if validation else ("test", "ood"):
        rows = [{"id": i, "request": r, "flow": dumps_flow(f), "features": feats, "domain": "servicenow"}
                for i, (s, r, f, feats) in examples.items() if s == split]
        folder = run / "data" / "synthetic"
        folder.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_parquet(folder / f"{split}.parquet")


def write_system(run: Path, meta: SystemMeta, outputs: dict[str, str], *, latency: float = 1.0,
                 tokens: tuple[int, int] = (1000, 100)) -> None:
    """A predictions file and its sidecar, written as the arms write them."""
    examples = {**EXAMPLES, **VALIDATION}
    with PredictionWriter(predictions_path(run, meta.system), meta) as writer:
        for ident, output in outputs.items():
            split, request, flow, _ = examples[ident]
            writer.write(Prediction.from_output(id=ident, split=split, system=meta.system, request=request,
                                                reference=dumps_flow(flow), output=output, latency_s=latency,
                                                prompt_tokens=tokens[0], completion_tokens=tokens[1]))


def make_run(run: Path, *, with_data: bool = True) -> Path:
    """A tiny run: a perfect fine-tuned system on test + ood, a flawed prompted one on test only."""
    if with_data:
        write_data(run)
    write_system(run, finetuned_meta(), {i: dumps_flow(EXAMPLES[i][2]) for i in EXAMPLES}, latency=0.2,
                 tokens=(50, 30))
    weekly_log = json.loads(dumps_flow(DAILY_LOG))
    weekly_log["trigger"]["type"] = "weekly"
    write_system(run, prompted_meta(), {
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
    assert ev.notes == [] and ev.selection_scores.empty
    assert "flowsim" not in METRICS and {"flowsim_with_inputs", "flowsim_no_inputs"} <= set(METRICS)
    s = ev.scores
    for ident in EXAMPLES:  # the perfect system
        for metric, expected in (("flowsim_with_inputs", 1), ("flowsim_no_inputs", 1), ("trigger_match", 1),
                                 ("component_f1", 1), ("json_valid", 1), ("schema_valid", 1), ("truncated", 0),
                                 ("length_error", 0), ("hallucinated_steps", 0), ("hallucinated_tables", 0),
                                 ("cost_usd", 0)):
            assert value(s, SLM, ident, metric) == expected, (ident, metric)
    # Wrong trigger type: relabel cost 2 over |T_c| + |T_r| = 2 + 2 nodes.
    assert value(s, LLM, "sn-test-0", "flowsim_with_inputs") == 0.5
    assert value(s, LLM, "sn-test-0", "flowsim_no_inputs") == 0.5
    assert value(s, LLM, "sn-test-0", "trigger_match") == 0
    assert value(s, LLM, "sn-test-0", "component_f1") == 1
    # Not JSON: scored as the empty flow.
    for metric, expected in (("flowsim_with_inputs", 0), ("json_valid", 0), ("schema_valid", 0), ("component_f1", 0),
                             ("length_error", 2)):
        assert value(s, LLM, "sn-test-1", metric) == expected, metric
    # A fenced block with prose around it: the metric extracts it, the parse is "ok".
    assert value(s, LLM, "sn-test-2", "flowsim_with_inputs") == 1
    assert value(s, LLM, "sn-test-2", "json_valid") == 1
    # Cost at the list price of meta.base_model, gpt-4o (2.50 / 10.00 USD per 1M tokens); latency as recorded.
    assert value(s, LLM, "sn-test-2", "cost_usd") == pytest.approx(1000 * 2.5e-6 + 100 * 10e-6)
    assert value(s, SLM, "sn-ood-1", "latency_s") == pytest.approx(0.2)
    # Columns from the data set and from the sidecars.
    row = s[(s.system == SLM) & (s.id == "sn-ood-0")].iloc[0]
    assert (row["dataset"], row["split"], row["subset"], row["domain"]) == ("synthetic", "ood", "ood", "servicenow")
    assert (row["arm"], row["base_model"], row["n_params"], row["strategy"], row["k"], row["retrieval"]) == (
        "fine-tuned", "smollm2-135m", 134_515_008, "none", 0, "none")
    row = s[s.system == LLM].iloc[0]
    assert (row["arm"], row["base_model"], row["strategy"], row["k"]) == ("prompted", "gpt-4o", "few_shot", 3)
    cov = ev.coverage.set_index(["system", "subset"])["status"]
    assert cov[(SLM, "test")] == "complete" and cov[(LLM, "ood")] == "not run"
    feats = feature_table(ev.examples)
    assert set(feats[feats.feature == "flow_logic"]["id"]) == {"sn-test-1"}
    costs = cost_table(s).set_index("system")
    assert list(costs.columns[:5]) == ["n", "flowsim_with_inputs", "seconds_per_flow", "tokens_per_flow",
                                       "usd_per_1000_flows"]
    assert set(META_COLUMNS) <= set(costs.columns) and costs.loc[LLM, "arm"] == "prompted"
    assert costs.loc[SLM, "usd_per_1000_flows"] == 0 and costs.loc[SLM, "n"] == 5

    out = save_evaluation(ev, run, params={"seed": 0})
    info = json.loads((out / "info.json").read_text())
    assert (out / "scores.parquet").is_file() and info["params"] == {"seed": 0}
    assert info["versions"]["code_digest"] and info["versions"]["pandas"]
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*"))
    back = load_evaluation(run)
    pd.testing.assert_frame_equal(back.scores.astype({c: str for c in SCORE_COLUMNS[:-1]}),
                                  ev.scores.astype({c: str for c in SCORE_COLUMNS[:-1]}))
    assert back.metas == ev.metas and back.selection_scores.empty
    # Scores saved in an older layout (before the recipe columns) are scored again, never read half-way.
    (out / "info.json").write_text(json.dumps({**info, "format": 2}))
    with pytest.raises(FileNotFoundError, match="older layout"):
        load_evaluation(run)
    again, how = load_or_evaluate(run)
    assert how.startswith("scored the run here") and set(SCORE_COLUMNS) <= set(again.scores.columns)

    errors = error_table(ev, run, progress=False).groupby(["system", "id"])["tag"].apply(list).to_dict()
    assert errors[(LLM, "sn-test-0")] == ["wrong_trigger_type"]
    assert errors[(LLM, "sn-test-1")] == ["invalid_json"]
    assert errors[(SLM, "sn-test-1")] == ["none"]


def test_run_without_data_uses_the_references_in_the_predictions(tmp_path: Path) -> None:
    ev = evaluate_run(make_run(tmp_path / "nodata", with_data=False), progress=False)
    assert "holds no data sets" in ev.notes[0]
    assert set(ev.scores["subset"]) == {"test", "ood"}
    assert value(ev.scores, LLM, "sn-test-0", "flowsim_with_inputs") == 0.5
    flow_logic = ev.examples.set_index("id").loc["sn-test-1", "features"]
    assert "flow_logic" in flow_logic and "implicit_condition" not in flow_logic  # structural tags only


def test_missing_sidecar_or_unknown_arm_is_an_error_naming_the_file_before_scoring(tmp_path: Path,
                                                                                    monkeypatch) -> None:
    def not_reached(*args, **kwargs):
        raise AssertionError("predictions were read or scored before every sidecar was checked")

    monkeypatch.setattr(scoring.loading, "load_predictions", not_reached)
    monkeypatch.setattr(scoring, "score_jobs", not_reached)
    run = make_run(tmp_path / "nosidecar")
    sidecar = meta_path(predictions_path(run, LLM))
    data = json.loads(sidecar.read_text())
    sidecar.unlink()
    with pytest.raises(FileNotFoundError, match=r"gpt-4o-few-shot\.jsonl: no system metadata beside it .*"
                                                r"gpt-4o-few-shot\.meta\.json"):
        evaluate_run(run, progress=False)
    sidecar.write_text(json.dumps({**data, "arm": "llm"}))
    with pytest.raises(ValueError, match=r"gpt-4o-few-shot\.meta\.json: .*arm 'llm' is not one of"):
        evaluate_run(run, progress=False)


def test_the_arm_comes_from_the_sidecar_never_from_the_name(tmp_path: Path) -> None:
    run = make_run(tmp_path / "arms")
    few_shot = "slm-smollm2-3shot"  # the small model, prompted with three examples: not fine-tuned
    write_system(run, prompted_meta(few_shot, base_model="smollm2-135m", n_params=134_515_008,
                                    engine={"name": "openai-compatible", "endpoint": "http://127.0.0.1:8123/v1",
                                            "local": True}),
                 {i: dumps_flow(DAILY_LOG) for i in ("sn-test-0", "sn-test-1", "sn-test-2")})
    ev = evaluate_run(run, progress=False)
    arms = ev.scores.groupby("system", observed=True)["arm"].first().astype(str).to_dict()
    assert arms == {SLM: "fine-tuned", LLM: "prompted", few_shot: "prompted"}
    assert value(ev.scores, few_shot, "sn-test-0", "cost_usd") == 0  # a local endpoint costs nothing
    paired = stats.paired_comparisons(ev.scores, n_boot=50)
    assert set(paired["fine_tuned"]) == {SLM} and set(paired["prompted"]) == {LLM, few_shot}
    comparison = selection.compared_systems(ev.scores, ev.selection_scores)
    assert comparison.finetuned == SLM and "no selection needed" in comparison.selection.how
    assert comparison.prompted == tuple(sorted([LLM, few_shot]))
    summary = stats.system_summary(ev.scores, n_boot=50)
    assert set(summary[summary.system == few_shot]["arm"]) == {"prompted"}


def test_costs_come_from_traces_local_engines_and_the_base_models_list_price(tmp_path: Path) -> None:
    run = make_run(tmp_path / "costs")
    outputs = {i: "{}" for i in ("sn-test-0", "sn-test-1", "sn-test-2")}
    write_system(run, prompted_meta("house-model-zero-shot", base_model="gpt-4o-mini", strategy="zero_shot", k=0),
                 outputs)
    write_system(run, prompted_meta("mystery-zero-shot", base_model="some-unpriced-model", strategy="zero_shot", k=0),
                 outputs)
    traces = run / "llm" / "traces"
    traces.mkdir(parents=True)
    (traces / f"{LLM}.jsonl").write_text(json.dumps({"id": "sn-test-0", "cost_usd": 0.5, "written": True}) + "\n"
                                         + '{"id": "sn-test-1", "cost_')  # a line cut short by a kill
    with pytest.warns(DataWarning, match=r"gpt-4o-few-shot.jsonl:2: unreadable trace line"):
        s = evaluate_run(run, progress=False).scores
    assert value(s, "house-model-zero-shot", "sn-test-0", "cost_usd") == pytest.approx(1000 * 0.15e-6 + 100 * 0.6e-6)
    assert np.isnan(value(s, "mystery-zero-shot", "sn-test-0", "cost_usd"))  # unknown: never a guessed 0
    assert value(s, LLM, "sn-test-0", "cost_usd") == 0.5  # what the prompting arm recorded
    assert value(s, LLM, "sn-test-1", "cost_usd") == pytest.approx(1000 * 2.5e-6 + 100 * 10e-6)
    assert np.isnan(cost_table(s).set_index("system").loc["mystery-zero-shot", "usd_per_1000_flows"])


def test_validation_predictions_are_scored_apart_and_never_reported(tmp_path: Path) -> None:
    run = tmp_path / "val"
    write_data(run, validation=True)
    flows = {**EXAMPLES, **VALIDATION}
    write_system(run, finetuned_meta(), {i: dumps_flow(flows[i][2]) for i in flows})
    write_system(run, prompted_meta(), {i: "{}" for i in EXAMPLES if i.startswith("sn-test")})
    ev = evaluate_run(run, progress=False)
    assert "validation" not in set(ev.scores["subset"]) and "validation" not in set(ev.scores["split"])
    assert set(ev.selection_scores["id"]) == set(VALIDATION) and set(ev.selection_scores["system"]) == {SLM}
    assert not set(VALIDATION) & (set(ev.examples["id"]) | set(ev.predictions["id"]))
    assert "validation" not in set(stats.system_summary(ev.scores, n_boot=50)["subset"])
    assert cost_table(ev.scores).set_index("system").loc[SLM, "n"] == 5
    assert any("validation split are kept apart" in note for note in ev.notes)
    save_evaluation(ev, run)
    back = load_evaluation(run)
    assert set(back.selection_scores["id"]) == set(VALIDATION)


def test_forked_scoring_gives_the_serial_scores(tmp_path: Path, monkeypatch) -> None:
    run = make_run(tmp_path / "fork")
    serial = evaluate_run(run, progress=False, workers=1).scores
    monkeypatch.setattr(scoring, "_CHUNK", 2)  # several chunks for two processes
    forked = evaluate_run(run, progress=False, workers=2).scores
    pd.testing.assert_frame_equal(serial, forked)


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
    write_system(run, finetuned_meta("slm-partial"), {"sn-test-0": dumps_flow(DAILY_LOG)})
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
    ev = evaluate_run(run, on_incomplete="keep", progress=False)  # each system on all it answered
    test = ev.scores[(ev.scores.subset == "test") & (ev.scores.metric == "flowsim_with_inputs")]
    assert test.groupby("system", observed=True)["id"].nunique().to_dict() == {
        LLM: 3, SLM: 3, "slm-partial": 1}
    assert any("different ids" in note and "slm-partial on test: 1 of 3" in note for note in ev.notes)


def test_mismatched_references_and_unknown_ids_are_errors(tmp_path: Path) -> None:
    run = make_run(tmp_path / "mismatch")
    with PredictionWriter(predictions_path(run, "slm-other"), finetuned_meta("slm-other")) as writer:
        for ident, (split, request, flow, _) in EXAMPLES.items():
            reference = WEEKLY_NOTE if ident == "sn-test-0" else flow
            writer.write(Prediction.from_output(id=ident, split=split, system="slm-other", request=request,
                                                reference=dumps_flow(reference), output="{}", latency_s=0,
                                                prompt_tokens=0, completion_tokens=0))
    with pytest.raises(ValueError, match="'slm-other', id 'sn-test-0': the prediction's reference flow differs"):
        evaluate_run(run, progress=False)
    run2 = make_run(tmp_path / "extra")
    write_system(run2, finetuned_meta("slm-more"), {i: "{}" for i in EXAMPLES})
    with open(predictions_path(run2, "slm-more"), "a") as handle:
        handle.write(Prediction.from_output(id="sn-test-99", split="test", system="slm-more", request="?",
                                            reference="{}", output="{}", latency_s=0, prompt_tokens=0,
                                            completion_tokens=0).to_json() + "\n")
    with pytest.raises(ValueError, match="not in the run's data sets: slm-more: 1"):
        evaluate_run(run2, progress=False)


@pytest.mark.slow
def test_notebooks_run_on_a_run_with_only_small_prediction_files(tmp_path: Path) -> None:
    import papermill

    repo = Path(__file__).resolve().parent.parent
    for with_data in (True, False):
        run = make_run(tmp_path / f"run-{with_data}", with_data=with_data)
        with open(predictions_path(run, LLM), "a") as handle:
            handle.write('{"id": "sn-test-9", "spl')  # a write cut short: a note naming file:line
        (run / "eval" / "figures").mkdir(parents=True)
        (run / "eval" / ".summary.csv.x1.tmp").write_text("half")  # an interrupted write of a previous run
        for name in ("04_evaluation", "05_error_analysis"):
            if name.startswith("05"):
                (run / "eval" / "figures" / ".error_rates.png.x2.tmp").write_text("half")
            papermill.execute_notebook(str(repo / "notebooks" / f"{name}.ipynb"), str(tmp_path / f"{name}-{with_data}.ipynb"),
                                       parameters={"run_dir": str(run), "n_bootstrap": 200} if name.startswith("04")
                                       else {"run_dir": str(run)}, progress_bar=False)
        out = run / "eval"
        notes = json.loads((out / "info.json").read_text())["notes"]
        assert any(f"{LLM}.jsonl:4: the last line is incomplete" in note for note in notes), notes
        table = pd.read_csv(out / "paper_claims.csv")
        assert set(table["verdict"]) == {"not testable here"}  # 3 paired examples, no oracle system
        for figure in ("flowsim_per_system", "paired_differences", "quality_cost_latency", "error_rates"):
            assert (out / "figures" / f"{figure}.png").stat().st_size > 1000
        for name in ("summary.csv", "paired.csv", "features.csv", "costs.csv"):
            header = (out / name).read_text().splitlines()[0].split(",")
            assert "flowsim" not in header, (name, header)
        summary = pd.read_csv(out / "summary.csv")
        assert set(summary["metric"]) >= {"flowsim_with_inputs", "flowsim_no_inputs"} and "arm" in summary
        tags = pd.read_parquet(out / "errors.parquet")
        assert set(tags[tags.system == LLM]["tag"]) == {"wrong_trigger_type", "invalid_json", "none"}
        assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


# --------------------------------------------------------------------------- nothing lost or changed silently

def test_an_empty_predictions_file_is_an_error_naming_it(tmp_path: Path) -> None:
    run = make_run(tmp_path / "empty")
    with PredictionWriter(predictions_path(run, "gpt-4o-zero-shot"), prompted_meta("gpt-4o-zero-shot")):
        pass  # every call failed: the file exists, with its sidecar, and holds nothing
    with pytest.raises(ValueError, match=r"gpt-4o-zero-shot.jsonl is empty: system 'gpt-4o-zero-shot' produced no"):
        evaluate_run(run, progress=False)
    predictions_path(run, "gpt-4o-zero-shot").write_text('{"id": "sn-test-0", "spl')  # only a write cut short
    with pytest.warns(DataWarning), pytest.raises(ValueError, match="holds no complete prediction"):
        evaluate_run(run, progress=False)
    ev = evaluate_run(run, [SLM, LLM], progress=False)  # naming the others is the explicit way out
    assert set(ev.systems) == {SLM, LLM}


def test_a_last_record_without_its_newline_is_scored_and_a_cut_one_is_a_note(tmp_path: Path) -> None:
    run = make_run(tmp_path / "tail")
    path = predictions_path(run, SLM)
    assert json.loads(path.read_text().splitlines()[-1])["id"] == "sn-ood-1"
    path.write_bytes(path.read_bytes().rstrip(b"\n"))
    ev = evaluate_run(run, progress=False)  # on_incomplete="error": nothing is missing
    assert "sn-ood-1" in set(ev.scores[ev.scores.system == SLM]["id"])
    assert ev.coverage.set_index(["system", "subset"]).loc[(SLM, "ood"), "status"] == "complete"
    # an unfinished last line is a write cut short: reported with file:line, and the subset is incomplete
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:40])
    with loading.data_notes() as notes:
        ev = evaluate_run(run, on_incomplete="exclude", progress=False)
    assert any(f"{SLM}.jsonl:{len(lines)}: the last line is incomplete" in n for n in notes), notes
    assert any(f"{SLM} on ood: 1 of 2" in n for n in ev.notes)


def test_stored_parse_status_and_flow_are_recomputed_not_trusted(tmp_path: Path) -> None:
    run = make_run(tmp_path / "lying")
    path = predictions_path(run, LLM)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert records[1]["id"] == "sn-test-1"
    records[1].update(output="I cannot do that.", flow=INCIDENT, parse_status="ok")  # a stored flow, a refusal
    records[0].update(flow=None, parse_status="invalid")  # a parseable output stored as invalid
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    ev = evaluate_run(run, progress=False)
    for metric in ("json_valid", "schema_valid", "trigger_match"):
        assert value(ev.scores, LLM, "sn-test-1", metric) == 0.0, metric
    assert value(ev.scores, LLM, "sn-test-0", "json_valid") == 1.0
    row = ev.predictions.set_index(["system", "id"]).loc[(LLM, "sn-test-1")]
    assert row["parse_status"] == "invalid" and pd.isna(row["flow"])


def test_a_sidecar_without_its_predictions_file_is_a_note(tmp_path: Path) -> None:
    run = make_run(tmp_path / "orphan")
    predictions_path(run, LLM).unlink()
    with loading.data_notes() as notes:
        ev = evaluate_run(run, progress=False)
    assert ev.systems == [SLM]
    assert any(f"{LLM}.meta.json: system {LLM!r} has metadata but no predictions file" in n for n in notes), notes


def test_a_record_naming_another_system_is_an_error(tmp_path: Path) -> None:
    run = make_run(tmp_path / "stranger")
    path = predictions_path(run, LLM)
    path.write_text(path.read_text().replace(f'"system": "{LLM}"', '"system": "someone-else"', 1))
    with pytest.raises(ValueError, match=r"gpt-4o-few-shot.jsonl: record 1 .* names system 'someone-else'"):
        evaluate_run(run, progress=False)


def test_unusable_traced_costs_are_unknown_with_a_note_and_glued_records_are_read(tmp_path: Path) -> None:
    run = make_run(tmp_path / "badcost")
    traces = run / "llm" / "traces"
    traces.mkdir(parents=True)
    (traces / f"{LLM}.jsonl").write_text(
        '{"id": "sn-test-0", "cost_usd": NaN, "written": true}\n'
        '{"id": "sn-test-1", "cost_usd": -5, "written": true}\n'
        '{"id": "sn-test-2", "cost_usd": 1e308, "written": true}\n')
    write_system(run, finetuned_meta("slm-inf"), {i: "{}" for i in EXAMPLES})
    (traces / "slm-inf.jsonl").write_text('{"id": "sn-test-0", "cost_usd": Infinity, "written": true}\n'
                                          '{"id": "sn-test-1", "cost_usd": "0.1", "written": true}\n'
                                          # an old writer glued a rerun's record onto a fragment
                                          '{"id": "sn-test-2", "cost_{"id": "sn-test-2", "cost_usd": 0.25, '
                                          '"written": true}\n')
    with loading.data_notes() as notes:
        ev = evaluate_run(run, progress=False)
    for system, ident in ((LLM, "sn-test-0"), (LLM, "sn-test-1"), (LLM, "sn-test-2"), ("slm-inf", "sn-test-0"),
                          ("slm-inf", "sn-test-1")):
        assert np.isnan(value(ev.scores, system, ident, "cost_usd")), (system, ident)  # unknown, never list price
    assert value(ev.scores, "slm-inf", "sn-test-2", "cost_usd") == 0.25  # the traced cost, not the local 0
    assert value(ev.scores, "slm-inf", "sn-ood-0", "cost_usd") == 0.0
    text = "\n".join(notes)
    for where in (f"{LLM}.jsonl:1", f"{LLM}.jsonl:2", f"{LLM}.jsonl:3", "slm-inf.jsonl:1", "slm-inf.jsonl:2",
                  "slm-inf.jsonl:3: a fragment"):
        assert where in text, (where, text)
    assert np.isnan(cost_table(ev.scores).set_index("system").loc[LLM, "usd_per_1000_flows"])


def test_only_loopback_endpoints_are_local_and_the_cost_reads_the_engine_record(tmp_path: Path) -> None:
    from wfutils.evaluation.costs import runs_locally
    from wfutils.llm.client import is_local_url

    for url, local in (("http://127.0.0.1:8000/v1", True), ("http://127.9.9.9/v1", True),
                       ("http://localhost:1/v1", True), ("http://[::1]:80/v1", True),
                       ("http://0.0.0.0:8000/v1", False), ("http://10.1.2.3/v1", False),
                       ("http://localhost.example.com/v1", False), ("https://api.openai.com/v1", False)):
        assert is_local_url(url) is local, url
        engine = {"name": "openai-compatible", "endpoint": url, "local": local}
        assert runs_locally(prompted_meta(engine=engine)) is local, url
    assert runs_locally(prompted_meta(engine=None)) is None  # not recorded: unknown, never a guessed 0 USD
    assert runs_locally(finetuned_meta(engine=None)) is True


def test_save_evaluation_removes_leftovers_of_interrupted_writes(tmp_path: Path) -> None:
    run = make_run(tmp_path / "leftovers")
    (run / "eval" / "figures").mkdir(parents=True)
    stale = [run / "eval" / ".summary.csv.a1b2c3.tmp", run / "eval" / "figures" / ".x.png.zz.tmp"]
    for path in stale:
        path.write_text("half")
    save_evaluation(evaluate_run(run, progress=False), run)
    assert not any(p.exists() for p in stale) and (run / "eval" / "scores.parquet").is_file()
    assert not [p for p in (run / "eval").rglob("*.tmp")]


# --------------------------------------------------------------------------- what notebooks 04 and 05 call

def test_only_restricts_every_table_to_the_systems_asked_for(tmp_path: Path) -> None:
    ev = evaluate_run(make_run(tmp_path / "tiny"), progress=False)
    assert ev.only(None) is ev
    one = ev.only([LLM])
    assert one.systems == [LLM] and set(one.metas) == {LLM}
    for frame in (one.scores, one.predictions, one.coverage):
        assert set(frame["system"].astype(str)) == {LLM}
    assert len(one.scores) == len(ev.scores[ev.scores.system == LLM]) and ev.systems == sorted([SLM, LLM])
    with pytest.raises(ValueError, match=r"systems \['nope'\] are not in the scores of .*have: \['gpt-4o-few-shot'"):
        ev.only(["nope"])
    with pytest.raises(TypeError, match="list of system names"):
        ev.only(LLM)


def test_error_rate_implicit_step_and_feature_tables_of_a_small_run(tmp_path: Path) -> None:
    from wfutils.evaluation import tables

    run = make_run(tmp_path / "tiny")
    ev = evaluate_run(run, progress=False)
    tags = error_table(ev, run, progress=False)
    rates = tables.error_rates(tags, ev.predictions)
    # The prompted system: one wrong trigger, one invalid JSON, one perfect flow (prose around it) of 3.
    assert rates.loc[LLM, "wrong_trigger_type"] == rates.loc[LLM, "invalid_json"] == rates.loc[LLM, "none"] == 1 / 3
    assert rates.loc[SLM, "none"] == 1.0 and list(rates.columns)[0] == "none"
    arms = {name: meta.arm for name, meta in ev.metas.items()}
    by_feature = tables.error_rates_by_feature(tags, ev.predictions, feature_table(ev.examples), arms)
    assert by_feature.loc[("prompted", "flow_logic"), "invalid_json"] == 1.0  # sn-test-1 is the flow-logic example
    assert by_feature.loc[("fine-tuned", "scheduled_trigger"), "none"] == 1.0
    assert tables.error_rates_by_feature(tags, ev.predictions, feature_table(ev.examples).iloc[:0], arms).empty
    # No example is tagged implicit_step in this run: an empty table; tag one and it splits the examples.
    values = ev.wide()
    assert tables.implicit_step_table(values, feature_table(ev.examples), tags, arms).empty
    features = pd.DataFrame({"id": ["sn-test-1"], "feature": ["implicit_step"]})
    implicit = tables.implicit_step_table(values, features, tags, arms, n_boot=100).set_index(["system", "examples"])
    assert implicit.loc[(LLM, "implicit_step"), "n"] == 1 and implicit.loc[(LLM, "other"), "n"] == 2
    assert implicit.loc[(SLM, "other"), "n"] == 4 and implicit.loc[(SLM, "implicit_step"), "flowsim_with_inputs"] == 1.0
    # Head to head: the fine-tuned system minus the prompted one on the three examples both predicted.
    diff = tables.head_to_head(values, SLM, LLM)
    assert len(diff) == 3 and (diff >= 0).all() and tables.head_to_head(values, SLM, None).empty
    wins, losses = tables.largest_differences(diff, ev.examples, tags, SLM, LLM, n=2)
    assert len(wins) == 2 and wins["diff"].iloc[0] == diff.max() and "invalid_json" in set(wins["prompted_tags"])
    shown = tables.worst_examples(ev, tags, n_worst=1)
    assert any("every flow it predicted is perfect" in getattr(s, "data", "") for s in shown)  # the fine-tuned one
    assert any(LLM in getattr(s, "data", "") and "Edit script" not in s.data for s in shown)


def test_figures_are_drawn_from_the_tables_and_none_for_an_empty_one(tmp_path: Path) -> None:
    from matplotlib.figure import Figure

    from wfutils.evaluation import figures, tables
    from wfutils.evaluation.store import save_figure

    run = make_run(tmp_path / "tiny")
    ev = evaluate_run(run, progress=False)
    summary = stats.summary_all_metrics(ev.scores, ["flowsim_with_inputs", "flowsim_no_inputs"], n_boot=50)
    paired = stats.paired_comparisons(ev.scores, n_boot=50)
    tags = error_table(ev, run, progress=False)
    arms = {name: meta.arm for name, meta in ev.metas.items()}
    costs = cost_table(ev.scores).assign(pareto=True)
    drawn = {"flowsim_per_system": figures.flowsim_per_system(summary),
             "paired_differences": figures.paired_differences(paired),
             "flowsim_per_feature": figures.flowsim_per_feature(
                 stats.feature_summary(ev.scores, feature_table(ev.examples), n_boot=50)),
             "quality_cost_latency": figures.quality_cost_latency(costs),
             "error_rates": figures.error_rates(tables.error_rates(tags, ev.predictions), arms),
             "error_rates_per_feature": figures.error_rates_per_feature(
                 tables.error_rates_by_feature(tags, ev.predictions, feature_table(ev.examples), arms)),
             "wins_losses": figures.wins_losses(tables.head_to_head(ev.wide(), SLM, LLM), SLM, LLM)}
    for name, figure in drawn.items():
        assert isinstance(figure, Figure), name
        assert save_figure(figure, run, name).stat().st_size > 1000
    assert figures.paired_differences(paired.iloc[:0]) is None and figures.wins_losses(pd.Series(dtype=float), SLM, LLM) is None
    assert figures.implicit_steps(pd.DataFrame()) is None and save_figure(None, run, "nothing") is None
    assert not (run / "eval" / "figures" / "nothing.png").exists()


def test_tables_as_the_book_shows_them_fit_the_page(tmp_path: Path) -> None:
    from wfutils.evaluation import tables

    assert [tables.params_label(n) for n in (134_515_008, 494_032_768, 1_543_714_304, None, 0)] == [
        "135M", "0.5B", "1.5B", "not published", "not published"]
    wide_table = pd.DataFrame(np.zeros((2, 13)), columns=[f"c{i}" for i in range(13)])
    parts = tables.split_columns(wide_table)
    assert [p.shape[1] for p in parts] == [7, 6] and [c for p in parts for c in p.columns] == list(wide_table.columns)
    assert [p.shape[1] for p in tables.split_columns(wide_table.iloc[:, :8])] == [4, 4]
    assert len(tables.split_columns(wide_table.iloc[:, :3])) == 1
    ev = evaluate_run(make_run(tmp_path / "tiny"), progress=False)
    ev.metas[LLM] = replace(ev.metas[LLM], n_params=None)  # a remote model: size not published
    systems = tables.system_table(ev)
    assert systems.loc[SLM, "n_params"] == "135M" and systems.loc[LLM, "n_params"] == "not published"
    engines = tables.engine_table(ev)
    assert engines.loc[SLM, "engine"].startswith("transformers 4.57.0") and list(engines.columns) == ["engine", "decoding"]
    metrics = ["trigger_match", "component_f1", "json_valid", "schema_valid", "truncated", "hallucinated_steps",
               "hallucinated_tables", "length_error"]
    summary = stats.summary_all_metrics(ev.scores, metrics, n_boot=50)
    shown = tables.summary_tables(summary, metrics, rows=("arm", "system", "subset"), columns=("metric",))
    assert [t.shape[1] for t in shown] == [4, 4] and [c for t in shown for c in t.columns] == metrics
    cell = shown[0].loc[("prompted", LLM, "test"), "trigger_match"]
    row = summary[(summary.system == LLM) & (summary.subset == "test") & (summary.metric == "trigger_match")].iloc[0]
    assert cell == f"{row['mean']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]"
    paired = tables.paired_table(stats.paired_comparisons(ev.scores, n_boot=50))
    assert paired.shape[1] <= tables.MAX_COLUMNS and paired.index.names == ["fine_tuned", "prompted", "subset"]
    # Notes are one collapsed admonition, never printed "NOTE:" lines; no note shows nothing.
    note = tables.notes_admonition(["a.jsonl:4: the last line is incomplete", "<b>x</b>"]).data
    assert f'class="admonition note {tables.NOTES_CLASS}"' in note and "<details>" in note and "2 notes" in note
    assert "&lt;b&gt;" in note and "NOTE:" not in note and tables.notes_admonition([]).data == ""
