"""Benchmark: scoring + statistics of 10 systems x 1,000 examples with 2,000 bootstrap samples.

Target (issue 6): under 60 s on 2 cores. The statistics are also timed against a naive
baseline measured in the same run: the same bootstrap CIs, paired bootstrap and sign-flip
permutation tests computed with a Python loop over resamples.

    .venv/bin/python benchmarks/eval_bench.py [--systems 10] [--examples 1000] [--boot 2000]

Setup (generating the synthetic examples and writing the predictions files with their
``SystemMeta`` sidecars: one fine-tuned system, the others prompted) is not timed. Predictions
are the references with seeded damage of increasing strength per system (dropped steps, wrong
trigger, changed inputs, truncated or prose-wrapped or non-JSON output), so every code path of
the scorer runs. Quality is ``flowsim_with_inputs``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path

import numpy as np

from wfutils.data.predictions import Prediction, PredictionWriter, SystemMeta, predictions_path
from wfutils.data.store import save_dataset
from wfutils.data.synthetic import build_synthetic
from wfutils.evaluation import claims, selection
from wfutils.evaluation import statistics as stats
from wfutils.evaluation.result import wide
from wfutils.evaluation.scoring import evaluate_run
from wfutils.flows.parsing import dumps_flow

METRIC = "flowsim_with_inputs"

TARGET_S = 60.0


def damaged_output(flow: dict, rng: random.Random, level: float) -> str:
    flow = json.loads(json.dumps(flow))
    components = flow.get("components", [])
    if components and rng.random() < level:
        components.pop(rng.randrange(len(components)))
    if rng.random() < level / 2:
        flow["trigger"]["type"] = rng.choice(["daily", "record_update", "email"])
    for component in components:
        for item in component.get("inputs", []):
            if rng.random() < level / 3:
                item["value"] = "x"
    if rng.random() < level / 4:
        components.append({"order": 99, "category": "action", "definition": "made_up_step", "scope": "global"})
    text = dumps_flow(flow)
    roll = rng.random()
    if roll < level / 6:
        return text[: len(text) // 2]  # truncated
    if roll < level / 4:
        return "Sorry, here is my best attempt: " + text[:20]  # not JSON
    if roll < level / 2:
        return "```json\n" + json.dumps(flow, indent=2) + "\n```\nThis flow does what you asked."
    return text


def make_run(root: Path, n_systems: int, n_examples: int) -> Path:
    data = build_synthetic(0, n_train=0, n_test=n_examples, n_ood=0, n_validation=0)
    save_dataset(data, root, "synthetic")
    metas = [SystemMeta("slm-bench", "fine-tuned", "smollm2-135m", 134_515_008, adapter="slm/adapter",
                        engine="transformers (wfutils.slm.generation)")]
    metas += [SystemMeta(f"model{k}-{s.replace('_', '-')}", "prompted", "gpt-4o-mini", 0, strategy=s, k=3,
                         retrieval="bm25" if s == "rag_few_shot" else "none",
                         engine="openai-compatible: https://api.openai.com/v1")
              for k in range(n_systems) for s in ("few_shot", "rag_few_shot")]
    for index, meta in enumerate(metas[:n_systems]):
        system = meta.system
        rng = random.Random(system)
        level = 0.1 + 0.5 * index / max(1, n_systems - 1)
        with PredictionWriter(predictions_path(root, system), meta) as writer:
            for row in data["test"]:
                writer.write(Prediction.from_output(
                    id=row["id"], split="test", system=system, request=row["request"], reference=row["flow"],
                    output=damaged_output(json.loads(row["flow"]), rng, level), latency_s=rng.uniform(0.2, 3.0),
                    prompt_tokens=rng.randint(200, 2000), completion_tokens=rng.randint(100, 400)))
    return root


def statistics(scores, n_boot: int, seed: int) -> dict[str, object]:
    summary = stats.system_summary(scores, METRIC, n_boot=n_boot, seed=seed)
    paired = stats.paired_comparisons(scores, METRIC, n_boot=n_boot, seed=seed)
    values, _ = claims.evaluation_values(scores, METRIC)
    comparison = selection.compared_systems(scores)
    headline = stats.average_relative_improvement(values, comparison.finetuned, list(comparison.prompted),
                                                  n_boot=n_boot, seed=seed)
    return {"summary": summary, "paired": paired, "headline": headline}


def naive_statistics(scores, n_boot: int, seed: int) -> dict[str, object]:
    """The same quantities with a Python loop over resamples (the baseline)."""
    table = wide(scores, METRIC).loc["test"]
    arms = scores.groupby("system", observed=True)["arm"].first().astype(str)
    rng = np.random.default_rng(seed)
    cis = {}
    for system in table.columns:
        values = table[system].to_numpy()
        means = [values[rng.integers(0, len(values), len(values))].mean() for _ in range(n_boot)]
        cis[system] = np.quantile(means, [0.025, 0.975])
    fine_tuned = next(s for s in table.columns if arms[s] == "fine-tuned")
    paired = {}
    for other in [s for s in table.columns if arms[s] == "prompted"]:
        a, b = table[fine_tuned].to_numpy(), table[other].to_numpy()
        d = a - b
        boot = []
        for _ in range(n_boot):
            idx = rng.integers(0, len(d), len(d))
            boot.append(d[idx].mean())
        flips = 0
        for _ in range(n_boot):
            signs = rng.integers(0, 2, len(d)) * 2 - 1
            flips += abs((signs * d).mean()) >= abs(d.mean())
        rel = []
        for _ in range(n_boot):
            idx = rng.integers(0, len(d), len(d))
            rel.append(100 * (a[idx].mean() - b[idx].mean()) / b[idx].mean())
        paired[other] = (np.quantile(boot, [0.025, 0.975]), (flips + 1) / (n_boot + 1), np.quantile(rel, [0.025, 0.975]))
    return {"cis": cis, "paired": paired}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--systems", type=int, default=10)
    parser.add_argument("--examples", type=int, default=1000)
    parser.add_argument("--boot", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None, help="scoring processes (default: automatic)")
    args = parser.parse_args()
    print(f"cores available: {len(os.sched_getaffinity(0))}; {args.systems} systems x {args.examples} examples, "
          f"{args.boot} bootstrap samples")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        run = make_run(Path(tmp) / "bench", args.systems, args.examples)
        print(f"setup (not timed): {time.perf_counter() - t0:.1f} s")

        t0 = time.perf_counter()
        ev = evaluate_run(run, workers=args.workers, progress=False)
        t_score = time.perf_counter() - t0
        t0 = time.perf_counter()
        result = statistics(ev.scores, args.boot, args.seed)
        t_stats = time.perf_counter() - t0
        t0 = time.perf_counter()
        naive_statistics(ev.scores, args.boot, args.seed)
        t_naive = time.perf_counter() - t0

    total = t_score + t_stats
    print(f"scoring: {t_score:.1f} s for {len(ev.predictions):,} predictions ({len(ev.scores):,} score rows)")
    print(f"statistics (vectorised): {t_stats:.2f} s  "
          f"[{len(result['summary'])} CIs, {len(result['paired'])} paired comparisons, headline "
          f"{result['headline']['estimate']:+.1f}%]")
    print(f"statistics (naive per-resample loop, same run): {t_naive:.2f} s  -> vectorised is "
          f"{t_naive / t_stats:.1f}x faster")
    print(f"scoring + statistics: {total:.1f} s  (target < {TARGET_S:.0f} s: {'met' if total < TARGET_S else 'MISSED'}; "
          f"{TARGET_S / total:.2f}x headroom)")


if __name__ == "__main__":
    main()
