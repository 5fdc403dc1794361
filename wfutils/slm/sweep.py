"""A recipe sweep on the validation split: LoRA runs over a grid of training settings, each scored by its greedy
validation FlowSim at every evaluation step (:class:`wfutils.slm.validation.ValidationFlowSim`).

Every point of the grid is an ordinary :func:`wfutils.slm.training.train_lora` run in ``<out_dir>/points/<name>/``
(finished points are reused, an interrupted one resumes from its checkpoint), and ``<out_dir>/sweep.json`` is
rewritten after each point: the base configuration, the swept values, one row per (point, evaluation step),
the best row, versions, code digest, device and timings. A sweep folder grows: running it again with more
values adds their points, provided the base configuration is the same.

Notebook 02 reads a finished ``sweep.json`` (its ``recipe_sweep`` parameter), shows the table and stores it in
the training record, saying whether the notebook's recipe is the sweep's best point (:func:`recipe_check`).

    python -m wfutils.slm.sweep --run-dir results/default --out-dir results/sweeps/mine \\
        --base-model qwen2.5-coder-0.5b --max-steps 60 --eval-every 15 --flowsim-requests 64 \\
        --grid learning_rate=1e-4,2e-4,4e-4 --grid lora_r=8,16,32
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from wfutils import provenance
from wfutils.slm.training import TrainConfig, train_lora
from wfutils.storage import atomic_write_json
from wfutils.weights import file_sha256

__all__ = ["SWEEP_FILE", "SWEPT_FIELDS", "grid_points", "point_name", "run_sweep", "read_sweep", "sweep_rows",
           "sweep_table", "recipe_check", "record_sweep", "show_recipe_sweep"]

SWEEP_FILE = "sweep.json"
#: TrainConfig fields a sweep may vary: what shapes the trained adapter, not how it is evaluated or stored.
SWEPT_FIELDS: dict[str, type] = {
    "learning_rate": float, "lora_r": int, "lora_alpha": int, "lora_dropout": float, "max_steps": int,
    "warmup_steps": int, "lr_schedule": str, "weight_decay": float, "batch_size": int, "grad_accum": int, "seed": int,
}
# Fields that only say how a run is evaluated, stored or computed: a recipe is the same whatever their values.
_NOT_RECIPE = ("eval_every", "select_best", "select_metric", "flowsim_requests", "flowsim_batch_size",
               "flowsim_max_new_tokens", "loss_pairs", "keep_steps", "checkpoint_every", "num_threads", "bf16",
               "gradient_checkpointing")


def grid_points(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values (the first field varies slowest), as TrainConfig overrides.

    Raises ValueError naming a field that is not sweepable or a field without values."""
    unknown = [name for name in grid if name not in SWEPT_FIELDS]
    if unknown:
        raise ValueError(f"cannot sweep {unknown}: sweepable TrainConfig fields are {list(SWEPT_FIELDS)}")
    empty = [name for name, values in grid.items() if not list(values)]
    if empty:
        raise ValueError(f"grid fields without values: {empty}")
    names = list(grid)
    return [dict(zip(names, combo)) for combo in itertools.product(*(list(grid[n]) for n in names))]


def point_name(config: TrainConfig) -> str:
    """A grid point's folder name, the same whichever sweep invocation trains it: its learning rate, rank, steps
    and seed, and every other sweepable field that differs from TrainConfig's default
    (``learning_rate=0.0002,lora_r=16,max_steps=60,seed=0``)."""
    defaults = TrainConfig().to_dict()
    values = config.to_dict()
    keep = [k for k in SWEPT_FIELDS if k in ("learning_rate", "lora_r", "max_steps", "seed") or values[k] != defaults[k]]
    return ",".join(f"{k}={values[k]}" for k in sorted(keep))


def _recipe(config: TrainConfig) -> dict[str, Any]:
    data = config.to_dict()
    return {k: v for k, v in data.items() if k not in _NOT_RECIPE}


def _comparable(recipe: Mapping[str, Any]) -> dict[str, Any]:
    """A recipe with its micro-batch split folded into pairs per optimizer step: 1 x 4 and 2 x 2 take the same
    steps (the trainer's length-grouped sampler groups batch_size x grad_accum pairs), only memory differs."""
    folded = {k: v for k, v in recipe.items() if k not in ("batch_size", "grad_accum")}
    folded["pairs_per_step"] = recipe["batch_size"] * recipe["grad_accum"]
    return folded


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_sweep(
    train_rows: Iterable[Mapping[str, Any]],
    eval_rows: Iterable[Mapping[str, Any]],
    out_dir: str | os.PathLike[str],
    base: TrainConfig,
    grid: Mapping[str, Sequence[Any]],
    *,
    progress: bool = True,
    force: bool = False,
    label: str | None = None,
) -> dict[str, Any]:
    """Train every grid point of ``base`` (overridden by ``grid``) and score it on the validation split;
    returns the sweep (what ``sweep.json`` holds). ``eval_rows`` is the training corpus's validation split."""
    if not base.eval_every or not base.flowsim_requests:
        raise ValueError("a sweep scores validation FlowSim: give the base configuration eval_every and "
                         "flowsim_requests > 0")
    if base.select_best or base.keep_steps:
        raise ValueError("a sweep point keeps its last adapter and no curve points: base select_best must be False "
                         "and keep_steps empty")
    points = grid_points(grid)
    configs = [TrainConfig(**{**base.to_dict(), **point}) for point in points]  # every point checked before training
    out_dir = Path(out_dir)
    path = out_dir / SWEEP_FILE
    base_key = _digest({k: v for k, v in base.to_dict().items() if k not in SWEPT_FIELDS})
    sweep = read_sweep(path) if path.is_file() else None
    if sweep is not None and sweep["base_key"] != base_key:
        raise ValueError(f"{path} holds a sweep of another base configuration; use another out_dir "
                         f"(or delete it) to sweep this one")
    train_rows, eval_rows = list(train_rows), list(eval_rows)
    if not eval_rows:
        raise ValueError("the validation split is empty: nothing to score the sweep on")
    sweep = sweep or {"label": label, "base_key": base_key, "base_config": base.to_dict(), "grid": {},
                      "points": {}, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    for point in sweep["points"].values():  # points of a sweep file written before points kept their own digest
        point.setdefault("code_digest", sweep.get("code_digest"))
    for name, values in grid.items():
        known = sweep["grid"].setdefault(name, [])
        known += [v for v in values if v not in known]
    for point, config in zip(points, configs):
        name = point_name(config)
        started = time.perf_counter()
        result = train_lora(train_rows, out_dir / "points" / name, config, eval_rows=eval_rows,
                            progress=progress, force=force)
        record = result.record
        result.release()  # before the next point loads its own model
        sweep["points"][name] = {
            "values": point, "recipe": _recipe(config), "fingerprint": record["fingerprint"],
            "steps": record["steps"], "pairs_per_step": config.batch_size * config.grad_accum * record["num_processes"],
            "train_seconds": record["train_seconds"], "tokens_per_s": record["tokens_per_s"],
            "seconds": round(time.perf_counter() - started, 1), "reused": result.reused, "device": record["device"],
            "validation_curve": record["validation_curve"], "n_flowsim_requests": record["n_flowsim_requests"],
            "code_digest": record["code_digest"], "commit": provenance.git_commit(),
        }
        _finish(sweep)
        atomic_write_json(path, sweep, indent=1)
        if progress:
            best = max((r["flowsim"] for r in record["validation_curve"] if r["flowsim"] is not None), default=None)
            print(f"sweep point {name}: best validation FlowSim {best} ({sweep['points'][name]['seconds']} s)",
                  flush=True)
    return sweep


def _finish(sweep: dict[str, Any]) -> None:
    rows = sweep_rows(sweep)
    scored = [r for r in rows if r["flowsim"] is not None]
    # highest FlowSim; ties go to fewer pairs (cheaper), then to the first point in name order (max keeps the first)
    sweep["best"] = max(scored, key=lambda r: (r["flowsim"], -r["pairs"]), default=None)
    sweep["rows"] = rows
    sweep["code_digest"] = provenance.code_digest()
    sweep["versions"] = provenance.version_record()
    sweep["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")


def sweep_rows(sweep: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per (point, evaluated step): the values of every field the sweep varies, step, pairs seen,
    validation FlowSim, parse rate and loss."""
    rows = []
    for name, point in sorted(sweep["points"].items()):
        values = {k: point["recipe"][k] for k in sweep["grid"]}
        for entry in point["validation_curve"]:
            rows.append({"point": name, **values, "step": entry["step"],
                         "pairs": entry["step"] * point["pairs_per_step"], "flowsim": entry["flowsim"],
                         "parsed": entry["parsed"], "loss": entry["loss"]})
    return rows


def read_sweep(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A sweep written by :func:`run_sweep` (a ``sweep.json`` file or the folder holding it)."""
    path = _sweep_file(path)
    if not path.is_file():
        raise FileNotFoundError(f"no sweep at {path}: run python -m wfutils.slm.sweep first")
    sweep = json.loads(path.read_text(encoding="utf-8"))
    missing = [k for k in ("base_key", "base_config", "grid", "points") if k not in sweep]
    if missing:
        raise ValueError(f"{path} is not a sweep written by wfutils.slm.sweep (missing {missing})")
    return sweep


def sweep_table(sweep: Mapping[str, Any]):
    """The sweep as a DataFrame: one row per swept point, one column of validation FlowSim per evaluated step."""
    import pandas as pd

    rows = pd.DataFrame(sweep_rows(sweep))
    if rows.empty:
        return rows
    keys = [name for name in sweep["grid"]]
    table = rows.pivot_table(index=keys, columns="step", values="flowsim", aggfunc="first")
    table.columns = [f"step {c}" for c in table.columns]
    return table.reset_index()


def recipe_check(sweep: Mapping[str, Any], config: TrainConfig) -> dict[str, Any]:
    """Whether ``config`` is the sweep's best point: the swept values and the steps match it and every other
    training setting is the sweep's base. Returns the best row, the differences and a sentence."""
    best = sweep.get("best")
    if best is None:
        return {"best": None, "matches_best": False, "differences": {},
                "sentence": "the sweep has no scored point yet"}
    point = sweep["points"][best["point"]]
    mine, best_recipe = _comparable(_recipe(config)), _comparable(point["recipe"])
    differences = {k: {"recipe": mine.get(k), "sweep_best": v} for k, v in best_recipe.items() if mine.get(k) != v}
    swept = ", ".join(f"{k} {point['recipe'][k]}" for k in sweep["grid"])
    where = (f"the sweep's best validation FlowSim {best['flowsim']:.3f} ({best.get('parsed', 0):.0%} parsed) was "
             f"{swept} at step {best['step']} of {point['steps']} ({best['pairs']} pairs seen), on the first "
             f"{point['n_flowsim_requests']} validation requests")
    if differences:
        listed = "; ".join(f"{k} {d['recipe']} here, {d['sweep_best']} there" for k, d in differences.items())
        sentence = f"This recipe is not the sweep's best point: {where}. It differs in {listed}."
    else:
        sentence = f"This recipe is the sweep's best point: {where}."
    return {"best": best, "matches_best": not differences, "differences": differences, "sentence": sentence}


def record_sweep(out_dir: str | os.PathLike[str], sweep_path: str | os.PathLike[str],
                 config: TrainConfig) -> dict[str, Any]:
    """Store a sweep's table and :func:`recipe_check` of ``config`` in the training record of ``out_dir``
    (key ``recipe_sweep``); returns that entry."""
    return _record_sweep(out_dir, _sweep_file(sweep_path), read_sweep(sweep_path), config)


def _sweep_file(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    return path / SWEEP_FILE if path.is_dir() else path


def _record_sweep(out_dir: str | os.PathLike[str], sweep_path: Path, sweep: Mapping[str, Any],
                  config: TrainConfig) -> dict[str, Any]:
    from wfutils.slm.training import RECORD_FILE, read_training_record

    entry = {"path": str(sweep_path), "sha256": file_sha256(sweep_path),
             "label": sweep.get("label"), "code_digest": sweep.get("code_digest"),
             "devices": sorted({p["device"] for p in sweep["points"].values()}),
             "rows": sweep_rows(sweep), **recipe_check(sweep, config)}
    record = read_training_record(out_dir)
    record["recipe_sweep"] = entry
    atomic_write_json(Path(out_dir) / RECORD_FILE, record, indent=1)
    return entry


def show_recipe_sweep(out_dir: str | os.PathLike[str], sweep_path: str | os.PathLike[str] | None,
                      config: TrainConfig):
    """Notebook 02's recipe section: record the sweep in the training record (:func:`record_sweep`), print whether
    ``config`` is its best point and return its table (None, with a sentence, when no sweep is given)."""
    if not sweep_path:
        print("no recipe_sweep given: the recipe was not chosen by a sweep on the validation split")
        return None
    sweep = read_sweep(sweep_path)
    check = _record_sweep(out_dir, _sweep_file(sweep_path), sweep, config)
    print(check["sentence"], f"(sweep run on {', '.join(check['devices'])})")
    return sweep_table(sweep)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """The command line: notebook 02's training flags (``python -m wfutils.slm``) plus ``--grid field=v1,v2``."""
    from wfutils.data.store import load_run_data, training_data
    from wfutils.slm.__main__ import build_parser

    parser = build_parser()
    parser.prog = "python -m wfutils.slm.sweep"
    parser.description = __doc__.splitlines()[0]
    parser.add_argument("--grid", action="append", default=[], metavar="FIELD=V1,V2",
                        help=f"values of one sweepable field ({', '.join(SWEPT_FIELDS)}); repeat for a grid")
    parser.add_argument("--label", default=None, help="what the sweep is for (stored in sweep.json)")
    args = vars(parser.parse_args(argv))
    grid: dict[str, list[Any]] = {}
    for spec in args.pop("grid"):
        name, sep, values = spec.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in SWEPT_FIELDS:
            parser.error(f"--grid {spec!r}: expected FIELD=V1,V2 with FIELD one of {', '.join(SWEPT_FIELDS)}")
        try:
            grid[name] = [SWEPT_FIELDS[name](v) for v in values.split(",") if v.strip()]
        except ValueError as exc:
            parser.error(f"--grid {spec!r}: {exc}")
    if not grid:
        parser.error("give at least one --grid FIELD=V1,V2")
    run_dir = Path(args.pop("run_dir"))
    out_dir = Path(args.pop("out_dir") or run_dir / "sweep")
    label, force, corpus, n_train = args.pop("label"), args.pop("force"), args.pop("train_corpus"), args.pop("n_train")
    args.pop("time_budget_s")
    base = TrainConfig(**args)
    try:
        grid_points(grid)
    except ValueError as exc:
        parser.error(str(exc))
    train, validation = training_data(load_run_data(run_dir, include_train=True), corpus)
    if validation is None:
        parser.error(f"the {corpus} data of {run_dir} has no validation split to score the sweep on")
    if n_train is not None:
        train = train.select(range(min(n_train, len(train))))
    sweep = run_sweep(train, validation, out_dir, base, grid, force=force, label=label)
    best = sweep["best"]
    print(json.dumps({"sweep": str(out_dir / SWEEP_FILE), "points": len(sweep["points"]), "best": best}))
    return sweep


if __name__ == "__main__":
    main()
