"""wfutils.slm.sweep: a real (tiny) recipe sweep of SmolLM2-135M scored by validation FlowSim."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest

from tests.test_slm import PAIRS, ROOT, TINY
from wfutils.slm.sweep import (
    SWEEP_FILE,
    SWEPT_FIELDS,
    grid_points,
    main,
    point_name,
    read_sweep,
    recipe_check,
    record_sweep,
    run_sweep,
    sweep_table,
)
from wfutils.slm.training import TrainConfig, read_training_record, train_lora

BASE = {**TINY, "max_steps": 2, "eval_every": 1, "flowsim_requests": 2, "flowsim_max_new_tokens": 24,
        "loss_pairs": 2}


def test_grid_points_are_the_product_and_refuse_what_is_not_a_recipe():
    assert grid_points({"learning_rate": [1e-4, 2e-4], "lora_r": [8]}) == [
        {"learning_rate": 1e-4, "lora_r": 8}, {"learning_rate": 2e-4, "lora_r": 8}]
    with pytest.raises(ValueError, match="cannot sweep \\['max_length'\\]"):
        grid_points({"max_length": [256]})
    with pytest.raises(ValueError, match="without values: \\['lora_r'\\]"):
        grid_points({"lora_r": []})
    assert point_name(TrainConfig(lora_r=8, learning_rate=2e-4)) == "learning_rate=0.0002,lora_r=8,max_steps=None,seed=0"
    assert point_name(TrainConfig(lora_alpha=16, max_steps=60)).startswith("learning_rate=0.001,lora_alpha=16,lora_r=16")


def test_every_sweepable_field_is_a_train_config_field_of_that_type():
    annotations = {f.name: f.type for f in fields(TrainConfig)}
    for name, kind in SWEPT_FIELDS.items():
        assert str(annotations[name]).split(" |")[0] == kind.__name__, name


def test_a_sweep_scores_every_point_on_validation_grows_and_checks_a_recipe(tmp_path):
    out = tmp_path / "sweep"
    base = TrainConfig(**BASE)
    sweep = run_sweep(PAIRS[:2], PAIRS[2:], out, base, {"learning_rate": [3e-3, 1e-6]}, progress=False)
    assert len(sweep["points"]) == 2
    rows = sweep["rows"]
    assert [(r["learning_rate"], r["step"]) for r in rows] == [(3e-3, 1), (3e-3, 2), (1e-6, 1), (1e-6, 2)]
    assert all(0.0 <= r["flowsim"] <= 1.0 and r["pairs"] == r["step"] * 2 for r in rows)
    best = max(rows, key=lambda r: (r["flowsim"], -r["pairs"]))
    assert sweep["best"] == best
    on_disk = read_sweep(out)
    assert on_disk["rows"] == rows and on_disk["code_digest"] and on_disk["versions"]["torch"]
    table = sweep_table(on_disk)
    assert list(table.columns) == ["learning_rate", "step 1", "step 2"] and len(table) == 2

    best_lr = best["learning_rate"]
    other_lr = 1e-6 if best_lr == 3e-3 else 3e-3
    same = recipe_check(on_disk, TrainConfig(**{**BASE, "learning_rate": best_lr, "eval_every": 5,
                                                "flowsim_requests": 16}))
    assert same["matches_best"] and same["sentence"].startswith("This recipe is the sweep's best point")
    # 1 pair x 2 micro-batches takes the optimizer steps of 2 x 1: the same recipe
    assert recipe_check(on_disk, TrainConfig(**{**BASE, "learning_rate": best_lr, "batch_size": 1,
                                                 "grad_accum": 2}))["matches_best"]
    other = recipe_check(on_disk, TrainConfig(**{**BASE, "learning_rate": other_lr, "lora_r": 4}))
    assert not other["matches_best"]
    assert set(other["differences"]) == {"learning_rate", "lora_r"}
    assert "lora_r 4 here, 8 there" in other["sentence"] and f"learning_rate {other_lr} here" in other["sentence"]

    assert {p["code_digest"] for p in on_disk["points"].values()} == {on_disk["code_digest"]}

    # a sweep file from before points kept their own digest: its points take the file's digest, new ones their own
    for point in on_disk["points"].values():
        del point["code_digest"]
    (out / "sweep.json").write_text(json.dumps({**on_disk, "code_digest": "earlier"}))
    # more values of the same base: the finished points are reused, the grid grows
    grown = run_sweep(PAIRS[:2], PAIRS[2:], out, base, {"learning_rate": [3e-3], "seed": [1]}, progress=False)
    assert grown["grid"] == {"learning_rate": [3e-3, 1e-6], "seed": [1]}
    assert len(grown["points"]) == 3
    assert sorted(p["code_digest"] for p in grown["points"].values()) == sorted(
        ["earlier", "earlier", grown["code_digest"]])
    with pytest.raises(ValueError, match="another base configuration"):
        run_sweep(PAIRS[:2], PAIRS[2:], out, TrainConfig(**{**BASE, "max_length": 150}), {"seed": [0]},
                  progress=False)

    # the training record of a notebook-02 run carries the table and the check
    run = train_lora(PAIRS[:2], tmp_path / "slm", TrainConfig(**{**TINY, "max_steps": 1}), progress=False)
    entry = record_sweep(run.out_dir, out, TrainConfig(**{**TINY, "max_steps": 1}))
    stored = read_training_record(run.out_dir)["recipe_sweep"]
    assert stored == json.loads(json.dumps(entry)) and len(stored["rows"]) == 6
    assert stored["matches_best"] is False and "max_steps" in stored["differences"]


def test_a_sweep_needs_validation_flowsim_and_a_grid(tmp_path):
    with pytest.raises(ValueError, match="eval_every and flowsim_requests"):
        run_sweep(PAIRS, PAIRS, tmp_path, TrainConfig(**TINY), {"seed": [0]})
    with pytest.raises(ValueError, match="select_best must be False"):
        run_sweep(PAIRS, PAIRS, tmp_path, TrainConfig(**{**BASE, "select_best": True}), {"seed": [0]})
    with pytest.raises(FileNotFoundError, match="no sweep at"):
        read_sweep(tmp_path / SWEEP_FILE)
    for argv, message in ((["--run-dir", str(tmp_path)], "at least one --grid"),
                          (["--run-dir", str(tmp_path), "--grid", "max_length=1,2"], "cannot sweep"),
                          (["--run-dir", str(tmp_path), "--grid", "lora_r=eight"], "lora_r=eight")):
        with pytest.raises(SystemExit):
            main(argv)


def test_the_default_profile_trains_the_best_point_of_its_committed_sweep(tmp_path):
    from wfutils.slm.generation import GenerationConfig
    from wfutils.slm.training import notebook_configs
    from wfutils.study.pipeline import plan

    with pytest.raises(ValueError, match="recipe_sweep .*no such file"):
        GenerationConfig(recipe_sweep=str(tmp_path / "nope.json"))
    step = next(s for s in plan("default", tmp_path / "run", {}) if s.name == "02_slm_finetuning")
    config, generation = notebook_configs(step.parameters)
    sweep = read_sweep(ROOT / generation.recipe_sweep)
    check = recipe_check(sweep, config)
    assert check["matches_best"], check["sentence"]
    assert {p["device"] for p in sweep["points"].values()} and len(sweep["rows"]) >= 8
