"""wfutils.slm (formatting, training through TRL's SFTTrainer, generation): a tiny real LoRA fine-tune of SmolLM2-135M.

Everything runs on the real model and tokenizer; examples are short and runs are a few steps
so the fast tests stay within a couple of minutes on 2 CPU cores.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import pytest
import torch
import transformers

from wfutils.data.predictions import PREDICTION_FIELDS, read_predictions, read_sidecar, read_system_meta
from wfutils.flows.vocabulary import flow_text
from wfutils.models import ModelNotFoundError, count_parameters, load_model_and_tokenizer
from wfutils.slm.formatting import (
    IGNORE_INDEX,
    SYSTEM_PROMPT,
    end_of_turn_id,
    prompt_token_ids,
    stop_token_ids,
    training_messages,
)
from wfutils.config import ConfigError
from wfutils.data.predictions import FINE_TUNED, system_name
from wfutils.slm.generation import (
    AdapterUnchangedWarning,
    GenerationConfig,
    adapter_check_path,
    decoding_schema,
    default_max_new_tokens,
    generate_for_run,
    generate_predictions,
    slm_engine,
    slm_system_meta,
)
from wfutils.slm.training import (
    TrainConfig,
    encode_dataset,
    encode_example,
    load_finetuned,
    notebook_configs,
    read_training_record,
    train_lora,
)

ROOT = Path(__file__).resolve().parents[1]


def _flow(trigger: str, table: str, definition: str, name: str, value: str) -> str:
    return flow_text({
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
TINY = dict(max_steps=4, batch_size=2, grad_accum=1, learning_rate=3e-3, warmup_steps=0, lora_r=8, lora_alpha=16,
            max_length=160, checkpoint_every=2, gradient_checkpointing=False)


@pytest.fixture(scope="module")
def base():
    return load_model_and_tokenizer("smollm2-135m", device="cpu")


@pytest.fixture(scope="module")
def trained(base, tmp_path_factory):
    model, tokenizer = base
    out = tmp_path_factory.mktemp("slm") / "run"
    return train_lora(PAIRS, out, TrainConfig(**TINY), model=copy.deepcopy(model), tokenizer=tokenizer,
                      progress=False)


# ---------------------------------------------------------------- prompt formatting and masking


def test_completion_is_the_flow_and_end_of_turn_and_only_it_carries_loss(base):
    _, tok = base
    ex = encode_example(tok, PAIRS[0]["request"], json.loads(PAIRS[0]["flow"]), id="p1")
    prompt = prompt_token_ids(tok, PAIRS[0]["request"])
    assert ex.input_ids[:len(prompt)] == prompt
    assert ex.labels[:len(prompt)] == [IGNORE_INDEX] * len(prompt)
    assert ex.completion_mask == [0] * len(prompt) + [1] * (len(ex) - len(prompt))
    target = ex.labels[len(prompt):]
    assert IGNORE_INDEX not in target and target == ex.input_ids[len(prompt):]
    assert target[-1] == tok.convert_tokens_to_ids("<|im_end|>") == end_of_turn_id(tok)
    assert tok.decode(target[:-1]) == PAIRS[0]["flow"]  # compact JSON, byte for byte
    text = tok.decode(prompt)
    assert text.endswith("<|im_start|>assistant\n") and PAIRS[0]["request"] in text and SYSTEM_PROMPT in text
    assert end_of_turn_id(tok) in stop_token_ids(tok)


def test_trainer_batches_mask_prompt_and_padding(trained, base):
    """The labels the trainer actually trains on: -100 on every prompt and padding position."""
    _, tok = base
    trainer = trained.trainer
    for i, pair in enumerate(PAIRS):
        row = trainer.train_dataset[i]
        n_prompt = len(prompt_token_ids(tok, pair["request"]))
        assert row["input_ids"] == encode_example(tok, pair["request"], pair["flow"]).input_ids
        assert row["labels"][:n_prompt] == [IGNORE_INDEX] * n_prompt
        assert row["labels"][n_prompt:] == row["input_ids"][n_prompt:]
    batch = next(iter(trainer.get_train_dataloader()))
    labels, mask, ids = batch["labels"], batch["attention_mask"], batch["input_ids"]
    assert (labels[mask == 0] == IGNORE_INDEX).all()
    for row in range(ids.shape[0]):
        real = ids[row][mask[row] == 1].tolist()
        pair = next(p for p in PAIRS if encode_example(tok, p["request"], p["flow"]).input_ids == real)
        n_prompt = len(prompt_token_ids(tok, pair["request"]))
        kept = labels[row][mask[row] == 1]
        assert (kept[:n_prompt] == IGNORE_INDEX).all() and (kept[n_prompt:] != IGNORE_INDEX).all()


def test_context_goes_into_the_masked_prompt(base):
    _, tok = base
    ex = encode_example(tok, "Email the assignee.", PAIRS[0]["flow"], context="send_email(to, subject, body)")
    prompt_text = tok.decode([t for t, lab in zip(ex.input_ids, ex.labels) if lab == IGNORE_INDEX])
    assert "send_email(to, subject, body)" in prompt_text
    assert "send_email(to" not in tok.decode([lab for lab in ex.labels if lab != IGNORE_INDEX])
    assert [m["role"] for m in training_messages("r")] == ["system", "user"]  # few-shot prompts are the prompted arm's


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
    with pytest.raises(ModelNotFoundError, match="weights registry \\(qwen2.5-coder-0.5b, qwen2.5-coder-1.5b, smollm2-135m\\)"):
        train_lora(PAIRS, tmp_path / "x", TrainConfig(base_model="not-a-model"), progress=False)
    with pytest.raises(ValueError, match="training split is empty"):
        train_lora([], tmp_path / "x", TrainConfig(), model=object(), tokenizer=tok, progress=False)
    with pytest.raises(ValueError, match="truncation"):
        TrainConfig(truncation="cut")
    with pytest.raises(ValueError, match="select_best needs eval_every"):
        TrainConfig(select_best=True)
    with pytest.raises(ValueError, match="select_metric must be 'loss' or 'flowsim'"):
        TrainConfig(select_metric="bleu")
    with pytest.raises(ValueError, match="needs flowsim_requests > 0"):
        TrainConfig(select_metric="flowsim", flowsim_requests=0)
    with pytest.raises(ValueError, match="loss_pairs must be >= 1 or None, got 0"):
        TrainConfig(loss_pairs=0)


# ---------------------------------------------------------------- defaults in one place


def _notebook_parameters() -> dict:
    nb = json.loads((ROOT / "notebooks" / "02_slm_finetuning.ipynb").read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    assert all(not c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code")  # committed without outputs
    namespace: dict = {}
    exec("".join(cell["source"]), namespace)
    return {k: v for k, v in namespace.items() if not k.startswith("__")}


def test_notebook_parameters_equal_trainconfig_defaults():
    params = _notebook_parameters()
    defaults = TrainConfig().to_dict()
    shared = set(params) & set(defaults)
    assert {"batch_size", "grad_accum", "max_length", "truncation", "gradient_checkpointing", "learning_rate",
            "lora_r", "lora_targets", "max_grad_norm", "epochs"} <= shared
    assert {k: params[k] for k in shared} == {k: defaults[k] for k in shared}
    assert params["force"] is False and params["constrained"] is False


def test_cli_flags_mirror_trainconfig():
    from wfutils.slm.__main__ import build_parser

    args = vars(build_parser().parse_args(["--run-dir", "r"]))
    assert {k: args[k] for k in TrainConfig().to_dict()} == TrainConfig().to_dict()
    args = vars(build_parser().parse_args(["--run-dir", "r", "--no-gradient-checkpointing", "--max-steps", "3",
                                           "--max-grad-norm", "0.5", "--force"]))
    assert args["gradient_checkpointing"] is False and args["max_steps"] == 3 and args["max_grad_norm"] == 0.5
    assert args["force"] is True
    args = vars(build_parser().parse_args(["--run-dir", "r", "--flowsim-max-new-tokens", "32"]))
    assert args["flowsim_max_new_tokens"] == 32


def test_accelerate_cpu_config_keeps_the_batches_on_the_cpu(monkeypatch, tmp_path):
    """configs/accelerate/cpu.yaml on a GPU machine: accelerate keeps the model on the CPU (ACCELERATE_USE_CPU),
    so the trainer must not move the batches to cuda (it did, and the first step failed, on an H200)."""
    from wfutils.slm.training import _sft_config

    monkeypatch.delenv("ACCELERATE_USE_CPU", raising=False)
    assert _sft_config(TrainConfig(), tmp_path, has_eval=False).use_cpu is False
    monkeypatch.setenv("ACCELERATE_USE_CPU", "true")
    try:
        assert _sft_config(TrainConfig(), tmp_path, has_eval=False).use_cpu is True
    finally:  # use_cpu makes TrainingArguments reset accelerate's process-wide state: rebuild it for later trainers
        from accelerate import Accelerator
        from accelerate.state import AcceleratorState

        monkeypatch.delenv("ACCELERATE_USE_CPU")
        AcceleratorState._reset_state(reset_partial_state=True)
        Accelerator()


# ---------------------------------------------------------------- training


def test_tiny_finetune_lowers_the_loss_and_writes_a_record(trained):
    record = trained.record
    losses = [p["loss"] for p in record["loss_curve"]]
    assert len(losses) == 4 == record["steps"] == record["total_steps"]
    assert [p["step"] for p in record["loss_curve"]] == [1, 2, 3, 4]
    assert losses[-1] < 0.6 * losses[0], losses
    assert record["final_loss"] == losses[-1] and record["stopped_by"] is None
    assert record["status"] == "complete" and record["n_examples"] == 4
    assert record["config"]["lora_r"] == 8 and record["config"]["max_grad_norm"] == 1.0
    assert record["versions"]["trl"] and record["versions"]["peft"] and record["code_digest"]
    assert record["trainer"].startswith("TargetOnlyLossSFTTrainer (trl ")
    assert record["tokens_per_s"] > 0 and record["train_seconds"] > 0 and record["peak_rss_gib"] > 0
    assert record["tokens"] == 2 * sum(len(encode_example(trained.trainer.processing_class, p["request"], p["flow"]))
                                       for p in PAIRS)  # two epochs of the four pairs
    assert all(e["grad_norm"] is not None for e in record["loss_curve"])
    assert 0 < record["n_trainable_params"] < 0.05 * record["n_params"]
    assert (trained.adapter_dir / "adapter_config.json").is_file()
    assert not (trained.out_dir / "checkpoints").exists()
    assert not list(trained.out_dir.glob(".*tmp"))
    assert read_training_record(trained.out_dir) == record


def test_target_only_loss_hook_equals_the_trainers_own_loss(trained):
    from trl import SFTTrainer

    trainer = trained.trainer
    assert isinstance(trainer, SFTTrainer) and type(trainer).__name__ == "TargetOnlyLossSFTTrainer"
    batch = next(iter(trainer.get_train_dataloader()))
    n_items = (batch["labels"][:, 1:] != IGNORE_INDEX).sum()
    model = trainer.model
    model.train()
    try:
        with torch.no_grad():
            hook = trainer.compute_loss(model, dict(batch), num_items_in_batch=n_items)
            own = SFTTrainer.compute_loss(trainer, model, dict(batch), num_items_in_batch=n_items)
    finally:
        model.eval()
    assert float(hook) == pytest.approx(float(own), rel=1e-4) and float(hook) > 0


def test_finished_run_is_reused(trained, base):
    _, tok = base
    again = train_lora(PAIRS, trained.out_dir, TrainConfig(**TINY), model=object(), tokenizer=tok, progress=False)
    assert again.reused and again.record["fingerprint"] == trained.record["fingerprint"]


@pytest.mark.integration
def test_reuse_follows_the_code_digest_and_force_retrains(base, tmp_path, monkeypatch):
    import wfutils.provenance

    model, tok = base
    out = tmp_path / "run"
    config = TrainConfig(**{**TINY, "max_steps": 1})
    first = train_lora(PAIRS, out, config, model=copy.deepcopy(model), tokenizer=tok, progress=False)
    assert not first.reused
    assert train_lora(PAIRS, out, config, model=object(), tokenizer=tok, progress=False).reused
    # the installed code changed: the adapter is stale
    monkeypatch.setattr(wfutils.provenance, "code_digest", lambda: "0123456789abcdef")
    changed = train_lora(PAIRS, out, config, model=copy.deepcopy(model), tokenizer=tok, progress=False)
    assert not changed.reused and changed.record["fingerprint"] != first.record["fingerprint"]
    assert changed.record["code_digest"] == "0123456789abcdef"
    assert train_lora(PAIRS, out, config, model=object(), tokenizer=tok, progress=False).reused
    # force: retrained although nothing changed
    forced = train_lora(PAIRS, out, config, model=copy.deepcopy(model), tokenizer=tok, progress=False, force=True)
    assert not forced.reused and forced.record["finished"] >= changed.record["finished"]
    assert forced.record["fingerprint"] == changed.record["fingerprint"]
    assert read_training_record(out)["wall_seconds_this_session"] == forced.record["wall_seconds_this_session"]


class _Killed(RuntimeError):
    pass


def _kill_after_checkpoint(step: int):
    from transformers import TrainerCallback

    class KillAfterCheckpoint(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == step:
                raise _Killed(f"killed after the checkpoint of step {step}")

    return KillAfterCheckpoint()


@pytest.mark.integration
def test_interrupted_run_resumes_from_its_last_checkpoint(trained, base, tmp_path):
    model, tok = base
    out = tmp_path / "run"
    with pytest.raises(_Killed):
        train_lora(PAIRS, out, TrainConfig(**TINY), model=copy.deepcopy(model), tokenizer=tok, progress=False,
                   callbacks=[_kill_after_checkpoint(2)])
    assert (out / "checkpoints" / "checkpoint-2").is_dir() and not (out / "training_record.json").exists()
    second = train_lora(PAIRS, out, TrainConfig(**TINY), model=copy.deepcopy(model), tokenizer=tok, progress=False)
    record = second.record
    assert not second.reused and record["resumed_from_step"] == 2 and record["steps"] == 4
    assert [p["step"] for p in record["loss_curve"]] == [1, 2, 3, 4]  # the curve of the first session is kept
    resumed = [p["loss"] for p in record["loss_curve"]]
    straight = [p["loss"] for p in trained.record["loss_curve"]]
    assert resumed == pytest.approx(straight, rel=1e-3)  # same batches, same optimizer state: same run
    assert not (out / "checkpoints").exists()


def test_checkpoints_of_another_configuration_are_not_resumed(base, tmp_path):
    model, tok = base
    out = tmp_path / "run"
    with pytest.raises(_Killed):
        train_lora(PAIRS, out, TrainConfig(**{**TINY, "max_steps": 3, "checkpoint_every": 1}),
                   model=copy.deepcopy(model), tokenizer=tok, progress=False, callbacks=[_kill_after_checkpoint(1)])
    other = train_lora(PAIRS, out, TrainConfig(**{**TINY, "max_steps": 1, "learning_rate": 1e-3}),
                       model=copy.deepcopy(model), tokenizer=tok, progress=False)
    assert other.record["resumed_from_step"] is None and other.record["steps"] == 1


def test_time_budget_keeps_the_adapter_trained_so_far(base, tmp_path):
    model, tok = base
    config = TrainConfig(**{**TINY, "max_steps": 50})
    result = train_lora(PAIRS, tmp_path / "tb", config, model=copy.deepcopy(model), tokenizer=tok, progress=False,
                        time_budget_s=0.01)
    record = result.record
    assert record["stopped_by"] == "time_budget" and record["steps"] == 1
    assert record["total_steps"] == 50 and (result.adapter_dir / "adapter_config.json").is_file()
    again = train_lora(PAIRS, tmp_path / "tb", config, model=object(), tokenizer=tok, progress=False, time_budget_s=0.01)
    assert again.reused


def test_gradient_checkpointing_gives_the_same_first_step(trained, base, tmp_path):
    model, tok = base
    config = TrainConfig(**{**TINY, "max_steps": 1, "gradient_checkpointing": True})
    result = train_lora(PAIRS, tmp_path / "gc", config, model=copy.deepcopy(model), tokenizer=tok, progress=False)
    assert result.record["config"]["gradient_checkpointing"] is True
    assert result.record["loss_curve"][0]["loss"] == pytest.approx(trained.record["loss_curve"][0]["loss"], rel=1e-4)


# ---------------------------------------------------------------- generation and predictions


def _mean_loss(model, tok) -> float:
    losses = []
    with torch.no_grad():
        for p in PAIRS:
            ex = encode_example(tok, p["request"], p["flow"])
            out = model(input_ids=torch.tensor([ex.input_ids]), labels=torch.tensor([ex.labels]))
            losses.append(float(out.loss))
    return sum(losses) / len(losses)


def test_adapter_reloads_and_writes_resumable_predictions_with_their_metadata(trained, base, tmp_path):
    model, tok = load_finetuned(trained.out_dir, device="cpu")
    # The reloaded (merged) adapter is the trained model: same loss, far below the base model's.
    reloaded, in_memory, untouched = _mean_loss(model, tok), _mean_loss(trained.model, tok), _mean_loss(base[0], tok)
    assert reloaded == pytest.approx(in_memory, rel=1e-3) and reloaded < 0.6 * untouched
    system = system_name(FINE_TUNED, "smollm2-135m", "lora")
    assert system == "slm-smollm2-135m-lora"
    path = tmp_path / "predictions" / f"{system}.jsonl"
    meta = slm_system_meta(system, model, tok, base_model="smollm2-135m", adapter="slm/adapter")
    key = {"adapter": trained.record["fingerprint"]}
    rows = PAIRS[:3]

    def generate(**kwargs):
        generate_predictions(model, tok, rows, path, meta=meta, split="test", batch_size=3, max_new_tokens=12,
                             progress=False, **kwargs)

    generate(key=key)
    records = read_predictions(path)
    assert sorted(r.id for r in records) == ["p1", "p2", "p3"]
    assert tuple(json.loads(path.read_text().splitlines()[0])) == PREDICTION_FIELDS
    for r in records:
        assert r.system == system and r.split == "test" and r.reference == PAIRS[int(r.id[1]) - 1]["flow"]
        assert r.prompt_tokens == len(prompt_token_ids(tok, r.request))
        assert 0 < r.completion_tokens <= 12 and r.latency_s > 0
        assert r.output.startswith("{"), r.output  # JSON straight away, no prose
    sidecar = read_system_meta(path)
    assert (sidecar.arm, sidecar.strategy, sidecar.k, sidecar.retrieval) == ("fine-tuned", "none", 0, "none")
    assert sidecar.adapter == "slm/adapter" and sidecar.base_model == "smollm2-135m"
    assert sidecar.n_params == count_parameters(model) == pytest.approx(134.5e6, rel=0.02)
    assert sidecar.decoding == "greedy" and sidecar.engine.name == "transformers-inprocess" and sidecar.engine.local
    assert sidecar.engine.adapter_format == "peft-lora (merged)" and sidecar.engine.version == transformers.__version__
    assert sidecar.engine.quantisation == "float32" and sidecar.engine.threads == torch.get_num_threads()
    assert sidecar.model_sha256 and len(sidecar.model_sha256) == 64
    # A partial file is completed, not overwritten.
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:2]))
    generate(key=key)
    assert path.read_text().splitlines(keepends=True)[:2] == lines[:2]
    assert sorted(r.id for r in read_predictions(path)) == ["p1", "p2", "p3"]
    # Another adapter (or force) regenerates the whole file.
    path.write_text("".join(lines[:2]))
    stored_key = read_sidecar(path)["resume_key"]
    generate(key={"adapter": "another-fingerprint"})
    assert read_sidecar(path)["resume_key"] != stored_key and len(read_predictions(path)) == 3
    path.write_text("".join(lines[:1]).replace(json.loads(lines[0])["output"], "stale"))
    generate(key={"adapter": "another-fingerprint"}, force=True)
    assert len(read_predictions(path)) == 3 and "stale" not in path.read_text()


def test_generation_runs_on_the_validation_split(base, tmp_path):
    from wfutils.data.store import build_all

    model, tok = base
    run = tmp_path / "run"
    build_all(run, n_train=4, n_validation=3, n_test=2, n_ood=1, corpora=())
    meta = slm_system_meta("slm-val", model, tok, base_model="smollm2-135m")
    summary = generate_for_run(model, tok, run, meta=meta, eval_splits=["synthetic/validation"], limit=2,
                               max_new_tokens=4, progress=False)
    records = read_predictions(run / "predictions" / "slm-val.jsonl")
    # the training corpus's test split always comes first, then the splits asked for
    assert [r.split for r in records] == ["test", "test", "validation", "validation"]
    assert list(summary["splits"]) == ["synthetic/test", "synthetic/validation"]
    assert summary["splits"]["synthetic/validation"]["generated"] == 2
    with pytest.raises(ValueError, match=r"\['synthetic/nope'\] are not in this run's data"):
        generate_for_run(model, tok, run, meta=meta, eval_splits=["synthetic/nope"], progress=False)

    # test_limit: the whole headline (training corpus test) split, the others sampled by limit
    meta = slm_system_meta("slm-limits", model, tok, base_model="smollm2-135m")
    summary = generate_for_run(model, tok, run, meta=meta, eval_splits=["synthetic/validation"], limit=1,
                               test_limit=2, max_new_tokens=4, progress=False)
    assert {s: v["generated"] for s, v in summary["splits"].items()} == {"synthetic/test": 2, "synthetic/validation": 1}
    with pytest.raises(ValueError, match="test_limit must be a positive int"):
        generate_for_run(model, tok, run, meta=meta, test_limit=0, progress=False)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from wfutils.data.store import build_all

    run = tmp_path_factory.mktemp("adapter-check") / "run"
    build_all(run, n_train=4, n_validation=1, n_test=3, n_ood=1, corpora=())
    return run


def test_adapter_check_finds_that_a_trained_adapter_changes_the_base_models_answers(trained, tiny_run):
    model, tok = load_finetuned(trained.out_dir, device="cpu")  # merged: the base is loaded beside it
    meta = slm_system_meta("slm-trained", model, tok, base_model="smollm2-135m", adapter="slm/adapter")
    summary = generate_for_run(model, tok, tiny_run, meta=meta, eval_splits=["synthetic/test"], adapter_check=2,
                               max_new_tokens=16, progress=False)
    check = summary["adapter_check"]
    assert (check["split"], check["n_compared"], check["base_model"]) == ("test", 2, "smollm2-135m")
    assert check["n_changed"] >= 1 and check["n_changed"] + check["n_identical"] == 2
    assert sorted(check["changed_ids"] + check["identical_ids"]) == sorted(check["ids"])
    assert json.loads(adapter_check_path(tiny_run / "predictions" / "slm-trained.jsonl").read_text()) == check
    # no check for a system without an adapter, nor with adapter_check = 0
    meta = slm_system_meta("slm-plain", model, tok, base_model="smollm2-135m")
    assert "adapter_check" not in generate_for_run(model, tok, tiny_run, meta=meta, eval_splits=["synthetic/test"],
                                                   adapter_check=2, max_new_tokens=4, progress=False)
    with pytest.raises(ValueError, match="adapter_check must be an int >= 0"):
        generate_for_run(model, tok, tiny_run, meta=meta, adapter_check=-1, progress=False)


def test_an_adapter_that_changes_nothing_is_warned_about_and_its_check_reused(base, tiny_run, tmp_path):
    from peft import LoraConfig, get_peft_model

    model, tok = base
    untrained = get_peft_model(copy.deepcopy(model), LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                                task_type="CAUSAL_LM"))
    untrained.save_pretrained(tmp_path / "adapter")  # peft starts LoRA B at zero: the base model's answers
    peft_model, tok = load_finetuned(tmp_path / "adapter", base_model="smollm2-135m", device="cpu", merge=False)
    meta = slm_system_meta("slm-zero", peft_model, tok, base_model="smollm2-135m", adapter="adapter")

    def generate():
        with pytest.warns(AdapterUnchangedWarning, match="changed none of the first 2 answers of test requests"):
            return generate_for_run(peft_model, tok, tiny_run, meta=meta, eval_splits=["synthetic/test"],
                                    adapter_check=2, max_new_tokens=16, progress=False)

    check = generate()["adapter_check"]
    assert (check["n_compared"], check["n_identical"], check["n_changed"]) == (2, 2, 0)
    stored = adapter_check_path(tiny_run / "predictions" / "slm-zero.jsonl")
    written = stored.stat().st_mtime_ns
    assert generate()["adapter_check"] == check and stored.stat().st_mtime_ns == written  # reused, not recomputed
    with pytest.raises(ValueError, match=r"adapter_check must be >= 0 \(0: no check\), got -1"):
        GenerationConfig(adapter_check=-1)


def test_a_named_system_trains_in_its_own_folder_and_a_bad_name_is_refused_before_work(tmp_path):
    from wfutils.slm.layout import finetuning_dir

    assert finetuning_dir(tmp_path) == tmp_path / "slm"
    assert finetuning_dir(tmp_path, "slm-qwen-lora-seed1") == tmp_path / "slm" / "slm-qwen-lora-seed1"
    for bad in ("../elsewhere", "a/b", "adapter", "checkpoints", "curve", "", ".hidden"):
        with pytest.raises(ValueError, match="cannot name a folder under slm/"):
            finetuning_dir(tmp_path, bad)
        with pytest.raises(ValueError, match="invalid GenerationConfig: system .* cannot name a folder"):
            GenerationConfig(system=bad)
    assert GenerationConfig(system="slm-qwen-lora-seed1").system == "slm-qwen-lora-seed1"


def test_batched_greedy_matches_one_at_a_time(base):
    model, tok = base
    prompts = [prompt_token_ids(tok, p["request"]) for p in PAIRS[:3]]
    with slm_engine(model, tok) as engine:
        batched = engine.generate(prompts, max_new_tokens=12)
        single = [engine.generate([p], max_new_tokens=12)[0] for p in prompts]
    assert len({len(p) for p in prompts}) > 1  # different prompt lengths: left padding is exercised
    for b, s in zip(batched, single):
        assert b.text == s.text and b.completion_tokens == s.completion_tokens


def test_max_new_tokens_follows_reference_lengths(base):
    _, tok = base
    short = default_max_new_tokens(tok, [p["flow"] for p in PAIRS])
    longest = max(len(tok(p["flow"], add_special_tokens=False)["input_ids"]) for p in PAIRS)
    assert longest < short <= longest * 1.25 + 16
    meta = slm_system_meta("s", torch.nn.Linear(1, 1), tok, base_model="x")
    with pytest.raises(ValueError, match="field 'request'"):
        generate_predictions(None, tok, [{"id": "a", "flow": "{}"}], "s.jsonl", meta=meta, split="test")


def test_decoding_schema_keeps_the_flow_schema_rules():
    from jsonschema import Draft202012Validator

    from wfutils.flows.schema import validate_flow

    validator = Draft202012Validator(decoding_schema())
    good = json.loads(PAIRS[0]["flow"])
    logic = {"trigger": {"type": "daily"}, "components": [{"order": 1, "category": "flowlogic", "definition": "IF"}]}
    bad_logic = {"trigger": {"type": "daily"},
                 "components": [{"order": 1, "category": "flowlogic", "definition": "send_email"}]}
    for flow in (good, logic, bad_logic):
        assert validator.is_valid(flow) == (validate_flow(flow) == []), flow
    assert not validator.is_valid(bad_logic)


# ---------------------------------------------------------------- slow


@pytest.mark.slow
def test_schema_constrained_decoding_keeps_output_inside_the_flow_schema(trained, tmp_path):
    from wfutils.flows.schema import validate_flow
    from wfutils.slm.generation import schema_constraint

    model, tok = load_finetuned(trained.out_dir, device="cpu")
    path = tmp_path / "slm-c.jsonl"
    meta = slm_system_meta("slm-c", model, base_model="smollm2-135m", adapter="adapter", constrained=True)
    generate_predictions(model, tok, PAIRS[:2], path, meta=meta, split="test", batch_size=2, max_new_tokens=110,
                         constraint=schema_constraint(tok), progress=False)
    assert read_system_meta(path).decoding == "constrained"
    for r in read_predictions(path):
        assert r.parse_status in ("ok", "truncated"), r.output
        if r.parse_status == "ok":
            assert validate_flow(r.flow) == [], r.output
        else:  # cut by max_new_tokens: still a prefix of schema-valid JSON, never prose
            assert r.completion_tokens == 110 and r.output.lstrip().startswith("{")


@pytest.mark.slow
def test_validation_loss_selects_the_best_checkpoint(base, tmp_path):
    model, tok = base
    config = TrainConfig(**{**TINY, "eval_every": 2, "select_best": True})
    result = train_lora(PAIRS[:3], tmp_path / "sel", config, eval_rows=PAIRS[3:], model=copy.deepcopy(model),
                        tokenizer=tok, progress=False)
    record = result.record
    assert [v["step"] for v in record["validation_loss"]] == [2, 4] and record["n_validation_examples"] == 1
    best = min(record["validation_loss"], key=lambda v: v["loss"])["step"]
    assert record["best_checkpoint"].endswith(f"checkpoint-{best}")


@pytest.mark.integration
def test_validation_flowsim_curve_keeps_the_checkpoint_with_the_best_greedy_answers(base, tmp_path):
    from wfutils.slm.validation import ValidationFlowSim

    model, tok = base
    config = TrainConfig(**{**TINY, "eval_every": 2, "select_best": True, "select_metric": "flowsim",
                            "flowsim_requests": 2, "flowsim_max_new_tokens": 24, "loss_pairs": 2})
    result = train_lora(PAIRS, tmp_path / "sel", config, eval_rows=PAIRS[1:], model=copy.deepcopy(model),
                        tokenizer=tok, progress=False)
    record = result.record
    curve = record["validation_curve"]
    assert [c["step"] for c in curve] == [2, 4] and record["n_flowsim_requests"] == 2
    assert record["n_validation_examples"] == 2  # the loss on the first loss_pairs of the 3 validation pairs
    assert all(0 <= c["flowsim"] <= 1 and 0 <= c["parsed"] <= 1 and c["loss"] > 0 for c in curve), curve
    # answering the validation requests is evaluation time, not training time
    assert all(c["seconds"] > 0 for c in curve)
    assert record["train_seconds"] + sum(c["seconds"] for c in curve) <= record["wall_seconds_this_session"]
    best = max(curve, key=lambda c: c["flowsim"])  # the earliest of ties, as the trainer keeps it
    assert record["selected_by"] == "flowsim" and record["best_step"] == best["step"]
    assert record["best_checkpoint"].endswith(f"checkpoint-{best['step']}")
    # the adapter kept is the one whose greedy answers scored that FlowSim
    # ... under the test-time budget it was given (4 steps do not teach the model to stop: answers run to it)
    assert record["flowsim_max_new_tokens"] == 24
    again = ValidationFlowSim(PAIRS[1:3], tok, max_new_tokens=24).score(result.model)
    assert again["eval_flowsim"] == pytest.approx(best["flowsim"], abs=1e-4)


@pytest.mark.slow
def test_notebook_02_runs_end_to_end(tmp_path):
    """papermill run of notebook 02 on a tiny run: trains, plots, generates for both systems with their metadata."""
    import papermill

    from wfutils.data.store import build_all

    run = tmp_path / "run"
    build_all(run, n_train=16, n_validation=2, n_test=2, n_ood=1, corpora=())
    params = {"run_dir": str(run), "max_steps": 2, "batch_size": 2, "grad_accum": 1, "gradient_checkpointing": False,
              "eval_splits": ["synthetic/test"], "eval_limit": 2, "max_new_tokens_cap": 24, "lora_r": 4}
    papermill.execute_notebook(str(ROOT / "notebooks" / "02_slm_finetuning.ipynb"), str(tmp_path / "02.ipynb"),
                               kernel_name="python3", progress_bar=False, parameters=params)
    record = read_training_record(run / "slm")
    assert record["steps"] == 2 and (run / "slm" / "loss_curve.png").is_file()
    arms = {"slm-smollm2-135m-lora": ("fine-tuned", "none", 0)}  # the prompted baseline is notebook 03's
    for system, (arm, strategy, k) in arms.items():
        records = read_predictions(run / "predictions" / f"{system}.jsonl")
        assert len(records) == 2 and {r.split for r in records} == {"test"}
        meta = read_system_meta(run / "predictions" / f"{system}.jsonl")
        assert (meta.arm, meta.strategy, meta.k) == (arm, strategy, k)
    assert read_system_meta(run / "predictions" / "slm-smollm2-135m-lora.jsonl").adapter == "slm/adapter"
    summary = json.loads((run / "slm" / "generation_summary.json").read_text())
    assert set(summary) == set(arms)
    executed = (tmp_path / "02.ipynb").read_text()
    assert "flowsim_with_inputs" in executed and "flowsim_no_inputs" in executed
    check = summary["slm-smollm2-135m-lora"]["adapter_check"]  # the default adapter_check: the 2 test requests
    assert check["n_compared"] == 2 and f"the adapter changed {check['n_changed'] or 'none'} of the first 2" in executed.lower()
    # force = True retrains and regenerates
    papermill.execute_notebook(str(ROOT / "notebooks" / "02_slm_finetuning.ipynb"), str(tmp_path / "02b.ipynb"),
                               kernel_name="python3", progress_bar=False,
                               parameters={**params, "force": True})
    assert read_training_record(run / "slm")["finished"] >= record["finished"]
    assert "trained into" in (tmp_path / "02b.ipynb").read_text()


def test_generation_config_holds_the_notebook_parameters_that_are_not_training_ones():
    import papermill

    values = {p["name"]: eval(p["default"]) for p in  # noqa: S307 - the notebook's own literals
              papermill.inspect_notebook(str(ROOT / "notebooks" / "02_slm_finetuning.ipynb")).values()}
    train, generation = notebook_configs(values)
    names = {f.name for f in dataclasses.fields(TrainConfig)} | {f.name for f in dataclasses.fields(GenerationConfig)}
    assert set(values) - names == {"run_dir"}  # every other parameter is a field of one of the two
    assert generation == GenerationConfig() and train == TrainConfig(flowsim_max_new_tokens=1024)
    for name, value in values.items():
        if name in {f.name for f in dataclasses.fields(GenerationConfig)}:
            assert getattr(GenerationConfig(), name) == value, name
    with pytest.raises(ConfigError, match=r"gen_batch_size must be int, got '16'"):
        GenerationConfig(gen_batch_size="16")
    with pytest.raises(ConfigError, match=r"unknown field 'few_shot_baseline' \(known: adapter_check, constrained, "):
        from wfutils.config import config_from

        config_from(GenerationConfig, {"few_shot_baseline": 3})
    with pytest.raises(ValueError, match="eval_limit must be >= 1 or None, got 0"):
        GenerationConfig(eval_limit=0)


def test_kept_steps_become_learning_curve_adapters_that_answer_the_first_test_requests(base, tmp_path):
    from wfutils.data.predictions import read_predictions as read
    from wfutils.data.store import build_all
    from wfutils.evaluation.loading import load_system_metas
    from wfutils.slm.curve import curve_system, generate_curve_points

    model, tok = base
    tiny_run = tmp_path / "run"
    build_all(tiny_run, n_train=4, n_validation=1, n_test=3, n_ood=1, corpora=())
    slm_dir = tiny_run / "slm-curve"
    result = train_lora(PAIRS, slm_dir, TrainConfig(**{**TINY, "keep_steps": [3, 1]}), model=copy.deepcopy(model),
                        tokenizer=tok, progress=False)
    assert result.record["curve_adapters"] == {"1": "curve/step-1", "3": "curve/step-3"}
    weights = {}
    for step in (1, 3):
        folder = slm_dir / "curve" / f"step-{step}"
        assert json.loads((folder / "trainer_state.json").read_text())["global_step"] == step
        weights[step] = (folder / "adapter_model.safetensors").read_bytes()
    weights[4] = (slm_dir / "adapter" / "adapter_model.safetensors").read_bytes()
    assert len(set(weights.values())) == 3  # three different adapters: training went on between them
    assert not (slm_dir / "checkpoints").exists()
    # Each point answers the first curve_limit test requests as a learning-curve system, under the budget given.
    generation = GenerationConfig(curve_limit=2, gen_batch_size=2)
    summaries = generate_curve_points(tiny_run, slm_dir, system="slm-tiny-lora", base_model="smollm2-135m",
                                      generation=generation, max_new_tokens=8, progress=False)
    assert list(summaries) == [curve_system("slm-tiny-lora", 1), curve_system("slm-tiny-lora", 3)]
    metas = load_system_metas(tiny_run, learning_curve=True)
    for name in summaries:
        meta, answers = metas[name], read(tiny_run / "predictions" / f"{name}.jsonl")
        assert meta.learning_curve and meta.arm == FINE_TUNED and meta.adapter.startswith("slm-curve/curve/step-")
        assert len(answers) == 2 and all(a.split == "test" and a.completion_tokens <= 8 for a in answers)
    # Left out of every comparison unless asked for; a run of nothing else has no system to compare.
    with pytest.raises(FileNotFoundError, match="only learning-curve points"):
        load_system_metas(tiny_run)
    # A reused run's answers are reused, not regenerated.
    again = generate_curve_points(tiny_run, slm_dir, system="slm-tiny-lora", base_model="smollm2-135m",
                                  generation=generation, max_new_tokens=8, progress=False)
    assert all(split["generated"] == 0 for s in again.values() for split in s["splits"].values())


def test_kept_steps_must_lie_before_the_last_step():
    with pytest.raises(ValueError, match="keep_steps must be steps in 1..max_steps-1"):
        TrainConfig(max_steps=4, keep_steps=(4,))
    with pytest.raises(ValueError, match="keep_steps"):
        TrainConfig(max_steps=4, keep_steps=(0, 2))
    assert TrainConfig(max_steps=4, keep_steps=[3, 1, 3]).keep_steps == (1, 3)


def test_cli_takes_kept_steps_as_numbers():
    from wfutils.slm.__main__ import build_parser

    args = vars(build_parser().parse_args(["--run-dir", "r", "--max-steps", "40", "--keep-steps", "20", "10"]))
    assert TrainConfig(**{k: args[k] for k in TrainConfig().to_dict()}).keep_steps == (10, 20)
