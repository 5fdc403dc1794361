"""Paper-claims verdicts computed from controlled scores, and from a real (tiny) evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.test_evaluation import make_run
from wfutils.evaluation import claims
from wfutils.evaluation.scoring import evaluate_run

N = 120


def scores_and_examples(systems: dict[str, np.ndarray], tags: dict[str, np.ndarray]) -> tuple[pd.DataFrame, pd.DataFrame]:
    ids = [f"sn-test-{i:03d}" for i in range(N)]
    rows = [{"system": s, "subset": "test", "id": i, "metric": "flowsim", "value": float(v)}
            for s, values in systems.items() for i, v in zip(ids, values)]
    features = [[tag for tag, mask in tags.items() if mask[k]] for k in range(N)]
    return pd.DataFrame(rows), pd.DataFrame({"id": ids, "features": features})


def verdicts(table: pd.DataFrame) -> dict[str, str]:
    assert set(table["verdict"]) <= set(claims.VERDICTS)
    return dict(zip(table["claim_id"], table["verdict"]))


def test_verdicts_follow_the_numbers() -> None:
    rng = np.random.default_rng(0)
    logic = np.arange(N) < 50
    implicit = np.arange(N) < 4  # too few examples to test
    query = rng.uniform(size=N) < 0.5  # unrelated to the gain
    llm_a = rng.uniform(0.5, 0.7, N)
    llm_b = rng.uniform(0.55, 0.75, N)
    slm = (llm_a + llm_b) / 2 + np.where(logic, 0.15, 0.01) + rng.normal(0, 0.01, N)
    scores, examples = scores_and_examples({"slm-ft": slm, "gpt-4o-few-shot": llm_a, "gpt-4o-zero-shot": llm_b},
                                           {"flow_logic": logic, "implicit_step": implicit, "encoded_query": query})
    table = claims.evaluate_claims(scores, examples, n_boot=500)
    assert list(table["claim_id"]) == [c.id for c in claims.CLAIMS]
    v = verdicts(table)
    c1 = table.set_index("claim_id").loc["C1a"]
    expected = np.mean([100 * (slm.mean() - m) / m for m in (llm_a.mean(), llm_b.mean())])
    assert c1["measured"] == pytest.approx(expected) and c1["n"] == N
    assert v["C1a"] == "reproduced"
    assert v["C1b"] == ("reproduced" if 5 <= expected <= 20 else "not reproduced")
    assert v["C2"] == "reproduced"
    assert v["C3"] == "not reproduced"
    assert v["C4"] == "not testable here"
    assert v["C5"] == v["C6"] == "not testable here"
    assert "no oracle-retrieval system" in table.set_index("claim_id").loc["C6", "details"]


def test_oracle_claims_and_missing_arms() -> None:
    rng = np.random.default_rng(1)
    bm25 = rng.uniform(0.5, 0.7, N)
    oracle_small = bm25 * 1.02  # +2%: a perfect retriever adds little, most error remains
    oracle_big = np.minimum(bm25 * 1.5, 1.0)  # most of the error goes away
    tags = {"flow_logic": np.arange(N) < 60}
    for oracle, c5, c6 in ((oracle_small, "reproduced", "reproduced"), (oracle_big, "not reproduced", "not reproduced")):
        systems = {"slm-ft": bm25 + 0.1, "m-rag-few-shot": bm25, "m-rag-few-shot-oracle": oracle}
        table = claims.evaluate_claims(*scores_and_examples(systems, tags), n_boot=300).set_index("claim_id")
        assert table.loc["C6", "measured"] == pytest.approx(100 * (oracle.mean() - bm25.mean()) / bm25.mean())
        share = (1 - oracle.mean()) / (1 - bm25.mean())
        assert table.loc["C5", "measured"] == pytest.approx(share)
        assert (table.loc["C5", "verdict"], table.loc["C6", "verdict"]) == (c5, c6)
        # the oracle variant is not one of the prompted systems of the headline
        assert "1 prompted system" in table.loc["C1a", "details"]
    only_llm = claims.evaluate_claims(*scores_and_examples({"m-few-shot": bm25}, tags), n_boot=100)
    assert set(only_llm["verdict"]) == {"not testable here"}


def test_claims_of_a_tiny_run_are_saved(tmp_path: Path) -> None:
    run = make_run(tmp_path / "tiny")
    ev = evaluate_run(run, progress=False)
    table = claims.evaluate_claims(ev.scores, ev.examples, n_boot=100)
    v = verdicts(table)
    assert v["C1a"] == "not testable here"  # 3 paired examples only
    assert "only 3 examples" in table.set_index("claim_id").loc["C1a", "details"]
    path = claims.save_claims(table, run)
    assert path == run / "eval" / "paper_claims.csv"
    assert list(pd.read_csv(path)["verdict"]) == list(table["verdict"])
    assert "| C1a" in claims.claims_markdown(table)
