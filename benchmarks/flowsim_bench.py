"""FlowSim speed: the project's compiled, cached FlowSim against the plain per-pair zss baseline.

The baseline is the computation ServiceNow's published implementation runs for every pair:
build both trees, then ``zss.distance(..., return_operations=True)`` in pure Python. Both are
measured here, in the same run, on the same random realistic flow pairs, and must agree to 1e-9.

    python benchmarks/flowsim_bench.py                   # default sizes
    python benchmarks/flowsim_bench.py --pairs 10000     # the 10,000-pair target
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from typing import Any

from wfutils.flows import flowsim

ACTIONS = ("look_up_records", "create_record", "update_record", "delete_record", "send_email", "log",
           "ask_for_approval", "create_task", "send_notification", "post_slack_message")
TABLES = ("incident", "problem", "change_request", "sc_req_item", "sys_user", "sys_user_group", "cmdb_ci")
FIELDS = ("priority", "state", "active", "assigned_to", "assignment_group", "category", "short_description")
OPERATORS = ("=", "!=", "ISEMPTY", "ISNOTEMPTY", "LIKE", ">=", "CHANGESTO")


def _query(rng: random.Random) -> str:
    parts = [f"{rng.choice(FIELDS)}{rng.choice(OPERATORS)}{rng.choice(('1', '2', 'true', 'new'))}"
             for _ in range(rng.randint(1, 3))]
    return parts[0] + "".join(rng.choice(("^", "^OR")) + part for part in parts[1:])


def _inputs(rng: random.Random) -> list[dict[str, str]]:
    inputs = [{"name": "table", "value": rng.choice(TABLES)}]
    if rng.random() < 0.6:
        inputs.append({"name": rng.choice(("conditions", "values")), "value": _query(rng)})
    if rng.random() < 0.5:
        inputs.append({"name": rng.choice(("record", "to", "message")), "value": "{{trigger.current.sys_id}}"})
    return inputs


def random_flow(rng: random.Random, n_components: int) -> dict[str, Any]:
    components: list[dict[str, Any]] = []
    blocks: list[int] = []
    for order in range(1, n_components + 1):
        if rng.random() < 0.25:
            component: dict[str, Any] = {"order": order, "category": "flowlogic", "definition": rng.choice(("IF", "FOREACH", "ELSE"))}
            component["inputs"] = [{"name": "condition", "value": _query(rng)}]
        else:
            component = {"order": order, "category": "action", "definition": rng.choice(ACTIONS), "scope": "global",
                         "inputs": _inputs(rng)}
        if blocks and rng.random() < 0.5:
            component["block"] = rng.choice(blocks)
        if component["category"] == "flowlogic":
            blocks.append(order)
        components.append(component)
    trigger = {"type": rng.choice(("record_create", "record_update", "daily")),
               "inputs": [{"name": "table", "value": rng.choice(TABLES)}, {"name": "condition", "value": _query(rng)}]}
    return {"trigger": trigger, "components": components}


def flow_pairs(n: int, seed: int, components: tuple[int, int]) -> list[tuple[dict, dict]]:
    rng = random.Random(seed)
    return [(random_flow(rng, rng.randint(*components)), random_flow(rng, rng.randint(*components))) for _ in range(n)]


def _timed(fn: Any, pairs: list[tuple[dict, dict]], with_inputs: bool) -> tuple[list[float], float]:
    start = time.perf_counter()
    scores = [fn(a, b, with_inputs=with_inputs) for a, b in pairs]
    return scores, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=2000, help="pairs for the project's throughput run")
    parser.add_argument("--baseline-pairs", type=int, default=6, help="pairs for the (slow) zss baseline")
    parser.add_argument("--components", type=int, nargs=2, default=(8, 10), help="components per flow (min max)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    start = time.perf_counter()
    warm = flow_pairs(1, args.seed + 2, (2, 3))[0]
    flowsim.flow_similarity(*warm)
    print(f"warm-up (numba compile or cache load): {time.perf_counter() - start:.2f} s")

    pairs = flow_pairs(args.baseline_pairs, args.seed, tuple(args.components))
    sizes = [len(flowsim.flow_tree(a).render().split("\n")) for a, _ in pairs]
    print(f"baseline pairs: {len(pairs)}, tree nodes with inputs: {min(sizes)}-{max(sizes)} (mean {sum(sizes) / len(sizes):.0f})")
    ok = True
    totals = {"zss": 0.0, "wfutils": 0.0}
    for with_inputs in (True, False):
        flowsim.clear_tree_cache()
        slow, t_slow = _timed(flowsim.reference_flow_similarity, pairs, with_inputs)
        fast, t_fast = _timed(flowsim.flow_similarity, pairs, with_inputs)
        totals["zss"] += t_slow
        totals["wfutils"] += t_fast
        worst = max(abs(a - b) for a, b in zip(slow, fast))
        ok &= worst <= 1e-9
        label = "with inputs" if with_inputs else "no inputs  "
        print(f"{label}: zss baseline {len(pairs) / t_slow:10.2f} pairs/s | FlowSim {len(pairs) / t_fast:10.1f} pairs/s "
              f"| speed-up x{t_slow / t_fast:8.1f} | max |diff| {worst:.1e}")

    print(f"both variants: zss baseline {totals['zss'] / len(pairs):.3f} s/pair | FlowSim "
          f"{1000 * totals['wfutils'] / len(pairs):.2f} ms/pair | speed-up x{totals['zss'] / totals['wfutils']:.0f} (target >= 100)")
    big = flow_pairs(args.pairs, args.seed + 1, tuple(args.components))
    flowsim.clear_tree_cache()
    start = time.perf_counter()
    for with_inputs in (True, False):
        for a, b in big:
            flowsim.flow_similarity(a, b, with_inputs=with_inputs)
    elapsed = time.perf_counter() - start
    print(f"FlowSim on {len(big)} distinct pairs, both variants, trees built from scratch: {elapsed:.1f} s "
          f"({len(big) / elapsed:.0f} pairs/s; 10,000 pairs would take ~{10_000 * elapsed / len(big):.0f} s, target < 60 s)")
    print("identical numbers: " + ("yes" if ok else "NO"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
