"""The paper's claims next to what a run measured, with verdicts computed from the numbers.

:func:`evaluate_claims` returns one row per claim: the claim, the paper's value, the measured
value with its 95% bootstrap CI, the number of examples, the criterion (thresholds written
out, see :data:`CLAIMS`), the verdict (``reproduced`` / ``not reproduced`` / ``not testable
here``) and the reason. :func:`save_claims` writes ``results/<run>/eval/paper_claims.csv``.

Conventions (see also :mod:`wfutils.evaluation.statistics`):

* metric: ``flowsim_with_inputs`` (the ``flowsim_no_inputs`` value is given in ``details``);
* evaluation set: the synthetic in-distribution ``test`` subset when the run has it, else all
  subsets that every compared system ran, pooled; the ``validation`` split never is;
* systems come from their metadata (:mod:`wfutils.evaluation.selection`): the fine-tuned system is
  the run's only one (other seeds of one recipe count once, by their first seed), or the one with the
  highest FlowSim with inputs on the synthetic ``validation`` split (never chosen on test; several
  fine-tuned recipes without validation predictions make C1-C4 not testable); prompted systems: every
  ``prompted`` system except
  oracle-retrieval variants; oracle pairs: an oracle-retrieval system and its BM25 twin;
* only examples that every compared system predicted are used (``n``);
* gains in subgroups are absolute (FlowSim points, averaged over prompted systems) and compare
  the examples that carry a feature tag with those that do not.

Published numbers (the paper's own and other papers' on the same metric, such as StarFlow's
FlowSim table) live in one place, ``published.json`` beside this module, each with its source;
:func:`published` reads the file and :func:`published_results` gives its results as a table.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from wfutils.evaluation import statistics as stats
from wfutils.evaluation.selection import comparison_setup, evaluation_values
from wfutils.evaluation.store import save_table
from wfutils.evaluation.tables import readable, with_ci

METRIC = "flowsim_with_inputs"
ALT_METRIC = "flowsim_no_inputs"

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
NOT_TESTABLE = "not testable here"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, NOT_TESTABLE)
MIN_GROUP = 10  # fewer paired examples than this in a group: not testable
MAGNITUDE_RANGE = (5.0, 20.0)  # "about 10%": a relative improvement within this range (percent)
RETRIEVER_MAX = 5.0  # "at most about 4%": oracle over BM25 relative gain at most this (percent)
MODEL_ERROR_SHARE = 0.5  # "most errors": share of the error that remains with a perfect retriever


PUBLISHED_FILE = Path(__file__).with_name("published.json")


@lru_cache(maxsize=1)
def _published() -> dict[str, Any]:
    return json.loads(PUBLISHED_FILE.read_text(encoding="utf-8"))


def published() -> dict[str, Any]:
    """``published.json``: numbers published in papers, with their sources (a fresh copy)."""
    return json.loads(json.dumps(_published()))


def published_results(metric: str | None = None) -> pd.DataFrame:
    """Published per-system results: source, arxiv, bibtex_key, system, arm, model, params, metric, value, n."""
    data = _published()
    rows = []
    for r in data["results"]:
        source = data["sources"][r["source"]]
        rows.append({"source": r["source"], "arxiv": source.get("arxiv"), "bibtex_key": source.get("bibtex_key"),
                     "system": r["system"], "arm": r["arm"], "model": r.get("model"), "params": r.get("params"),
                     "metric": r["metric"], "value": float(r["value"]), "n": r.get("n", source.get("n")),
                     "evaluation_set": r.get("evaluation_set", source.get("evaluation_set"))})
    table = pd.DataFrame(rows)
    return table if metric is None else table[table["metric"] == metric].reset_index(drop=True)


_PAPER = _published()["sources"]["ayala2025finetune"]["numbers"]


@dataclass(frozen=True)
class Claim:
    id: str
    claim: str
    paper: str
    criterion: str


CLAIMS: tuple[Claim, ...] = (
    Claim("C1a", "Fine-tuning an SLM improves FlowSim over prompting LLMs, on average",
          f"yes ({_PAPER['relative_gain_pct']['text']})",
          "average relative improvement over the prompted systems has a 95% CI lower bound > 0"),
    Claim("C1b", "... by about 10% on average",
          _PAPER["relative_gain_pct"]["text"],
          f"average relative improvement (point estimate) within {MAGNITUDE_RANGE[0]:g}% .. {MAGNITUDE_RANGE[1]:g}%"),
    Claim("C2", "The gains are largest on flow logic (IF / ELSE / FOR EACH)",
          "largest gains on flow logic",
          "gain (SLM - LLM, FlowSim points) on examples tagged flow_logic exceeds the gain on untagged examples; "
          f"95% CI of the difference > 0; at least {MIN_GROUP} examples per group"),
    Claim("C3", "The gains are largest on enterprise-specific features (ServiceNow encoded queries)",
          "largest gains on enterprise-specific features",
          "same test with the tag encoded_query (ServiceNow encoded-query conditions)"),
    Claim("C4", "The gains are largest on implicit steps (implied, not stated, in the request)",
          "largest gains on implicit steps",
          "same test with the tag implicit_step"),
    Claim("C5", "Most errors are model errors, not retrieval errors",
          "most errors remain with a perfect retriever",
          f"share of the BM25 rag_few_shot error (1 - FlowSim) that remains with oracle retrieval > "
          f"{MODEL_ERROR_SHARE:.0%}, 95% CI lower bound included"),
    Claim("C6", "A perfect retriever adds at most about 4%",
          _PAPER["oracle_retrieval_gain_pct"]["text"],
          f"relative FlowSim gain of oracle over BM25 rag_few_shot (point estimate) <= {RETRIEVER_MAX:g}%"),
)


def _row(claim: Claim, verdict: str, measured: float = float("nan"), low: float = float("nan"),
         high: float = float("nan"), n: int = 0, unit: str = "", details: str = "") -> dict[str, Any]:
    if verdict not in VERDICTS:
        raise ValueError(f"unknown verdict {verdict!r}")
    return {"claim_id": claim.id, "claim": claim.claim, "paper": claim.paper, "measured": measured,
            "ci_low": low, "ci_high": high, "unit": unit, "n": n, "criterion": claim.criterion,
            "verdict": verdict, "details": details}


def remaining_error(means: np.ndarray, oracle: Sequence[int], bm25: Sequence[int]) -> np.ndarray:
    """C5's quantity: mean over oracle / BM25 pairs of ``(1 - mean_oracle) / (1 - mean_bm25)``.

    ``means``: system means (last axis; earlier axes are bootstrap replicates), ``oracle`` / ``bm25``
    the column of each pair's systems. NaN where a BM25 system makes no error.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.nanmean((1 - means[..., list(oracle)]) / (1 - means[..., list(bm25)]), axis=-1)


def oracle_frame(values: pd.DataFrame, oracle_pairs: Sequence[tuple[str, str]]
                 ) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """The examples C5 and C6 rest on: every oracle / BM25 system of ``oracle_pairs`` predicted them.

    Returns those values (examples x the pairs' systems) and the pairs whose two systems have values.
    """
    pairs = [(o, b) for o, b in oracle_pairs if o in values and b in values]
    columns = sorted({c for pair in pairs for c in pair})
    return values[columns].dropna(), pairs


def oracle_errors(values: pd.DataFrame, oracle_pairs: Sequence[tuple[str, str]]) -> pd.DataFrame:
    """Per oracle / BM25 pair, on C5's examples: how many the BM25 system gets wrong (FlowSim < 1), the share of
    those the oracle system still gets wrong, and C5's remaining error for that pair.

    Index: oracle, bm25; columns: n, bm25_errors, still_wrong_with_oracle, error_mass_remaining.
    """
    frame, pairs = oracle_frame(values, oracle_pairs)
    rows = []
    for oracle, bm25 in pairs:
        wrong = frame[bm25] < 1
        means = frame[[oracle, bm25]].to_numpy(dtype=np.float64).mean(axis=0)
        rows.append({"oracle": oracle, "bm25": bm25, "n": len(frame), "bm25_errors": int(wrong.sum()),
                     "still_wrong_with_oracle": float((frame.loc[wrong, oracle] < 1).mean()) if wrong.any() else np.nan,
                     "error_mass_remaining": float(remaining_error(means, [0], [1])) if len(frame) else np.nan})
    return pd.DataFrame(rows, columns=["oracle", "bm25", "n", "bm25_errors", "still_wrong_with_oracle",
                                       "error_mass_remaining"]).set_index(["oracle", "bm25"])


def _tagged(values: pd.DataFrame, examples: pd.DataFrame, tag: str) -> np.ndarray:
    ids = values.index.get_level_values(-1)
    tagged = {i for i, f in zip(examples["id"], examples["features"]) if tag in list(f)}
    return np.asarray([i in tagged for i in ids])


def evaluate_claims(scores: pd.DataFrame, examples: pd.DataFrame, *,
                    selection_scores: pd.DataFrame | None = None, metric: str = METRIC,
                    n_boot: int = stats.DEFAULT_BOOT, seed: int = 0) -> pd.DataFrame:
    """The paper-claims table of a run (see the module docstring for the conventions).

    ``scores`` / ``selection_scores``: :attr:`Evaluation.scores` and :attr:`Evaluation.selection_scores`
    (the latter chooses between several fine-tuned systems).
    """
    setup = comparison_setup(scores, selection_scores, metric)
    values, where, finetuned, missing = setup.values, setup.where, setup.finetuned, setup.missing
    prompted = list(setup.prompted)
    oracle_pairs = list(setup.oracle_pairs)
    chosen = f"{finetuned} ({setup.comparison.selection.how})" if finetuned else ""
    rows: list[dict[str, Any]] = []
    claims = {c.id: c for c in CLAIMS}
    alt = None
    if ALT_METRIC in set(scores["metric"]) and metric == METRIC:
        alt, _ = evaluation_values(scores, ALT_METRIC)

    # C1: headline relative improvement.
    if missing:
        rows += [_row(claims["C1a"], NOT_TESTABLE, details=missing),
                 _row(claims["C1b"], NOT_TESTABLE, details=missing)]
    else:
        rel = stats.average_relative_improvement(values, finetuned, prompted, n_boot=n_boot, seed=seed)
        per = ", ".join(f"{k}: {v:+.1f}%" for k, v in rel["per_prompted"].items())
        details = f"{finetuned} vs {len(prompted)} prompted system(s) on {where} ({per}); fine-tuned system: {chosen}"
        if alt is not None:
            rel_alt = stats.average_relative_improvement(alt, finetuned, prompted, n_boot=200, seed=seed)
            details += f"; without inputs: {rel_alt['estimate']:+.1f}%"
        if rel["n"] < MIN_GROUP or not np.isfinite(rel["estimate"]):
            reason = (f"only {rel['n']} examples predicted by every system" if rel["n"] < MIN_GROUP
                      else "a prompted system has mean FlowSim 0, the relative improvement is undefined")
            rows += [_row(claims["C1a"], NOT_TESTABLE, n=rel["n"], details=f"{reason}; {details}"),
                     _row(claims["C1b"], NOT_TESTABLE, n=rel["n"], details=f"{reason}; {details}")]
        else:
            est, low, high = rel["estimate"], rel["low"], rel["high"]
            rows.append(_row(claims["C1a"], REPRODUCED if low > 0 else NOT_REPRODUCED, est, low, high, rel["n"], "%",
                             details))
            inside = MAGNITUDE_RANGE[0] <= est <= MAGNITUDE_RANGE[1]
            rows.append(_row(claims["C1b"], REPRODUCED if inside else NOT_REPRODUCED, est, low, high, rel["n"], "%",
                             details + ("" if inside else f"; measured {est:+.1f}% is outside "
                                        f"{MAGNITUDE_RANGE[0]:g}..{MAGNITUDE_RANGE[1]:g}%")))

    # C2-C4: subgroup gains.
    for cid, tag in (("C2", "flow_logic"), ("C3", "encoded_query"), ("C4", "implicit_step")):
        claim = claims[cid]
        if missing:
            rows.append(_row(claim, NOT_TESTABLE, details=f"needs a fine-tuned and a prompted system: {missing}"))
            continue
        mask = _tagged(values, examples, tag)
        g = stats.subgroup_gain(values, finetuned, prompted, mask, n_boot=n_boot, seed=seed)
        details = (f"gain with {tag}: {g['gain_in']:+.3f} (n={g['n_in']}), without: {g['gain_out']:+.3f} "
                   f"(n={g['n_out']}) FlowSim points, {finetuned} vs {len(prompted)} prompted system(s) on {where}")
        if g["n_in"] < MIN_GROUP or g["n_out"] < MIN_GROUP:
            rows.append(_row(claim, NOT_TESTABLE, n=g["n_in"] + g["n_out"],
                             details=f"fewer than {MIN_GROUP} examples with or without {tag}; {details}"))
            continue
        verdict = REPRODUCED if g["low"] > 0 else NOT_REPRODUCED
        rows.append(_row(claim, verdict, g["diff"], g["low"], g["high"], g["n_in"] + g["n_out"],
                         "FlowSim points (gain with tag - gain without)", details))

    # C5, C6: oracle retrieval.
    if not oracle_pairs:
        reason = ("no oracle-retrieval system next to its BM25 counterpart in this run (two prompted systems "
                  "with the same base model, strategy and k, retrieval 'oracle' and 'bm25' in their metadata)")
        rows += [_row(claims["C5"], NOT_TESTABLE, details=reason), _row(claims["C6"], NOT_TESTABLE, details=reason)]
    else:
        frame, oracle_pairs = oracle_frame(values, oracle_pairs)
        cols = list(frame.columns)
        n = len(frame)
        names = ", ".join(f"{o} vs {b}" for o, b in oracle_pairs)
        if n < MIN_GROUP:
            reason = f"only {n} examples predicted by every oracle / BM25 system ({names})"
            rows += [_row(claims["C5"], NOT_TESTABLE, n=n, details=reason),
                     _row(claims["C6"], NOT_TESTABLE, n=n, details=reason)]
        else:
            matrix = frame.to_numpy(dtype=np.float64)
            index = {c: i for i, c in enumerate(cols)}
            o_idx = [index[o] for o, _ in oracle_pairs]
            b_idx = [index[b] for _, b in oracle_pairs]
            boot = stats.bootstrap_means(matrix, n_boot, seed)
            means = matrix.mean(axis=0)

            def share(m: np.ndarray) -> np.ndarray:
                return remaining_error(m, o_idx, b_idx)

            def gain(m: np.ndarray) -> np.ndarray:
                with np.errstate(divide="ignore", invalid="ignore"):
                    return np.nanmean(100 * (m[..., o_idx] - m[..., b_idx]) / m[..., b_idx], axis=-1)

            s_est, g_est = float(share(means)), float(gain(means))
            s_low, s_high = np.nanquantile(share(boot), [0.025, 0.975])
            g_low, g_high = np.nanquantile(gain(boot), [0.025, 0.975])
            base = f"{names} on {where}"
            if np.isfinite(s_est):
                verdict = REPRODUCED if s_est > MODEL_ERROR_SHARE and s_low > MODEL_ERROR_SHARE else NOT_REPRODUCED
                rows.append(_row(claims["C5"], verdict, s_est, float(s_low), float(s_high), n, "share of error",
                                 f"remaining error with oracle retrieval / error with BM25; {base}"))
            else:
                rows.append(_row(claims["C5"], NOT_TESTABLE, n=n, details=f"BM25 system makes no error; {base}"))
            if np.isfinite(g_est):
                verdict = REPRODUCED if g_est <= RETRIEVER_MAX else NOT_REPRODUCED
                rows.append(_row(claims["C6"], verdict, g_est, float(g_low), float(g_high), n, "%", base))
            else:
                rows.append(_row(claims["C6"], NOT_TESTABLE, n=n, details=f"BM25 system has mean FlowSim 0; {base}"))
    order = {c.id: i for i, c in enumerate(CLAIMS)}
    return pd.DataFrame(rows).sort_values("claim_id", key=lambda s: s.map(order), ignore_index=True)


def save_claims(table: pd.DataFrame, run_dir: str | os.PathLike[str]) -> Path:
    """Write ``eval/paper_claims.csv`` atomically; returns its path."""
    missing = {"claim_id", "claim", "verdict"} - set(table.columns)
    if missing:
        raise ValueError(f"claims table lacks column(s) {sorted(missing)}")
    return save_table(table, run_dir, "paper_claims.csv")


def claims_glue(table: pd.DataFrame) -> dict[str, int]:
    """What the book glues about the verdicts: how many claims, how many of each verdict, and :data:`MIN_GROUP`."""
    verdicts = table["verdict"].value_counts()
    return {"n_reproduced": int(verdicts.get(REPRODUCED, 0)), "n_not_reproduced": int(verdicts.get(NOT_REPRODUCED, 0)),
            "n_not_testable": int(verdicts.get(NOT_TESTABLE, 0)), "n_claims": len(table), "min_group": MIN_GROUP}


def claims_for_book(table: pd.DataFrame) -> pd.DataFrame:
    """The claims table as the book shows it (index: claim id): the claim, the paper's value, the measured value with
    its 95% CI in one cell, unit, n and verdict; criteria and details are in :func:`claims_details`."""
    shown = table.assign(measured=with_ci(table, "measured", "ci_low", "ci_high").where(table["measured"].notna(), "–"))
    return readable(shown[["claim_id", "claim", "paper", "measured", "unit", "n", "verdict"]].set_index("claim_id"),
                    rename={"claim": "Claim of the paper", "claim_id": "Id", "measured": "Measured (95% CI)"})


def claims_details(table: pd.DataFrame) -> pd.DataFrame:
    """Each claim's criterion and the details behind its verdict (index: claim id)."""
    return readable(table[["claim_id", "criterion", "details"]].set_index("claim_id"), rename={"claim_id": "Id"})


def claims_markdown(table: pd.DataFrame, columns: Sequence[str] = ("claim_id", "claim", "paper", "measured",
                                                                    "ci_low", "ci_high", "unit", "verdict")) -> str:
    """The claims table as Markdown (numbers rounded) for the book."""
    return table[list(columns)].round(3).to_markdown(index=False)
