"""The decision chapter's analysis (``wfutils.evaluation.decision``) on real predictions files scored by
``evaluate_run``: cost and latency per request, the payback volume, format validity, the data break-even and the
training-seed spread, and notebook 06 run with papermill.

Each fine-tuned system has a training record as ``train_lora`` writes it (its ``config`` is the real
``TrainConfig``), found from the adapter its sidecar names.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from wfutils.data.predictions import Prediction, PredictionWriter, SystemMeta, predictions_path
from wfutils.evaluation import decision, figures
from wfutils.evaluation.config import DecisionConfig
from wfutils.evaluation.scoring import evaluate_run
from wfutils.flows.parsing import dumps_flow
from wfutils.slm import recipe
from wfutils.slm.training import TrainConfig

ROOT = Path(__file__).resolve().parent.parent
N = 12
FLOWS = {f"sn-test-{i:02d}": {"trigger": {"type": ("daily", "weekly")[i % 2]},
                              "components": [{"order": 1, "definition": ("log", "add_work_note", "send_email")[i % 3]}]}
         for i in range(N)}
IDS = list(FLOWS)
INPROCESS = {"name": "transformers", "version": "5.24.0", "local": True, "quantisation": "float32", "threads": 2}
LLAMACPP = {"name": "llamacpp", "version": "b4000", "local": True, "quantisation": "Q4_K_M", "threads": 4}
HOSTED = {"name": "openai-compatible", "endpoint": "https://api.openai.com/v1", "local": False}


def write_data(run: Path) -> None:
    folder = run / "data" / "synthetic"
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"id": i, "request": f"request {i}", "flow": dumps_flow(f), "features": ["scheduled_trigger"],
             "domain": "servicenow"} for i, f in FLOWS.items()]
    pd.DataFrame(rows).to_parquet(folder / "test.parquet")


def wrong_trigger(ident: str) -> str:
    flow = json.loads(dumps_flow(FLOWS[ident]))
    flow["trigger"]["type"] = "weekly" if flow["trigger"]["type"] == "daily" else "daily"
    return dumps_flow(flow)


def write_system(run: Path, meta: SystemMeta, outputs: dict[str, str], latencies: list[float],
                 tokens: tuple[int, int] = (1000, 100)) -> None:
    with PredictionWriter(predictions_path(run, meta.system), meta) as writer:
        for (ident, output), latency in zip(outputs.items(), latencies):
            writer.write(Prediction.from_output(id=ident, split="test", system=meta.system, request=f"request {ident}",
                                                reference=dumps_flow(FLOWS[ident]), output=output, latency_s=latency,
                                                prompt_tokens=tokens[0], completion_tokens=tokens[1]))


def write_record(folder: Path, *, n_examples: int, seed: int, steps: int = 10, batch_size: int = 2,
                 grad_accum: int = 2, train_seconds: float = 100.0, **extra) -> None:
    """A training record with the keys ``train_lora`` writes (the ones the decision reads, and a few others)."""
    config = asdict(TrainConfig(max_steps=steps, batch_size=batch_size, grad_accum=grad_accum, seed=seed))
    record = {"status": "complete", "config": config, "base_model": "smollm2-135m", "n_examples": n_examples,
              "steps": steps, "total_steps": steps, "train_seconds": train_seconds,
              "wall_seconds_this_session": train_seconds + 30, "torch_threads": 2, "num_processes": 1,
              "loss_curve": [{"step": s, "loss": 1.0, "seconds": train_seconds / steps} for s in range(1, steps + 1)],
              "selected_by": None, "best_step": None, **extra}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "training_record.json").write_text(json.dumps(record))


def finetuned(run: Path, name: str, folder: str, outputs: dict[str, str], *, latency: float = 0.2,
              engine: dict | None = INPROCESS, **record) -> None:
    write_record(run / folder, **record)
    meta = SystemMeta(system=name, arm="fine-tuned", base_model="smollm2-135m", n_params=134_515_008,
                      adapter=f"{folder}/adapter", engine=engine)
    write_system(run, meta, outputs, [latency] * len(outputs), tokens=(50, 30))


def prompted(run: Path, name: str, outputs: dict[str, str], latencies: list[float], *, engine: dict = LLAMACPP,
             base_model: str = "qwen2.5-coder-0.5b") -> None:
    meta = SystemMeta(system=name, arm="prompted", base_model=base_model, n_params=494_032_768, strategy="few_shot",
                      k=3, engine=engine)
    write_system(run, meta, outputs, latencies)


PERFECT = {i: dumps_flow(FLOWS[i]) for i in IDS}
BROKEN = {i: "I cannot do that." for i in IDS}
HALF = {i: (dumps_flow(FLOWS[i]) if k % 2 else "not a flow") for k, i in enumerate(IDS)}


@pytest.fixture()
def curve_run(tmp_path: Path) -> Path:
    """Fine-tuned smollm2 at 8, 20 and 40 pairs (two seeds at 40), a weaker and a perfect prompted system."""
    run = tmp_path / "curve"
    write_data(run)
    finetuned(run, "ft-8", "ft/n8", BROKEN, n_examples=8, seed=0)
    finetuned(run, "ft-20", "ft/n20", HALF, n_examples=20, seed=0)
    finetuned(run, "ft-40-s0", "ft/n40s0", PERFECT, n_examples=40, seed=0)
    finetuned(run, "ft-40-s1", "ft/n40s1", {**PERFECT, IDS[0]: "oops"}, n_examples=40, seed=1)
    prompted(run, "qwen-few-shot", {i: wrong_trigger(i) for i in IDS}, [1.0 + k / 10 for k in range(N)])
    prompted(run, "qwen-oracle", PERFECT, [2.0] * N)
    return run


# --------------------------------------------------------------------------- training facts

def test_training_facts_come_from_the_record_beside_the_adapter(curve_run: Path) -> None:
    ev = evaluate_run(curve_run, progress=False)
    facts = decision.training_facts(curve_run, ev.metas)
    assert sorted(facts) == ["ft-20", "ft-40-s0", "ft-40-s1", "ft-8"]  # prompted systems have none
    # 10 steps of 2 x 2 pairs see 40 pairs: all of a set of 8 or 20, all 40 of 40.
    assert {name: (f.pairs, f.training_set, f.seed) for name, f in facts.items()} == {
        "ft-8": (8, 8, 0), "ft-20": (20, 20, 0), "ft-40-s0": (40, 40, 0), "ft-40-s1": (40, 40, 1)}
    assert facts["ft-8"].record == "ft/n8/training_record.json"
    assert facts["ft-8"].train_cpu_seconds == 200.0  # 100 s on 2 threads
    assert decision.has_learning_curve(facts) and decision.has_seed_spread(facts)
    del facts["ft-20"]
    assert not decision.has_learning_curve(facts)


def test_a_checkpoint_and_a_kept_best_step_say_how_far_training_went(tmp_path: Path) -> None:
    run = tmp_path / "ckpt"
    write_data(run)
    # The final adapter kept the best validation step (3 of 10): 3 steps x 4 pairs = 12 of 400 pairs seen,
    # while the one-off cost is the whole training (every step was run to find the best).
    finetuned(run, "ft-best", "slm", PERFECT, n_examples=400, seed=0, selected_by="flowsim", best_step=3)
    # A checkpoint of one training: its own global step, and the training time up to that step.
    checkpoint = run / "slm" / "checkpoints" / "checkpoint-5"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": 5}))
    meta = SystemMeta(system="ft-step5", arm="fine-tuned", base_model="smollm2-135m", n_params=134_515_008,
                      adapter="slm/checkpoints/checkpoint-5", engine=INPROCESS)
    write_system(run, meta, HALF, [0.2] * N)
    facts = decision.training_facts(run, evaluate_run(run, progress=False).metas)
    assert (facts["ft-best"].steps, facts["ft-best"].pairs, facts["ft-best"].train_seconds) == (3, 12, 100.0)
    assert (facts["ft-step5"].steps, facts["ft-step5"].pairs, facts["ft-step5"].train_seconds) == (5, 20, 50.0)
    assert facts["ft-step5"].record == "slm/training_record.json"


def test_a_record_without_the_numbers_is_an_error_naming_it(tmp_path: Path) -> None:
    run = tmp_path / "bad"
    write_data(run)
    finetuned(run, "ft", "slm", PERFECT, n_examples=40, seed=0)
    record = json.loads((run / "slm" / "training_record.json").read_text())
    del record["n_examples"], record["train_seconds"]
    (run / "slm" / "training_record.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"slm/training_record.json: training record lacks n_examples, train_seconds"):
        decision.training_facts(run, evaluate_run(run, progress=False).metas)


# --------------------------------------------------------------------------- cost, latency and payback

def cost_run(tmp_path: Path) -> Path:
    run = tmp_path / "costs"
    write_data(run)
    finetuned(run, "ft", "slm", PERFECT, n_examples=40, seed=0, latency=0.2)  # 0.2 s x 2 threads = 0.4 CPU-s
    prompted(run, "qwen-local", {i: wrong_trigger(i) for i in IDS}, [1.0 + k / 10 for k in range(N)])  # 4 threads
    prompted(run, "tiny-fast", {i: wrong_trigger(i) for i in IDS}, [0.05] * N,
             engine={**LLAMACPP, "threads": 1})  # 0.05 CPU-s: cheaper per request than the fine-tuned model
    prompted(run, "gpt-4o-few-shot", {i: wrong_trigger(i) for i in IDS}, [3.0] * N, engine=HOSTED,
             base_model="gpt-4o")
    return run


def test_cost_and_latency_per_request_and_the_payback_volume(tmp_path: Path) -> None:
    run = cost_run(tmp_path)
    ev = evaluate_run(run, progress=False)
    facts = decision.training_facts(run, ev.metas)
    costs = decision.request_costs(ev.scores, ev.metas, facts)
    local = costs.loc["qwen-local"]
    latencies = np.array([1.0 + k / 10 for k in range(N)])
    assert local["latency_p50_s"] == pytest.approx(np.median(latencies))
    assert local["latency_p95_s"] == pytest.approx(np.quantile(latencies, 0.95))
    assert local["cpu_s_per_1m"] == pytest.approx(latencies.mean() * 4 * 1e6)
    assert math.isnan(local["usd_per_1k"])  # a local system costs CPU time, not dollars
    hosted = costs.loc["gpt-4o-few-shot"]
    assert hosted["usd_per_1m"] == pytest.approx((1000 * 2.50 + 100 * 10.00) / 1e6 * 1e6)  # the list price
    assert math.isnan(hosted["cpu_s_per_1k"])
    assert costs.loc["ft", "one_off_cpu_s"] == 200.0 and costs.loc["ft", "one_off_wall_s"] == 130.0

    payback = decision.payback_table(costs, "ft", ["qwen-local", "tiny-fast", "gpt-4o-few-shot"]).set_index("prompted")
    saving = latencies.mean() * 4 - 0.4
    assert payback.loc["qwen-local", "payback_requests"] == pytest.approx(200.0 / saving)
    assert payback.loc["tiny-fast", "payback_requests"] == math.inf
    assert math.isnan(payback.loc["gpt-4o-few-shot", "payback_requests"])
    sentences = {row["prompted"]: decision.payback_sentence(row) for _, row in payback.reset_index().iterrows()}
    assert f"paid back after about {math.ceil(200.0 / saving):,} requests" in sentences["qwen-local"]
    assert "never, within this run's measurements" in sentences["tiny-fast"]
    assert "set usd_per_cpu_hour" in sentences["gpt-4o-few-shot"]

    priced = decision.payback_table(costs, "ft", ["gpt-4o-few-shot"], usd_per_cpu_hour=0.036).iloc[0]
    assert priced["unit"] == decision.USD
    assert priced["one_off"] == pytest.approx(200 * 0.036 / 3600)
    assert priced["payback_requests"] == pytest.approx((200 * 0.036 / 3600) / (0.0035 - 0.4 * 0.036 / 3600))
    assert figures.cumulative_cost(payback.reset_index()) is not None

    shown = decision.costs_for_book(costs)
    cpu_hours = latencies.mean() * 4 * 1e6 / 3600
    assert shown.loc["qwen-local", "cpu_h_per_1m"] == f"{cpu_hours:,.{max(0, 2 - math.floor(math.log10(cpu_hours)))}f}"
    assert shown.loc["gpt-4o-few-shot", "usd_per_1m"] == "$3,500" and shown.loc["qwen-local", "usd_per_1k"] == "–"
    assert shown.loc["ft", "one_off_cpu_s"] == "200"

    glued = decision.decision_glue(costs, payback.reset_index(), decision.validity_table(ev.scores, n_boot=100),
                                   "ft", "qwen-local")
    assert glued["decision_payback_requests"] == pytest.approx(200.0 / saving)
    assert glued["decision_finetuned_schema_valid"] == 1.0


def test_unrecorded_threads_or_place_make_cost_unknown_never_zero(tmp_path: Path) -> None:
    run = tmp_path / "unknown"
    write_data(run)
    finetuned(run, "ft", "slm", PERFECT, n_examples=40, seed=0, engine={**INPROCESS, "threads": None})
    prompted(run, "somewhere", {i: wrong_trigger(i) for i in IDS}, [1.0] * N, engine=None)
    ev = evaluate_run(run, progress=False)
    costs = decision.request_costs(ev.scores, ev.metas, decision.training_facts(run, ev.metas))
    assert costs.loc["ft", "unknown"] == "engine threads not recorded"
    assert costs.loc["somewhere", "unknown"] == "where it ran is not recorded"
    assert costs[["cpu_s_per_1k", "usd_per_1k"]].isna().all().all()
    row = decision.payback_table(costs, "ft", ["somewhere"]).iloc[0]
    assert "not measurable in this run (ft: engine threads not recorded)" in decision.payback_sentence(row)
    assert figures.cumulative_cost(decision.payback_table(costs, "ft", ["somewhere"])) is None


# --------------------------------------------------------------------------- format validity

def test_validity_rates_are_the_parse_statuses_with_intervals(curve_run: Path) -> None:
    ev = evaluate_run(curve_run, progress=False)
    table = decision.validity_table(ev.scores, n_boot=200)
    statuses = ev.predictions.groupby("system")["parse_status"]
    assert table["json_valid"].to_dict() == pytest.approx(statuses.apply(lambda s: (s == "ok").mean()).to_dict())
    assert table.loc["ft-20", "json_valid"] == 0.5 and table.loc["ft-8", "schema_valid"] == 0.0
    assert (table["n"] == N).all()
    for metric in decision.VALIDITY:
        low, mean, high = table[f"{metric}_low"], table[metric], table[f"{metric}_high"]
        assert ((low <= mean + 1e-12) & (mean <= high + 1e-12)).all()
    assert 0 < table.loc["ft-20", "json_valid_low"] < 0.5 < table.loc["ft-20", "json_valid_high"] < 1
    shares = decision.parse_status_shares(ev.predictions)
    assert shares.sum(axis=1).to_numpy() == pytest.approx(1.0)
    assert "0.500 [" in decision.validity_for_book(table).loc["ft-20", "json_valid_ci"]
    assert figures.validity_beside_quality(table) is not None


# --------------------------------------------------------------------------- break-even and seed spread

def test_break_even_says_from_how_many_pairs_the_fine_tuned_model_is_ahead(curve_run: Path) -> None:
    ev = evaluate_run(curve_run, progress=False)
    facts = decision.training_facts(curve_run, ev.metas)
    values = ev.wide()
    curve = decision.learning_curve(values, facts, ["qwen-few-shot", "qwen-oracle"], n_boot=200)
    assert curve["pairs"].tolist() == [8, 20, 40]
    assert curve.loc[curve.pairs == 40, "seeds"].item() == "0, 1"
    assert curve.loc[curve.pairs == 40, "mean"].item() == pytest.approx(
        values[["ft-40-s0", "ft-40-s1"]].mean(axis=1).mean())
    assert curve.loc[curve.pairs == 8, "mean"].item() == 0.0
    table = decision.break_even(values, facts, ["qwen-few-shot", "qwen-oracle"], n_boot=200)
    ahead = table.set_index(["prompted", "pairs"])["ahead"]
    assert not ahead["qwen-few-shot", 8] and ahead["qwen-few-shot", 40]
    assert not ahead["qwen-oracle"].any()
    first = min(p for p in (8, 20, 40) if all(ahead["qwen-few-shot", q] for q in (8, 20, 40) if q >= p))
    sentences = decision.break_even_sentences(table)
    assert (f"Fine-tuned smollm2-135m is ahead of qwen-few-shot beyond the 95% interval from {first:,} labelled "
            "pairs on") in sentences[0]
    assert "is not ahead of qwen-oracle beyond the 95% interval within this run's budget" in sentences[1]
    levels = decision.prompted_levels(values, facts, ["qwen-few-shot", "qwen-oracle"], n_boot=200)
    assert levels.set_index("system").loc["qwen-oracle", "mean"] == 1.0
    assert figures.break_even(curve, levels) is not None


def test_seed_spread_stands_beside_the_bootstrap_interval(curve_run: Path) -> None:
    ev = evaluate_run(curve_run, progress=False)
    facts = decision.training_facts(curve_run, ev.metas)
    values = ev.wide()
    spread = decision.seed_spread(values, facts, n_boot=200)
    assert len(spread) == 1  # only 40 pairs were trained with two seeds
    row = spread.iloc[0]
    means = values[["ft-40-s0", "ft-40-s1"]].mean()
    assert (row["pairs"], row["steps"], row["n_seeds"], row["seeds"]) == ("40, 40", "10, 10", 2, "0, 1")
    assert row["mean"] == pytest.approx(means.mean()) and row["seed_sd"] == pytest.approx(means.std(ddof=1))
    assert (row["seed_min"], row["seed_max"]) == (pytest.approx(means.min()), pytest.approx(means.max()))
    assert row["ci_low"] <= row["mean"] <= row["ci_high"]


def test_seeds_of_one_recipe_form_a_spread_whatever_step_each_kept(tmp_path: Path) -> None:
    """Checkpoint selection is part of the recipe: a seed may keep another step. A changed setting is another
    recipe, and learning-curve checkpoints of one training are not seeds."""
    run = tmp_path / "seeds"
    write_data(run)
    finetuned(run, "ft-s0", "slm", PERFECT, n_examples=400, seed=0, selected_by="flowsim", best_step=10)
    finetuned(run, "ft-s1", "slm/ft-s1", {**PERFECT, IDS[0]: "oops"}, n_examples=400, seed=1, selected_by="flowsim",
              best_step=5)
    ev = evaluate_run(run, progress=False)
    facts = decision.training_facts(run, ev.metas)
    assert facts["ft-s0"].recipe == facts["ft-s1"].recipe and facts["ft-s1"].record == "slm/ft-s1/training_record.json"
    # The recipe notebook 02 writes into a system's metadata is the one read from its record here.
    record = json.loads((run / "slm" / "ft-s1" / "training_record.json").read_text())
    assert recipe.record_recipe(record, train_corpus="synthetic") == facts["ft-s1"].recipe
    assert recipe.record_recipe(record, train_corpus="n8n") != facts["ft-s1"].recipe
    # A learning-curve adapter of the named training belongs to that training's record, not to slm/'s.
    from wfutils.evaluation.companion import training_record
    assert training_record(run, "slm/ft-s1/curve/step-5")[1] == "slm/ft-s1/training_record.json"
    assert training_record(run, "slm/curve/step-5")[1] == "slm/training_record.json"
    spread = decision.seed_spread(ev.wide(), facts, n_boot=200)
    assert spread[["pairs", "steps", "seeds"]].values.tolist() == [["40, 20", "10, 5", "0, 1"]]
    assert recipe.training_recipe({"seed": 0, "learning_rate": 1e-3}, 400) == \
        recipe.training_recipe({"seed": 3, "learning_rate": 1e-3, "keep_steps": [2]}, 400)
    for other in (recipe.training_recipe({"seed": 1, "learning_rate": 2e-3}, 400),
                  recipe.training_recipe({"seed": 1, "learning_rate": 1e-3}, 200),
                  recipe.training_recipe({"seed": 1, "learning_rate": 1e-3}, 400, checkpoint_step=3)):
        assert other != recipe.training_recipe({"seed": 0, "learning_rate": 1e-3}, 400)
    (run / "slm" / "ft-s1" / "training_record.json").write_text(
        (run / "slm" / "ft-s1" / "training_record.json").read_text().replace('"learning_rate": 0.001', '"learning_rate": 0.002'))
    facts = decision.training_facts(run, ev.metas)
    assert not decision.has_seed_spread(facts) and decision.seed_spread(ev.wide(), facts, n_boot=200).empty


def test_one_adapter_decoded_another_way_or_twice_is_no_further_seed() -> None:
    def fact(system: str, seed: int, decoding: str = "greedy", recipe: str = "r") -> decision.TrainingFacts:
        return decision.TrainingFacts(system=system, base_model="m", pairs=40, training_set=40, seed=seed, steps=10,
                                      train_seconds=1.0, wall_seconds=None, threads=1,
                                      record="slm/training_record.json", recipe=recipe, decoding=decoding)

    facts = {f.system: f for f in (fact("ft-s0", 0), fact("ft-s1", 1), fact("ft-s2-constrained", 2, "constrained"),
                                   fact("ft-s0-again", 0), fact("ft-s0-step5", 0, recipe="r-step5"))}
    # a learning-curve point (another recipe) answered only the first request: the spread still covers both
    values = pd.DataFrame({"ft-s0": [0.5, 0.7], "ft-s1": [0.6, 0.8], "ft-s2-constrained": [0.0, 0.0],
                           "ft-s0-again": [0.9, 0.9], "ft-s0-step5": [0.1, np.nan]})
    spread = decision.seed_spread(values, facts, n_boot=100)
    assert spread[["n_seeds", "seeds", "n"]].values.tolist() == [[2, "0, 1", 2]]
    assert spread.iloc[0]["mean"] == pytest.approx(0.65)
    assert not decision.has_seed_spread({s: facts[s] for s in ("ft-s0", "ft-s2-constrained", "ft-s0-again")})


def test_decision_config_refuses_a_bad_price() -> None:
    from wfutils.config import ConfigError

    assert DecisionConfig(usd_per_cpu_hour=0.05).usd_per_cpu_hour == 0.05
    for bad, message in ((-1.0, "usd_per_cpu_hour must be a finite price >= 0"), ("cheap", "float or None")):
        with pytest.raises(ConfigError, match=message):
            DecisionConfig(usd_per_cpu_hour=bad)


# --------------------------------------------------------------------------- the chapter

@pytest.mark.integration
def test_notebook_06_runs_on_a_small_run_and_glues_its_numbers(curve_run: Path, tmp_path: Path) -> None:
    import papermill

    out = tmp_path / "06.ipynb"
    papermill.execute_notebook(str(ROOT / "notebooks" / "06_decision.ipynb"), str(out),
                               parameters={"run_dir": str(curve_run), "n_bootstrap": 200}, progress_bar=False)
    folder = curve_run / "eval"
    for name in ("decision_costs.csv", "decision_payback.csv", "decision_validity.csv", "decision_break_even.csv",
                 "decision_seeds.csv"):
        assert (folder / name).stat().st_size > 100, name
    for name in ("cumulative_cost", "validity_beside_quality", "break_even"):
        assert (folder / "figures" / f"{name}.png").stat().st_size > 1000, name
    payback = pd.read_csv(folder / "decision_payback.csv").set_index(["fine_tuned", "prompted"])
    # Several fine-tuned systems and no validation split to choose between them: every one is weighed.
    assert set(payback.index.get_level_values(0)) == {"ft-8", "ft-20", "ft-40-s0", "ft-40-s1"}
    assert np.isfinite(payback.loc[("ft-40-s0", "qwen-few-shot"), "payback_requests"])
    executed = nbformat.read(out, as_version=4)
    text = json.dumps([cell.get("outputs", []) for cell in executed.cells])
    assert "paid back after about" in text and "beyond the 95% interval from" in text
    assert "Seed-averaged, 95% CI over requests" in text
    glued = {output["metadata"]["scrapbook"]["name"] for cell in executed.cells for output in cell.get("outputs", [])
             if "scrapbook" in output.get("metadata", {})}
    assert {"decision_payback_sentence", "decision_finetuned_json_valid", "decision_one_off_cpu_s"} <= glued


def test_learning_curve_points_are_scored_for_the_break_even_only(tmp_path: Path) -> None:
    from wfutils.evaluation.selection import comparison_setup

    run = tmp_path / "points"
    write_data(run)
    # One training of 10 steps (2 x 2 pairs a step, 400 pairs in the set) and two of its adapters as curve points
    # that answered only the first half of the paired requests.
    finetuned(run, "ft", "slm", PERFECT, n_examples=400, seed=0)
    half = IDS[:N // 2]
    for step, outputs in ((2, BROKEN), (5, HALF)):
        folder = run / "slm" / "curve" / f"step-{step}"
        folder.mkdir(parents=True)
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
        meta = SystemMeta(system=f"ft-step{step}", arm="fine-tuned", base_model="smollm2-135m", n_params=134_515_008,
                          adapter=f"slm/curve/step-{step}", engine=INPROCESS, learning_curve=True)
        write_system(run, meta, {i: outputs[i] for i in half}, [0.2] * len(half))
    prompted(run, "qwen-few-shot", {i: wrong_trigger(i) for i in IDS}, [1.0] * N)
    ev = evaluate_run(run, on_incomplete="intersect", progress=False)
    assert sorted(ev.metas) == ["ft", "qwen-few-shot"] and ev.scores["id"].nunique() == N  # the comparison: all N
    setup = comparison_setup(ev.scores, ev.selection_scores)
    values, metas = decision.with_curve_points(run, ev, setup)
    assert sorted(metas) == ["ft", "ft-step2", "ft-step5", "qwen-few-shot"]
    assert values.loc[half, "ft-step2"].notna().all() and values.loc[IDS[N // 2:], "ft-step2"].isna().all()
    assert values["ft"].equals(setup.values["ft"])  # the comparison's own values are untouched
    facts = decision.training_facts(run, metas)
    assert {name: f.pairs for name, f in facts.items()} == {"ft": 40, "ft-step2": 8, "ft-step5": 20}
    curve = decision.learning_curve(values, facts, setup.prompted, n_boot=200)
    assert list(curve["pairs"]) == [8, 20, 40] and set(curve["n"]) == {N // 2}  # every point on the same requests
    assert curve["mean"].is_monotonic_increasing
    # A run without curve points gives the comparison back as it is.
    plain = tmp_path / "plain"
    write_data(plain)
    finetuned(plain, "ft", "slm", PERFECT, n_examples=400, seed=0)
    prompted(plain, "qwen-few-shot", PERFECT, [1.0] * N)
    ev = evaluate_run(plain, progress=False)
    setup = comparison_setup(ev.scores, ev.selection_scores)
    values, metas = decision.with_curve_points(plain, ev, setup)
    assert values is setup.values and sorted(metas) == ["ft", "qwen-few-shot"]


def test_only_a_fine_tuned_system_can_be_a_learning_curve_point() -> None:
    with pytest.raises(ValueError, match="only a fine-tuned system"):
        SystemMeta(system="p", arm="prompted", base_model="m", n_params=1, learning_curve=True)
