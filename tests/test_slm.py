"""wfutils.slm.training + wfutils.slm.generation: a tiny real LoRA fine-tune of SmolLM2-135M.

Everything runs on the real model and tokenizer; examples are short and runs are a few steps
so the module stays within a minute or so on 2 CPU cores.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch

from wfutils.slm.generation import default_max_new_tokens, generate_batch, generate_predictions
from wfutils.models import ModelNotFoundError, load_model_and_tokenizer
from wfutils.flows.parsing import dumps_flow
from wfutils.data.predictions import PREDICTION_FIELDS, read_predictions
from wfutils.slm.training import (
    IGNORE_INDEX,
    TrainConfig,
    collate,
    encode_dataset,
    encode_example,
    length_grouped_batches,
    load_finetuned,
    prompt_token_ids,
    read_training_record,
    system_name,
    train_lora,
)


def _flow(trigger: str, table: str, definition: str, name: str, value: str) -> str:
    return dumps_flow({
        "trigger": {"type": trigger, "inputs": [{"name": "table", "value": table}]},
        "components": [{"order": 1, "category": "action", "definition": definition, "scope": "global",
                        "inputs": [{"name": name, "value": value}]}],
    })


PAIRS = [
    {"id": "p1", "request": "When an incident is created, email the assignee.",
     "flow": _flow("record_create", "incident", "send_email", "to", "{{trigger.current.assigned_to.email}}")},
    {"id": "p2", "request": "When a problem is updated, log a message.",
     "flow": _flow("record_update", "problem", "log", "message", "problem updated")},
    {"id": "p3", "request": "When a change request is created, create a task.",
     "flow": _flow("record_create", "change_request", "create_record", "table", "sc_task")},
    {"id": "p4", "request": "When a user is created, log a message.",
     "flow": _flow("record_create", "sys_user", "log", "message", "user created")},
]
TINY = dict(max_steps=4, batch_size=2, learning_rate=3e-3, warmup_steps=0, lora_r=8, lora_alpha=16,
            max_length=160, checkpoint_every=2, num_threads=None)


@pytest.fixture(scope="module")
def base():
    return load_model_and_tokenizer("smollm2-135m", device="cpu")


@pytest.fixture(scope="module")
def trained(base, tmp_path_factory):
    model, tokenizer = base
    out = tmp_path_factory.mktemp("slm") / "run"
    result = train_lora(PAIRS, out, TrainConfig(**TINY), model=copy.deepcopy(model), tokenizer=tokenizer,
                        progress=False)
    return result


# ---------------------------------------------------------------- prompt formatting and masking


def test_loss_mask_covers_exactly_the_flow_and_end_of_turn(base):
    _, tok = base
    ex = encode_example(tok, PAIRS[0]["request"], json.loads(PAIRS[0]["flow"]), id="p1")
    prompt = prompt_token_ids(tok, PAIRS[0]["request"])
    assert ex.input_ids[:len(prompt)] == prompt
    assert ex.labels[:len(prompt)] == [IGNORE_INDEX] * len(prompt)
    target = ex.labels[len(prompt):]
    assert IGNORE_INDEX not in target and target == ex.input_ids[len(prompt):]
    assert target[-1] == tok.convert_tokens_to_ids("<|im_end|>")
    assert tok.decode(target[:-1]) == PAIRS[0]["flow"]  # compact JSON, byte for byte
    text = tok.decode(prompt)
    assert text.endswith("<|im_start|>assistant\n") and PAIRS[0]["request"] in text


def test_context_goes_into_the_masked_prompt(base):
    _, tok = base
    ex = encode_example(tok, "Email the assignee.", PAIRS[0]["flow"], context="send_email(to, subject, body)")
    prompt_text = tok.decode([t for t, lab in zip(ex.input_ids, ex.labels) if lab == IGNORE_INDEX])
    assert "send_email(to, subject, body)" in prompt_text
    assert "send_email(to" not in tok.decode([lab for lab in ex.labels if lab != IGNORE_INDEX])


def test_bad_training_data_is_rejected_before_training(base, tmp_path):
    _, tok = base
    with pytest.raises(ValueError, match="training split is empty"):
        encode_dataset(tok, [], max_length=512)
    with pytest.raises(ValueError, match=r"record 1 \(id 'x'\): field 'flow'"):
        encode_dataset(tok, [PAIRS[0], {"id": "x", "request": "r", "flow": ""}], max_length=512)
    with pytest.raises(ValueError, match=r"id 'y'.*not valid JSON"):
        encode_dataset(tok, [{"id": "y", "request": "r", "flow": "{oops"}], max_length=512)
    with pytest.raises(ValueError, match=r"longer than max_length=40.*raise max_length to at least \d+"):
        encode_dataset(tok, PAIRS, max_length=40)
    longest = max(len(encode_example(tok, p["request"], p["flow"])) for p in PAIRS)
    kept, dropped = encode_dataset(tok, PAIRS, max_length=longest - 1, truncation="drop")
    assert len(kept) + len(dropped) == len(PAIRS) and dropped and all(d["tokens"] >= longest - 1 for d in dropped)
    with pytest.raises(ModelNotFoundError, match="known names"):
        train_lora(PAIRS, tmp_path / "x", TrainConfig(base_model="not-a-model"), progress=False)
    with pytest.raises(ValueError, match="training split is empty"):
        train_lora([], tmp_path / "x", TrainConfig(), model=object(), tokenizer=tok, progress=False)
    with pytest.raises(ValueError, match="truncation"):
        TrainConfig(truncation="cut")


def test_length_grouped_batches_cover_each_example_once_with_little_padding():
    lengths = [(i * 37) % 200 + 20 for i in range(100)]
    batches = length_grouped_batches(lengths, 8, seed=3)
    assert sorted(i for b in batches for i in b) == list(range(100))
    assert batches == length_grouped_batches(lengths, 8, seed=3)
    assert batches != length_grouped_batches(lengths, 8, seed=4)
    padding = sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)
    naive = [list(range(k, min(k + 8, 100))) for k in range(0, 100, 8)]
    naive_padding = sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in naive)
    assert padding < naive_padding / 10


def test_collate_pads_right_and_masks_padding(base):
    _, tok = base
    exs = [encode_example(tok, p["request"], p["flow"]) for p in PAIRS[:2]]
    ids, mask, labels = collate(exs, pad_id=tok.pad_token_id)
    assert ids.shape == (2, max(len(e) for e in exs))
    for row, e in enumerate(exs):
        assert ids[row, :len(e)].tolist() == e.input_ids and int(mask[row].sum()) == len(e)
        assert (labels[row, len(e):] == IGNORE_INDEX).all()


# ---------------------------------------------------------------- training


def test_tiny_finetune_lowers_the_loss_and_writes_a_record(trained):
    record = trained.record
    losses = [p["loss"] for p in record["loss_curve"]]
    assert len(losses) == 4 == record["steps"]
    assert losses[-1] < 0.6 * losses[0], losses
    assert record["status"] == "complete" and record["n_examples"] == 4
    assert record["config"]["lora_r"] == 8 and record["versions"]["peft"]
    assert record["tokens_per_s"] > 0 and record["train_seconds"] > 0
    assert 0 < record["n_trainable_params"] < 0.05 * record["n_params"]
    assert (trained.adapter_dir / "adapter_config.json").is_file()
    assert not (trained.out_dir / "checkpoint").exists()
    assert read_training_record(trained.out_dir) == record


def test_finished_run_is_reused(trained, base):
    _, tok = base
    again = train_lora(PAIRS, trained.out_dir, TrainConfig(**TINY), model=object(), tokenizer=tok, progress=False)
    assert again.reused and again.record["fingerprint"] == trained.record["fingerprint"]


def test_interrupted_run_resumes_from_its_checkpoint(trained, base, tmp_path):
    model, tok = base
    out = tmp_path / "run"
    first = train_lora(PAIRS, out, TrainConfig(**TINY), model=copy.deepcopy(model), tokenizer=tok,
                       progress=False, stop_after_steps=2)
    assert not first.complete and first.record["steps"] == 2
    assert (out / "checkpoint" / "adapter.safetensors").is_file() and not (out / "training_record.json").exists()
    second = train_lora(PAIRS, out, TrainConfig(**TINY), model=copy.deepcopy(model), tokenizer=tok, progress=False)
    assert second.complete and second.record["resumed_from_step"] == 2 and second.record["steps"] == 4
    resumed = [p["loss"] for p in second.record["loss_curve"]]
    straight = [p["loss"] for p in trained.record["loss_curve"]]
    assert resumed == pytest.approx(straight, rel=1e-3)


# ---------------------------------------------------------------- generation and predictions


def _mean_loss(model, tok) -> float:
    exs = [encode_example(tok, p["request"], p["flow"]) for p in PAIRS]
    ids, mask, labels = collate(exs, tok.pad_token_id)
    with torch.no_grad():
        return float(model(input_ids=ids, attention_mask=mask, labels=labels).loss)


def test_adapter_reloads_and_writes_resumable_predictions(trained, base, tmp_path):
    model, tok = load_finetuned(trained.out_dir, device="cpu")
    # The reloaded (merged) adapter is the trained model: same loss, far below the base model's.
    reloaded, in_memory, untouched = _mean_loss(model, tok), _mean_loss(trained.model, tok), _mean_loss(base[0], tok)
    assert reloaded == pytest.approx(in_memory, rel=1e-3) and reloaded < 0.6 * untouched
    system = system_name("smollm2-135m")
    assert system == "slm-smollm2-135m-lora"
    path = tmp_path / "predictions" / f"{system}.jsonl"
    rows = PAIRS[:3]
    generate_predictions(model, tok, rows, path, system=system, split="test", batch_size=3,
                         max_new_tokens=20, progress=False)
    records = read_predictions(path)
    assert sorted(r.id for r in records) == ["p1", "p2", "p3"]
    raw = json.loads(path.read_text().splitlines()[0])
    assert tuple(raw) == PREDICTION_FIELDS
    for r in records:
        assert r.system == system and r.split == "test" and r.reference == PAIRS[int(r.id[1]) - 1]["flow"]
        assert r.prompt_tokens == len(prompt_token_ids(tok, r.request))
        assert 0 < r.completion_tokens <= 20 and r.latency_s > 0
        assert r.output.startswith("{"), r.output  # JSON straight away, no prose
        assert r.parse_status in ("ok", "repaired", "truncated", "invalid", "empty")
    # A partial file is completed, not overwritten.
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:2]))
    generate_predictions(model, tok, rows, path, system=system, split="test", batch_size=3,
                         max_new_tokens=20, progress=False)
    assert path.read_text().splitlines(keepends=True)[:2] == lines[:2]
    assert sorted(r.id for r in read_predictions(path)) == ["p1", "p2", "p3"]


def test_batched_greedy_matches_one_at_a_time(base):
    model, tok = base
    prompts = [prompt_token_ids(tok, p["request"]) for p in PAIRS[:3]]
    batched = generate_batch(model, tok, prompts, max_new_tokens=12)
    single = [generate_batch(model, tok, [p], max_new_tokens=12)[0] for p in prompts]
    assert len({len(p) for p in prompts}) > 1  # different prompt lengths: left padding is exercised
    for b, s in zip(batched, single):
        assert b.text == s.text and b.completion_tokens == s.completion_tokens


def test_rows_that_stop_early_leave_the_batch_with_the_tokens_of_model_generate(base):
    import torch

    from wfutils.slm.generation import _stop_ids

    model, tok = base
    requests = ["Reply with the single word yes.", "Say hello to the user in one short sentence.",
                "Create an incident when a user is deleted and email the admin."]
    prompts = [prompt_token_ids(tok, r) for r in requests]
    batched = generate_batch(model, tok, prompts, max_new_tokens=40)
    stop = _stop_ids(tok)
    lengths = []
    for prompt, got in zip(prompts, batched):
        ids = torch.tensor([prompt])
        new = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=40, do_sample=False,
                             eos_token_id=stop, pad_token_id=tok.pad_token_id)[0, len(prompt):].tolist()
        n = next((k + 1 for k, t in enumerate(new) if t in stop), len(new))
        assert got.text == tok.decode(new[:n], skip_special_tokens=True)
        assert got.completion_tokens == n
        lengths.append(n)
    assert len(set(lengths)) > 1 and min(lengths) < 40  # rows did stop at different steps


def test_max_new_tokens_follows_reference_lengths(base):
    _, tok = base
    short = default_max_new_tokens(tok, [p["flow"] for p in PAIRS])
    longest = max(len(tok(p["flow"], add_special_tokens=False)["input_ids"]) for p in PAIRS)
    assert longest < short <= longest * 1.25 + 16
    with pytest.raises(ValueError, match="field 'request'"):
        generate_predictions(None, tok, [{"id": "a", "flow": "{}"}], "unused.jsonl", system="s", split="test")



@pytest.mark.slow
def test_notebook_02_runs_end_to_end(tmp_path):
    """papermill run of notebook 02 on a tiny run: trains, plots, generates for both systems."""
    from pathlib import Path

    import papermill

    from wfutils.data.store import build_all

    run = tmp_path / "run"
    build_all(run, n_train=16, n_test=2, n_ood=1, corpora=())
    notebook = Path(__file__).resolve().parents[1] / "notebooks" / "02_slm_finetuning.ipynb"
    papermill.execute_notebook(
        str(notebook), str(tmp_path / "02.ipynb"), kernel_name="python3", progress_bar=False,
        parameters={"run_dir": str(run), "max_steps": 2, "batch_size": 4, "eval_splits": ["synthetic/test"],
                    "eval_limit": 2, "max_new_tokens_cap": 24, "few_shot_baseline": 1, "lora_r": 4})
    record = read_training_record(run / "slm")
    assert record["steps"] == 2 and (run / "slm" / "loss_curve.png").is_file()
    for system in ("slm-smollm2-135m-lora", "slm-smollm2-135m-1shot"):
        records = read_predictions(run / "predictions" / f"{system}.jsonl")
        assert len(records) == 2 and {r.split for r in records} == {"test"}
    summary = json.loads((run / "slm" / "generation_summary.json").read_text())
    assert set(summary) == {"slm-smollm2-135m-lora", "slm-smollm2-135m-1shot"}


@pytest.mark.slow
def test_schema_constrained_decoding_keeps_output_inside_the_flow_schema(trained, tmp_path):
    from wfutils.slm.generation import schema_constraint
    from wfutils.flows.schema import validate_flow

    model, tok = load_finetuned(trained.out_dir, device="cpu")
    path = tmp_path / "constrained.jsonl"
    generate_predictions(model, tok, PAIRS[:2], path, system="slm-c", split="test", batch_size=2,
                         max_new_tokens=110, logits_processor_factory=schema_constraint(tok), progress=False)
    for r in read_predictions(path):
        assert r.parse_status in ("ok", "truncated"), r.output
        if r.parse_status == "ok":
            assert validate_flow(r.flow) == [], r.output
        else:  # cut by max_new_tokens: still a prefix of schema-valid JSON, never prose
            assert r.completion_tokens == 110 and r.output.lstrip().startswith("{")


def test_gradient_checkpointing_gives_the_same_first_step(trained, base, tmp_path):
    model, tok = base
    config = TrainConfig(**{**TINY, "max_steps": 1, "gradient_checkpointing": True})
    result = train_lora(PAIRS, tmp_path / "gc", config, model=copy.deepcopy(model), tokenizer=tok, progress=False)
    assert result.record["config"]["gradient_checkpointing"] is True
    assert result.record["loss_curve"][0]["loss"] == pytest.approx(trained.record["loss_curve"][0]["loss"], rel=1e-4)


def test_time_budget_keeps_the_adapter_trained_so_far(base, tmp_path):
    model, tok = base
    config = TrainConfig(**{**TINY, "max_steps": 50})
    result = train_lora(PAIRS, tmp_path / "tb", config, model=copy.deepcopy(model), tokenizer=tok, progress=False,
                        time_budget_s=0.01)
    record = result.record
    assert result.complete and record["stopped_by"] == "time_budget" and record["steps"] == 1
    assert record["total_steps"] == 50 and (result.adapter_dir / "adapter_config.json").is_file()
    again = train_lora(PAIRS, tmp_path / "tb", config, model=object(), tokenizer=tok, progress=False, time_budget_s=0.01)
    assert again.reused
