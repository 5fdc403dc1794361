"""Data generation speed and memory against the issue-3 targets.

Targets: about 2,000 train / 300 test / 200 ood examples generated in under 30 s on 2 cores,
peak memory under 1 GiB. The baseline measured in the same run is the cost of generating the
flows alone (no schema validation, no dedup, no Dataset), so the ratio shows the overhead of
the full :func:`wfutils.data.synthetic.build_synthetic` (dedup + Dataset, then + schema validation of
every flow). Peak memory is the process's maximum resident set size (whole run).

Usage: python benchmarks/data_bench.py [--seed 0] [--n-train 2000] [--n-test 300] [--n-ood 200] [--corpora]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import time

from wfutils.data.synthetic import build_synthetic
from wfutils.data.synthetic import generate_example

TARGET_SECONDS = 30.0
TARGET_PEAK_BYTES = 1 << 30


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-train", type=int, default=2000)
    ap.add_argument("--n-test", type=int, default=300)
    ap.add_argument("--n-ood", type=int, default=200)
    ap.add_argument("--corpora", action="store_true", help="also time the n8n and Logic Apps converters")
    args = ap.parse_args()
    n = args.n_train + args.n_test + args.n_ood

    t0 = time.perf_counter()
    rng = random.Random(args.seed)
    for i in range(n):
        generate_example(rng, "ood" if i >= args.n_train + args.n_test else "in")
    baseline = time.perf_counter() - t0

    t0 = time.perf_counter()
    dd = build_synthetic(args.seed, args.n_train, args.n_test, args.n_ood, validate=False)
    unvalidated = time.perf_counter() - t0
    t0 = time.perf_counter()
    dd = build_synthetic(args.seed, args.n_train, args.n_test, args.n_ood)
    seconds = time.perf_counter() - t0
    rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB

    result = {
        "examples": n, "splits": {k: len(v) for k, v in dd.items()},
        "baseline_generate_only_s": round(baseline, 2), "build_synthetic_no_validation_s": round(unvalidated, 2),
        "build_synthetic_s": round(seconds, 2),
        "ratio_vs_baseline": round(seconds / baseline, 2), "ratio_vs_target_time": round(seconds / TARGET_SECONDS, 3),
        "peak_rss_mib": round(rss_peak / 2**20, 1),
        "ratio_vs_target_memory": round(rss_peak / TARGET_PEAK_BYTES, 3),
        "meets_targets": seconds < TARGET_SECONDS and rss_peak < TARGET_PEAK_BYTES,
    }
    if args.corpora:
        from wfutils.data.corpora import load_logic_apps, load_n8n

        for name, loader in (("n8n", load_n8n), ("logic_apps", load_logic_apps)):
            t0 = time.perf_counter()
            got = loader()
            result[f"{name}_s"] = round(time.perf_counter() - t0, 2)
            result[f"{name}_pairs"] = len(got["test"])
            result[f"{name}_skipped"] = len(got.skipped)
    print(json.dumps(result, indent=1))
    return 0 if result["meets_targets"] else 1


if __name__ == "__main__":
    sys.exit(main())
