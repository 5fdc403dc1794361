"""Paper-claims verdicts computed from controlled scores, and from a real (tiny) evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.test_evaluation import make_run
from wfutils.evaluation import claims
from wfutils.evaluation.scoring import evaluate_run
from wfutils.evaluation.result import meta_of
from wfutils.evaluation.selection import compared_systems, seed_repeats, select_finetuned

N = 120
FT = {"arm": "fine-tuned", "base_model": "smollm2-135m", "n_params": 134_515_008, "strategy": "none", "k": 0,
      "retrieval": "none", "train_corpus": "synthetic"}


def prompted(strategy: str = "few_shot", retrieval: str = "none", base_model: str = "gpt-4o", k: int = 3) -> dict:
    return {"arm": "prompted", "base_model": base_model, "n_params": 0, "strategy": strategy, "k": k,
            "retrieval": retrieval, "train_corpus": "synthetic"}


def tidy(systems: dict[str, tuple[dict, np.ndarray]], subset: str = "test", prefix: str = "sn-test") -> pd.DataFrame:
    """Scores laid out as evaluate_run writes them: system, metadata columns, subset, id, metric, value."""
    rows = [{"system": s, **meta, "subset": subset, "id": f"{prefix}-{i:03d}", "metric": "flowsim_with_inputs",
             "value": float(v)}
            for s, (meta, values) in systems.items() for i, v in enumerate(values)]
    return pd.DataFrame(rows)


def scores_and_examples(systems: dict[str, tuple[dict, np.ndarray]], tags: dict[str, np.ndarray]
                        ) -> tuple[pd.DataFrame, pd.DataFrame]:
    ids = [f"sn-test-{i:03d}" for i in range(N)]
    features = [[tag for tag, mask in tags.items() if mask[k]] for k in range(N)]
    return tidy(systems), pd.DataFrame({"id": ids, "features": features})


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
    scores, examples = scores_and_examples({"slm-ft": (FT, slm), "gpt-4o-few-shot": (prompted(), llm_a),
                                            "gpt-4o-zero-shot": (prompted("zero_shot", k=0), llm_b)},
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
        systems = {"slm-ft": (FT, bm25 + 0.1), "m-rag-few-shot": (prompted("rag_few_shot", "bm25", "m"), bm25),
                   "m-gold-examples": (prompted("rag_few_shot", "oracle", "m"), oracle)}  # oracle by metadata
        table = claims.evaluate_claims(*scores_and_examples(systems, tags), n_boot=300).set_index("claim_id")
        assert table.loc["C6", "measured"] == pytest.approx(100 * (oracle.mean() - bm25.mean()) / bm25.mean())
        share = (1 - oracle.mean()) / (1 - bm25.mean())
        assert table.loc["C5", "measured"] == pytest.approx(share)
        assert (table.loc["C5", "verdict"], table.loc["C6", "verdict"]) == (c5, c6)
        # the oracle variant is not one of the prompted systems of the headline
        assert "1 prompted system" in table.loc["C1a", "details"]
    only_llm = claims.evaluate_claims(*scores_and_examples({"m-few-shot": (prompted(), bm25)}, tags), n_boot=100)
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


def test_a_system_named_slm_but_prompted_is_counted_as_prompted() -> None:
    rng = np.random.default_rng(3)
    base = rng.uniform(0.4, 0.6, N)
    systems = {"ft-lora": (FT, base + 0.1), "slm-smollm2-3shot": (prompted(base_model="smollm2-135m"), base),
               "gpt-4o-few-shot": (prompted(), base + 0.02)}
    table = claims.evaluate_claims(*scores_and_examples(systems, {}), n_boot=200).set_index("claim_id")
    details = table.loc["C1a", "details"]
    assert details.startswith("ft-lora vs 2 prompted system(s)") and "slm-smollm2-3shot:" in details


def test_the_fine_tuned_system_is_chosen_on_validation_never_on_test() -> None:
    rng = np.random.default_rng(4)
    llm = rng.uniform(0.4, 0.6, N)
    # "slm-a" is better on test, "slm-b" on validation: slm-b must be the one compared.
    systems = {"slm-a": (FT, llm + 0.2), "slm-b": (FT, llm + 0.05), "gpt-4o-few-shot": (prompted(), llm)}
    scores, examples = scores_and_examples(systems, {})
    validation = tidy({"slm-a": (FT, np.full(20, 0.3)), "slm-b": (FT, np.full(20, 0.6)),
                       "gpt-4o-few-shot": (prompted(), np.full(20, 0.9))}, subset="validation", prefix="sn-val")
    chosen = select_finetuned(scores, validation)
    assert chosen.system == "slm-b" and chosen.n_validation == 20
    assert chosen.validation_means == {"slm-a": pytest.approx(0.3), "slm-b": pytest.approx(0.6)}
    assert "validation" in chosen.how
    table = claims.evaluate_claims(scores, examples, selection_scores=validation, n_boot=200).set_index("claim_id")
    assert table.loc["C1a", "details"].startswith("slm-b vs 1 prompted system(s)")
    expected = 100 * ((llm + 0.05).mean() - llm.mean()) / llm.mean()
    assert table.loc["C1a", "measured"] == pytest.approx(expected)
    # Validation rows passed in with the test scores never enter the evaluation set.
    values, where = claims.evaluation_values(pd.concat([scores, validation]), "flowsim_with_inputs")
    assert where == "test" and len(values) == N

    # Several fine-tuned systems and no validation predictions: no selection, the claims say why.
    assert select_finetuned(scores, None).system is None
    table = claims.evaluate_claims(scores, examples, n_boot=100).set_index("claim_id")
    for cid in ("C1a", "C1b", "C2", "C3", "C4"):
        assert table.loc[cid, "verdict"] == "not testable here"
        assert "no predictions on the validation split" in table.loc[cid, "details"], cid
    partial = validation[validation.system != "slm-a"]
    assert "slm-a has no predictions" in select_finetuned(scores, partial).how

    # One fine-tuned system: no selection needed, validation or not.
    single = scores[scores.system != "slm-a"]
    comparison = compared_systems(single)
    assert comparison.finetuned == "slm-b" and "no selection needed" in comparison.selection.how


def test_other_seeds_of_one_recipe_make_a_spread_not_candidates() -> None:
    rng = np.random.default_rng(5)
    llm = rng.uniform(0.4, 0.6, N)

    def trained(recipe: str, seed: int) -> dict:
        return {**FT, "recipe": recipe, "training_seed": seed}

    # Seed 1 ("ft-a", first by name) is the luckier on test: the headline still takes seed 0, and no validation
    # predictions are needed, for seeds of one recipe are not rivals.
    systems = {"ft-a": (trained("r1", 1), llm + 0.2), "ft-b": (trained("r1", 0), llm + 0.05),
               "gpt-4o-few-shot": (prompted(), llm)}
    scores, examples = scores_and_examples(systems, {})
    chosen = select_finetuned(scores, None)
    assert (chosen.system, chosen.candidates, chosen.seed_repeats) == ("ft-b", ("ft-b",), ("ft-a",))
    assert "the other seed(s), ft-a, make the seed spread" in chosen.how
    table = claims.evaluate_claims(scores, examples, n_boot=200).set_index("claim_id")
    assert table.loc["C1a", "details"].startswith("ft-b vs 1 prompted system(s)")

    # Another recipe beside it: the two recipes' first seeds are chosen between on validation, the repeat sits out.
    systems["ft-c"] = (trained("r2", 0), llm + 0.1)
    scores, _ = scores_and_examples(systems, {})
    assert select_finetuned(scores, None).system is None
    validation = tidy({"ft-b": (trained("r1", 0), np.full(20, 0.4)), "ft-c": (trained("r2", 0), np.full(20, 0.6))},
                      subset="validation", prefix="sn-val")
    chosen = select_finetuned(scores, validation)
    assert (chosen.system, chosen.candidates, chosen.seed_repeats) == ("ft-c", ("ft-b", "ft-c"), ("ft-a",))

    # One adapter decoded another way (same seed), or with another decoding, is no repeat: both stay candidates.
    both = {**systems, "ft-b-constrained": ({**trained("r1", 0), "decoding": "constrained"}, llm),
            "ft-b-again": (trained("r1", 0), llm)}
    assert select_finetuned(scores_and_examples(both, {})[0], None).seed_repeats == ("ft-a",)
    assert select_finetuned(scores_and_examples(both, {})[0], None).candidates == (
        "ft-b", "ft-b-again", "ft-b-constrained", "ft-c")

    # The same recipe on another base model is another training, and systems without a recipe (sidecars written
    # before recipes were recorded) are each a candidate, as they were.
    systems["ft-a"] = ({**trained("r1", 1), "base_model": "other-135m"}, llm + 0.2)
    assert select_finetuned(scores_and_examples(systems, {})[0], None).seed_repeats == ()
    plain = scores.drop(columns=["recipe", "training_seed"])
    assert select_finetuned(plain, None).system is None and select_finetuned(plain, None).candidates == (
        "ft-a", "ft-b", "ft-c")


def test_a_system_scored_in_two_layouts_keeps_the_metadata_its_later_rows_carry() -> None:
    rng = np.random.default_rng(6)
    llm = rng.uniform(0.4, 0.6, N)
    trained = {seed: {**FT, "recipe": "r1", "training_seed": seed} for seed in (0, 1)}
    new = tidy({"ft-a": (trained[1], llm + 0.2), "ft-b": (trained[0], llm)})
    # ft-a's first rows come from a table written before recipes and seeds were recorded
    old = new[new["system"] == "ft-a"].drop(columns=["recipe", "training_seed"]).assign(subset="validation")
    scores = pd.concat([old, new], ignore_index=True)
    meta = meta_of(scores)
    assert (meta.at["ft-a", "recipe"], meta.at["ft-a", "training_seed"]) == ("r1", 1.0)
    assert seed_repeats(scores) == {"ft-a": "ft-b"}
    # a value no row of a system carries stays unknown
    assert meta_of(scores.drop(columns=["recipe"]))["recipe"].isna().all()


def test_scores_without_a_fine_tuned_system_have_no_repeats(tmp_path: Path) -> None:
    llm = np.random.default_rng(7).uniform(0.4, 0.6, N)
    tidy({"ft-b": ({**FT, "recipe": "r1", "training_seed": 0}, llm), "gpt-4o-few-shot": (prompted(), llm)}
         ).to_parquet(tmp_path / "scores.parquet")
    scores = pd.read_parquet(tmp_path / "scores.parquet")  # string columns as a run's scores are read back
    prompted_only = scores[scores["system"] == "gpt-4o-few-shot"]
    assert seed_repeats(prompted_only) == {} and select_finetuned(prompted_only, None).system is None
    assert seed_repeats(scores) == {}


# --------------------------------------------------------------------------- C1b both ways, on scored predictions

def write_answers(run: Path, meta, correct: int, n: int = 20) -> None:
    """A predictions file of ``n`` test requests (no data sets: the references in the records are scored):
    the reference flow itself for the first ``correct`` requests, prose for the others."""
    from tests.test_evaluation import DAILY_LOG
    from wfutils.data.predictions import Prediction, PredictionWriter, predictions_path
    from wfutils.flows.parsing import dumps_flow

    reference = dumps_flow(DAILY_LOG)
    with PredictionWriter(predictions_path(run, meta.system), meta) as writer:
        for i in range(n):
            writer.write(Prediction.from_output(id=f"sn-test-{i:03d}", split="test", system=meta.system,
                                                request=f"Every day, write log line {i}.", reference=reference,
                                                output=reference if i < correct else "I cannot help with that.",
                                                latency_s=1.0, prompt_tokens=10, completion_tokens=10))


@pytest.mark.parametrize(("finetuned_correct", "verdict"), [(11, "reproduced"), (16, "not reproduced")])
def test_c1b_reproduced_inside_the_range_and_not_outside_it(tmp_path: Path, finetuned_correct: int,
                                                             verdict: str) -> None:
    from tests.test_evaluation import finetuned_meta, prompted_meta

    run = tmp_path / "run"
    write_answers(run, finetuned_meta(), finetuned_correct)
    write_answers(run, prompted_meta(), 10)
    ev = evaluate_run(run, progress=False)
    table = claims.evaluate_claims(ev.scores, ev.examples, n_boot=200).set_index("claim_id")
    means = ev.wide().mean()
    expected = 100 * (means["slm-tiny"] - means["gpt-4o-few-shot"]) / means["gpt-4o-few-shot"]
    low, high = claims.MAGNITUDE_RANGE
    assert (low <= expected <= high) == (verdict == "reproduced")  # the scores put the gain on the intended side
    c1b = table.loc["C1b"]
    assert c1b["measured"] == pytest.approx(expected) and c1b["n"] == 20 and c1b["unit"] == "%"
    assert c1b["verdict"] == verdict
    assert ("is outside" in c1b["details"]) == (verdict == "not reproduced")
    assert table.loc["C1a", "measured"] == c1b["measured"]  # one estimate, two criteria


# --------------------------------------------------------------------------- the comparison set-up, used once

def test_one_tie_rule_names_the_same_best_prompted_system_everywhere() -> None:
    from wfutils.evaluation import companion
    from wfutils.evaluation.selection import best_prompted, comparison_setup

    rng = np.random.default_rng(5)
    llm = rng.uniform(0.4, 0.6, N)
    # Two prompted systems with the same scores: the first name in sorted order is the best, whatever the order given.
    systems = {"slm-ft": (FT, llm + 0.1), "zeta-few-shot": (prompted(), llm), "alpha-few-shot": (prompted(), llm),
               "mid-zero-shot": (prompted("zero_shot", k=0), llm - 0.1)}
    scores, _ = scores_and_examples(systems, {})
    setup = comparison_setup(scores)
    assert setup.best_prompted == "alpha-few-shot" and setup.ready and setup.missing is None
    assert best_prompted(setup.values, ["zeta-few-shot", "alpha-few-shot"]) == "alpha-few-shot"
    head = companion.headline(setup.values, setup.finetuned, list(reversed(setup.prompted)), n_boot=100)
    assert head["best_prompted_system"] == setup.best_prompted
    # A system without any value on the evaluation set is never the best.
    assert best_prompted(setup.values.assign(empty=np.nan), ["empty", "mid-zero-shot"]) == "mid-zero-shot"
    assert best_prompted(setup.values, []) is None

    only_llm = comparison_setup(scores[scores.system != "slm-ft"])
    assert not only_llm.ready and only_llm.missing.startswith("no fine-tuned system selected")


def test_the_oracle_error_table_is_claim_c5_per_pair() -> None:
    rng = np.random.default_rng(6)
    bm25 = rng.uniform(0.5, 0.9, N)
    oracle = np.where(np.arange(N) < 30, 1.0, bm25)  # the oracle fixes the first 30 examples
    systems = {"slm-ft": (FT, bm25 + 0.05), "m-rag-few-shot": (prompted("rag_few_shot", "bm25", "m"), bm25),
               "m-gold": (prompted("rag_few_shot", "oracle", "m"), oracle)}
    scores, examples = scores_and_examples(systems, {})
    c5 = claims.evaluate_claims(scores, examples, n_boot=200).set_index("claim_id").loc["C5"]
    from wfutils.evaluation.selection import comparison_setup

    setup = comparison_setup(scores)
    table = claims.oracle_errors(setup.values, setup.oracle_pairs)
    row = table.loc[("m-gold", "m-rag-few-shot")]
    assert row["error_mass_remaining"] == pytest.approx(c5["measured"]) and row["n"] == c5["n"] == N
    assert row["bm25_errors"] == int((bm25 < 1).sum())
    assert row["still_wrong_with_oracle"] == pytest.approx(((oracle < 1) & (bm25 < 1)).sum() / (bm25 < 1).sum())
    assert claims.oracle_errors(setup.values, []).empty
