"""Fine-tune a small language model on (request -> flow) pairs with LoRA, through TRL's ``SFTTrainer``.

Each pair is tokenised with :mod:`wfutils.slm.formatting` (prompt = chat template + instruction +
request; completion = the flow's compact JSON + end-of-turn) and handed to the trainer as
``input_ids`` + ``completion_mask``, so TRL computes the loss on the completion only. Everything
else is the trainer's: length-grouped batches (``group_by_length``), gradient accumulation and
clipping (``max_grad_norm``), the learning-rate schedule, checkpoints every ``checkpoint_every``
steps with ``resume_from_checkpoint`` (a killed run started again with the same configuration,
data and code continues from its last checkpoint), and the accelerate integration: under
``accelerate launch --config_file configs/accelerate/<x>.yaml -m wfutils.slm ...`` the same code
runs data-parallel, with DeepSpeed ZeRO or with FSDP.

Two things are added as trainer callbacks: a time budget (training stops at the first step
boundary past ``time_budget_s`` and the adapter trained so far is kept; the record says
``"stopped_by": "time_budget"``) and the per-step clock behind the record's loss curve and
tokens/s. The finished adapter is saved in ``<out_dir>/adapter/`` beside
``training_record.json`` (configuration, fingerprint, versions, code digest, loss curve,
tokens/s, peak memory).

A finished run is reused when its fingerprint (configuration + training data + the installed
code's digest) is unchanged; ``force=True`` retrains.

One speed trick of the former hand-written loop stays, as a ``compute_loss`` override of the
trainer: the loss projects only the target positions onto the vocabulary
(:func:`target_only_loss`; the full logits tensor is a small model's largest allocation).
``benchmarks/slm_bench.py`` measured it 1.35x the tokens/s of the plain ``SFTTrainer`` on the same
batches, interleaved step by step, with the same losses (see that module's docstring).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import warnings
from contextlib import contextmanager
from functools import lru_cache
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from wfutils import provenance
from wfutils.slm.formatting import (
    IGNORE_INDEX,
    SYSTEM_PROMPT,
    completion_token_ids,
    prompt_token_ids,
)
from wfutils.slm.generation import GenerationConfig, default_max_new_tokens
from wfutils.slm.layout import ADAPTER_DIR, CHECKPOINT_DIR, CURVE_DIR
from wfutils.slm.validation import ValidationFlowSim, validation_curve
from wfutils.storage import atomic_dir, atomic_write_json, remove_leftovers

__all__ = [
    "ALL_PROJECTIONS",
    "TrainConfig",
    "notebook_configs",
    "EncodedExample",
    "TrainResult",
    "TrainingClock",
    "build_trainer",
    "supports_target_only_loss",
    "target_only_loss",
    "encode_example",
    "encode_dataset",
    "train_lora",
    "load_finetuned",
    "read_training_record",
]

ALL_PROJECTIONS: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
RECORD_FILE = "training_record.json"
_CHECKPOINT_FINGERPRINT = "run_fingerprint.json"


# --------------------------------------------------------------------------- configuration


@dataclass
class TrainConfig:
    """Parameters of a LoRA fine-tuning run; the defaults are the study's (notebook 02 repeats them).

    All values are JSON-serialisable and stored in the training record. Profiles override only
    what differs (``wfutils/study/profiles/profiles.yml``).
    """

    base_model: str = "smollm2-135m"
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] = ALL_PROJECTIONS
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 5
    lr_schedule: str = "linear"  # linear | constant (after warm-up)
    max_grad_norm: float = 1.0  # gradient clipping; 0 disables it
    batch_size: int = 4  # micro-batch per process
    grad_accum: int = 2  # micro-batches per optimizer step
    epochs: float = 1.0
    max_steps: int | None = None  # overrides epochs when set
    max_length: int = 768  # tokens of prompt + flow
    truncation: str = "drop"  # drop | error  (what to do with examples longer than max_length)
    group_by_length: bool = True  # batches of similar lengths (less padding)
    seed: int = 0
    bf16: bool = False
    gradient_checkpointing: bool = True  # on: the defaults fit a small machine's memory (book/methods.md)
    checkpoint_every: int = 25  # optimizer steps between checkpoints
    keep_steps: tuple[int, ...] = ()  # steps whose adapters are kept as learning-curve points (curve/step-<N>/)
    eval_every: int | None = None  # steps between validation losses (needs validation rows); None: never
    select_best: bool = False  # keep the best checkpoint on the validation split (never the test split)
    select_metric: str = "loss"  # what select_best compares: "loss" (lowest) or "flowsim" (highest greedy FlowSim)
    flowsim_requests: int = 16  # validation requests greedy-decoded at each evaluation (the FlowSim curve); 0: loss only
    flowsim_batch_size: int = 16  # validation requests decoded together (larger on a GPU)
    flowsim_max_new_tokens: int | None = None  # their answer budget (pass the test-time cap); None: from the references
    loss_pairs: int | None = None  # validation pairs the loss is computed on (the first N); None: all of them
    context_column: str | None = None  # a column with extra prompt context (retrieved entries)
    system_prompt: str = SYSTEM_PROMPT
    num_threads: int | None = None  # torch CPU threads; None = all CPUs this process may use

    def __post_init__(self) -> None:
        self.lora_targets = tuple(self.lora_targets)
        self.keep_steps = tuple(sorted(set(self.keep_steps)))
        problems = []
        bad = [s for s in self.keep_steps if isinstance(s, bool) or not isinstance(s, int) or s < 1
               or (self.max_steps is not None and s >= self.max_steps)]
        if bad:
            problems.append(f"keep_steps must be steps in 1..max_steps-1 (the last step is the run's own adapter), "
                            f"got {list(bad)!r}")
        if self.truncation not in ("error", "drop"):
            problems.append(f"truncation must be 'error' or 'drop', got {self.truncation!r}")
        if self.lr_schedule not in ("linear", "constant"):
            problems.append(f"lr_schedule must be 'linear' or 'constant', got {self.lr_schedule!r}")
        for name in ("lora_r", "batch_size", "grad_accum", "max_length", "checkpoint_every", "flowsim_batch_size"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.max_steps is None and not self.epochs > 0:
            problems.append(f"epochs must be > 0 when max_steps is not set, got {self.epochs!r}")
        if self.max_steps is not None and self.max_steps < 1:
            problems.append(f"max_steps must be >= 1, got {self.max_steps!r}")
        if self.max_grad_norm < 0:
            problems.append(f"max_grad_norm must be >= 0, got {self.max_grad_norm!r}")
        if self.eval_every is not None and self.eval_every < 1:
            problems.append(f"eval_every must be >= 1 or None, got {self.eval_every!r}")
        if self.select_best and self.eval_every is None:
            problems.append("select_best needs eval_every (validation losses to select on)")
        if self.select_metric not in ("loss", "flowsim"):
            problems.append(f"select_metric must be 'loss' or 'flowsim', got {self.select_metric!r}")
        if self.flowsim_max_new_tokens is not None and self.flowsim_max_new_tokens < 1:
            problems.append(f"flowsim_max_new_tokens must be >= 1 or None, got {self.flowsim_max_new_tokens!r}")
        if self.loss_pairs is not None and self.loss_pairs < 1:
            problems.append(f"loss_pairs must be >= 1 or None, got {self.loss_pairs!r}")
        if self.flowsim_requests < 0:
            problems.append(f"flowsim_requests must be >= 0, got {self.flowsim_requests!r}")
        if self.select_metric == "flowsim" and self.flowsim_requests == 0:
            problems.append("select_metric='flowsim' needs flowsim_requests > 0 (validation answers to score)")
        if not self.lora_targets:
            problems.append("lora_targets is empty")
        if problems:
            raise ValueError("invalid TrainConfig: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """The configuration as plain JSON values."""
        data = asdict(self)
        data["lora_targets"] = list(self.lora_targets)
        data["keep_steps"] = list(self.keep_steps)
        return data

    def fingerprint(self, data_digest: str) -> str:
        """Identifies a run: same config + same data + same installed code = same fingerprint (reuse, resume)."""
        data = self.to_dict()
        data.pop("checkpoint_every")
        data.pop("num_threads")
        blob = json.dumps({"config": data, "data": data_digest, "code": provenance.code_digest()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def notebook_configs(values: Mapping[str, Any]) -> tuple[TrainConfig, GenerationConfig]:
    """Notebook 02's parameters (found among ``values``, e.g. the notebook's ``globals()``) as the two
    configurations: every parameter but ``run_dir`` is a field of one of them. Validation answers use the
    test-time answer budget (``flowsim_max_new_tokens = max_new_tokens_cap``)."""
    from dataclasses import fields

    train = {f.name: values[f.name] for f in fields(TrainConfig) if f.name in values}
    for name in ("lora_targets", "keep_steps"):
        if name in train:
            train[name] = tuple(train[name] or ())
    generation = GenerationConfig(**{f.name: values[f.name] for f in fields(GenerationConfig) if f.name in values})
    train.setdefault("flowsim_max_new_tokens", generation.max_new_tokens_cap)
    return TrainConfig(**train), generation


# --------------------------------------------------------------------------- encoding


@dataclass
class EncodedExample:
    """One training example as token ids; ``labels`` is IGNORE_INDEX on the prompt."""

    id: str
    input_ids: list[int]
    labels: list[int]

    @property
    def n_prompt(self) -> int:
        return sum(1 for x in self.labels if x == IGNORE_INDEX)

    @property
    def completion_mask(self) -> list[int]:
        """1 where the token belongs to the completion (flow + end-of-turn), 0 on the prompt."""
        return [0 if x == IGNORE_INDEX else 1 for x in self.labels]

    def __len__(self) -> int:
        return len(self.input_ids)


def encode_example(
    tokenizer: Any,
    request: str,
    flow: Any,
    *,
    id: str = "",
    context: str | None = None,
    system_prompt: str = SYSTEM_PROMPT,
) -> EncodedExample:
    """Prompt + compact-JSON flow + end-of-turn, with loss only on the flow and end-of-turn tokens."""
    prompt = prompt_token_ids(tokenizer, request, context=context, system_prompt=system_prompt)
    target = completion_token_ids(tokenizer, flow)
    return EncodedExample(id=str(id), input_ids=prompt + target, labels=[IGNORE_INDEX] * len(prompt) + target)


def _rows(data: Any) -> list[dict[str, Any]]:
    if hasattr(data, "to_list"):
        return list(data.to_list())
    return [dict(r) for r in data]


def encode_dataset(
    tokenizer: Any,
    rows: Iterable[Mapping[str, Any]],
    *,
    max_length: int,
    truncation: str = "error",
    context_column: str | None = None,
    system_prompt: str = SYSTEM_PROMPT,
    split: str = "training",
) -> tuple[list[EncodedExample], list[dict[str, Any]]]:
    """Check and encode rows (id, request, flow); returns (examples, dropped).

    Raises ValueError naming the record for an empty split, a missing/empty field, a flow that
    is not JSON, or (with ``truncation="error"``) examples longer than ``max_length``; with
    ``truncation="drop"`` those are left out and listed in ``dropped``.
    """
    rows = _rows(rows)
    if not rows:
        raise ValueError(f"the {split} split is empty: nothing to fine-tune on")
    examples: list[EncodedExample] = []
    for i, row in enumerate(rows):
        rid = str(row.get("id", i))
        for name in ("request", "flow"):
            if not row.get(name):
                raise ValueError(f"{split} record {i} (id {rid!r}): field {name!r} is missing or empty")
        if context_column and context_column not in row:
            raise ValueError(f"{split} record {i} (id {rid!r}): context column {context_column!r} is missing")
        flow = row["flow"]
        if isinstance(flow, str):
            try:
                json.loads(flow)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{split} record {i} (id {rid!r}): field 'flow' is not valid JSON ({exc.msg})") from None
        context = row.get(context_column) if context_column else None
        examples.append(encode_example(tokenizer, row["request"], flow, id=rid, context=context,
                                       system_prompt=system_prompt))
    too_long = [e for e in examples if len(e) > max_length]
    dropped: list[dict[str, Any]] = []
    if too_long:
        worst = sorted(too_long, key=len, reverse=True)
        listing = ", ".join(f"{e.id} ({len(e)} tokens)" for e in worst[:5])
        if truncation == "error":
            raise ValueError(
                f"{len(too_long)} of {len(examples)} {split} examples are longer than max_length={max_length} "
                f"tokens (longest: {listing}); raise max_length to at least {len(worst[0])} or pass "
                f"truncation='drop' to leave them out"
            )
        dropped = [{"id": e.id, "tokens": len(e)} for e in too_long]
        examples = [e for e in examples if len(e) <= max_length]
        if not examples:
            raise ValueError(f"every {split} example is longer than max_length={max_length} tokens ({listing})")
    return examples, dropped


def _data_digest(examples: Sequence[EncodedExample]) -> str:
    h = hashlib.sha256()
    for e in examples:
        h.update(e.id.encode())
        h.update(json.dumps(e.input_ids).encode())
        h.update(str(e.n_prompt).encode())
    return h.hexdigest()[:16]


def _as_dataset(examples: Sequence[EncodedExample]):
    """The trainer's view: token ids plus TRL's ``completion_mask`` (labels are built from it)."""
    from datasets import Dataset

    return Dataset.from_dict({"input_ids": [e.input_ids for e in examples],
                              "completion_mask": [e.completion_mask for e in examples]})


# --------------------------------------------------------------------------- callbacks


def _callback_bases():
    from transformers import TrainerCallback
    from transformers.trainer_callback import ExportableState

    return TrainerCallback, ExportableState


class TrainingClock(*_callback_bases()):
    """Per-step wall time, tokens and loss (the record's loss curve), and the time budget.

    A step's time is the trainer's work from the end of the previous step (or of the evaluation
    or checkpoint written after it) to the end of this one, so evaluations and checkpoints count
    neither in ``train_seconds`` / tokens per second nor against the time budget.

    Its state is saved in every checkpoint (``ExportableState``), so a resumed run continues
    the same curve and counts the training time of its earlier sessions against the budget.
    When the budget is reached the trainer stops at the end of that step.
    """

    def __init__(self, time_budget_s: float | None = None, progress: bool = False) -> None:
        self.time_budget_s = time_budget_s
        self.progress = progress
        self.train_seconds = 0.0
        self.curve: list[dict[str, Any]] = []
        self.stopped_by: str | None = None
        self.resumed_from_step: int | None = None
        self._last = 0.0
        self._tokens_seen = 0
        self._bar = None

    def state(self) -> dict[str, Any]:
        return {"args": {"time_budget_s": self.time_budget_s, "progress": self.progress},
                "attributes": {"train_seconds": self.train_seconds, "curve": self.curve}}

    def on_train_begin(self, args, state, control, **kwargs):
        if state.global_step:
            self.resumed_from_step = state.global_step
            self.curve = [e for e in self.curve if e["step"] <= state.global_step]
        self._tokens_seen = 0
        if self.progress and state.is_world_process_zero:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=state.max_steps, initial=state.global_step, desc="fine-tuning", unit="step")
        self._last = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        now = time.perf_counter()
        seconds, self._last = now - self._last, now  # the whole step: batches, forward/backward, update
        self.train_seconds += seconds
        self.curve.append({"step": state.global_step, "loss": None, "lr": None, "grad_norm": None,
                           "tokens": None, "seconds": round(seconds, 4)})
        if self.time_budget_s is not None and self.train_seconds >= self.time_budget_s:
            control.should_training_stop = True
            self.stopped_by = "time_budget"
        if self._bar is not None:
            self._bar.update(1)
        return control

    def on_evaluate(self, args, state, control, **kwargs):
        self._last = time.perf_counter()  # evaluation is not training time: the next step starts here

    def on_save(self, args, state, control, **kwargs):
        self._last = time.perf_counter()  # nor is writing a checkpoint

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "loss" not in logs or not self.curve or self.curve[-1]["step"] != state.global_step:
            return
        entry = self.curve[-1]
        entry["loss"] = round(float(logs["loss"]), 5)
        entry["lr"] = logs.get("learning_rate")
        if logs.get("grad_norm") is not None:
            entry["grad_norm"] = round(float(logs["grad_norm"]), 5)
        if "num_tokens" in logs:  # TRL's running count of (unpadded) tokens in this session
            entry["tokens"] = int(logs["num_tokens"]) - self._tokens_seen
            self._tokens_seen = int(logs["num_tokens"])
        if self._bar is not None:
            self._bar.set_postfix(loss=f"{entry['loss']:.3f}",
                                  tok_s=f"{(entry['tokens'] or 0) / max(entry['seconds'], 1e-9):.0f}")

    def on_train_end(self, args, state, control, **kwargs):
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self._last = 0.0


class KeepAdapters(_callback_bases()[0]):
    """Saves a checkpoint at each of ``steps`` and copies its adapter, with the trainer state that says its step,
    to ``<dest>/step-<N>/`` (learning-curve points of one run; checkpoints themselves are rotated and deleted).

    A resumed run keeps the copies made before the interruption."""

    FILES = ("adapter_model.safetensors", "adapter_config.json", "trainer_state.json")

    def __init__(self, steps: Sequence[int], dest: Path) -> None:
        self.steps = frozenset(steps)
        self.dest = Path(dest)

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step in self.steps:
            control.should_save = True
        return control

    def on_save(self, args, state, control, **kwargs):
        step = state.global_step
        target = self.dest / f"step-{step}"
        if step not in self.steps or not state.is_world_process_zero or target.is_dir():
            return
        source = Path(args.output_dir) / f"checkpoint-{step}"
        missing = [name for name in self.FILES if not (source / name).is_file()]
        if missing:
            raise FileNotFoundError(f"checkpoint {source} lacks {', '.join(missing)}: cannot keep its adapter")
        with atomic_dir(target) as tmp:
            for name in self.FILES:
                shutil.copy2(source / name, Path(tmp) / name)


# --------------------------------------------------------------------------- loss hook

_PLAIN_DECODERS = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM",
                   "Phi3ForCausalLM", "OlmoForCausalLM", "Olmo2ForCausalLM", "GraniteForCausalLM")


def supports_target_only_loss(causal_lm: Any) -> bool:
    """True for decoders whose logits are exactly ``lm_head(last hidden state)`` (no soft-capping/scaling)."""
    config = causal_lm.config
    return (type(causal_lm).__name__ in _PLAIN_DECODERS and not getattr(config, "final_logit_softcapping", None)
            and getattr(config, "logits_scaling", 1.0) in (1.0, None)
            and hasattr(causal_lm, "model") and causal_lm.get_output_embeddings() is not None)


def target_only_loss(causal_lm: Any, input_ids: Any, attention_mask: Any, labels: Any, num_items: Any) -> Any:
    """Summed next-token cross-entropy over the target tokens, divided by ``num_items``.

    Equal to the model's own loss with ``num_items_in_batch=num_items``, but the vocabulary
    projection is computed only where a label follows (not on prompt or padding positions).
    """
    import torch.nn.functional as F

    hidden = causal_lm.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    shifted = labels[:, 1:]
    keep = shifted != IGNORE_INDEX
    logits = causal_lm.get_output_embeddings()(hidden[:, :-1][keep])
    return F.cross_entropy(logits.float(), shifted[keep], reduction="sum") / num_items


@lru_cache(maxsize=1)
def _sft_trainer_class() -> type:
    from trl import SFTTrainer

    class TargetOnlyLossSFTTrainer(SFTTrainer):
        """TRL's ``SFTTrainer`` whose training loss projects only the target positions onto the vocabulary.

        Same loss (to float rounding) as the trainer's own; ``benchmarks/slm_bench.py`` measured it
        1.35x the plain trainer's tokens/s on the same batches (2 CPU cores, SmolLM2-135M). Used for
        one-process training of plain decoders (:func:`supports_target_only_loss`); evaluation, other
        models and multi-process runs (DDP, DeepSpeed, FSDP) keep the trainer's own loss. The trainer's
        token-level metrics (entropy, token accuracy) are not logged on this path; ``num_tokens`` is.
        """

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            causal_lm = self.accelerator.unwrap_model(model)
            causal_lm = causal_lm.get_base_model() if hasattr(causal_lm, "get_base_model") else causal_lm
            if (return_outputs or not model.training or self.accelerator.num_processes != 1
                    or not supports_target_only_loss(causal_lm)):
                return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                            num_items_in_batch=num_items_in_batch)
            labels = inputs["labels"]
            n = num_items_in_batch if num_items_in_batch is not None else (labels[:, 1:] != IGNORE_INDEX).sum()
            loss = target_only_loss(causal_lm, inputs["input_ids"], inputs["attention_mask"], labels,
                                    max(1, int(n)))
            self._total_train_tokens += int(inputs["attention_mask"].sum())  # what TRL logs as num_tokens
            self._metrics["train"]["num_tokens"] = [self._total_train_tokens]
            return loss

    return TargetOnlyLossSFTTrainer


# --------------------------------------------------------------------------- training


@dataclass
class TrainResult:
    """What :func:`train_lora` produced."""

    out_dir: Path
    adapter_dir: Path
    record: dict[str, Any]
    reused: bool = False  # True when a finished run with the same fingerprint was found
    model: Any = field(default=None, repr=False)  # the trained PEFT model (None when reused)
    trainer: Any = field(default=None, repr=False)  # the SFTTrainer (None when reused)

    def release(self) -> None:
        """Free the trained model and its trainer (the adapter is on disk): their memory is the run's largest."""
        import gc

        self.model = self.trainer = None
        gc.collect()


def read_training_record(out_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The training record of a finished run directory (``<out_dir>/training_record.json``)."""
    path = Path(out_dir) / RECORD_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no training record at {path}: has the fine-tuning run finished?")
    return json.loads(path.read_text(encoding="utf-8"))


def _stored_fingerprint(ckpt_root: Path) -> str | None:
    try:
        return json.loads((ckpt_root / _CHECKPOINT_FINGERPRINT).read_text(encoding="utf-8")).get("fingerprint")
    except (OSError, ValueError, AttributeError):
        return None


def _prepare_checkpoints(ckpt_root: Path, fingerprint: str) -> None:
    """Delete checkpoints of another run (configuration, data or code) and mark the folder as this run's."""
    if ckpt_root.is_dir() and _stored_fingerprint(ckpt_root) != fingerprint:
        shutil.rmtree(ckpt_root, ignore_errors=True)
    atomic_write_json(ckpt_root / _CHECKPOINT_FINGERPRINT, {"fingerprint": fingerprint})


def _last_checkpoint(ckpt_root: Path, fingerprint: str) -> str | None:
    """The newest checkpoint of this very run (None when there is none)."""
    from transformers.trainer_utils import get_last_checkpoint

    if not ckpt_root.is_dir() or _stored_fingerprint(ckpt_root) != fingerprint:
        return None
    return get_last_checkpoint(str(ckpt_root))


def _sft_config(config: TrainConfig, ckpt_root: Path, *, has_eval: bool):
    from accelerate.utils import parse_flag_from_env
    from trl import SFTConfig

    warmup = config.warmup_steps
    schedule = {"linear": "linear", "constant": "constant_with_warmup"}[config.lr_schedule]
    kwargs: dict[str, Any] = {}
    if has_eval and config.eval_every:
        kwargs.update(eval_strategy="steps", eval_steps=config.eval_every, per_device_eval_batch_size=config.batch_size)
        if config.select_best:
            flowsim = config.select_metric == "flowsim"
            kwargs.update(load_best_model_at_end=True, metric_for_best_model="eval_flowsim" if flowsim else "eval_loss",
                          greater_is_better=flowsim)
    return SFTConfig(
        output_dir=str(ckpt_root),
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps if config.max_steps is not None else -1,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        lr_scheduler_type=schedule,
        warmup_steps=warmup,
        max_grad_norm=config.max_grad_norm,
        optim="adamw_torch",
        seed=config.seed,
        bf16=config.bf16,
        fp16=False,
        # accelerate's cpu config keeps the model on the CPU; the trainer must put the batches there too
        # (on a GPU machine it picked cuda and training failed, found 2026-11-26 on an H200)
        use_cpu=parse_flag_from_env("ACCELERATE_USE_CPU"),
        activation_checkpointing=config.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if config.gradient_checkpointing else None,
        train_sampling_strategy="group_by_length" if config.group_by_length else "random",
        max_length=config.max_length,
        completion_only_loss=True,
        packing=False,
        save_strategy="steps",
        save_steps=config.eval_every if config.select_best else config.checkpoint_every,
        save_total_limit=1,
        restore_callback_states_from_checkpoint=True,
        logging_strategy="steps",
        logging_steps=1,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
        **kwargs,
    )


@contextmanager
def _no_dataset_progress_bars() -> Iterator[None]:
    """Silence the ``datasets`` progress bars of TRL's (instant) dataset preparation."""
    import datasets

    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()


def _quiet(trainer: Any) -> None:
    """Drop the trainer's own log printers (one line per step); :class:`TrainingClock` shows progress."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    for cb in list(trainer.callback_handler.callbacks):
        if isinstance(cb, (PrinterCallback, ProgressCallback)) or type(cb).__name__ == "NotebookProgressCallback":
            trainer.remove_callback(cb)


def build_trainer(
    examples: Sequence[EncodedExample],
    config: TrainConfig,
    *,
    model: Any,
    tokenizer: Any,
    output_dir: str | os.PathLike[str],
    eval_examples: Sequence[EncodedExample] = (),
    callbacks: Sequence[Any] = (),
    trainer_cls: type | None = None,
) -> Any:
    """The trainer of a run: LoRA from ``config`` injected into ``model``, encoded examples with their
    completion masks, checkpoints under ``output_dir``. ``trainer_cls`` defaults to TRL's ``SFTTrainer``
    with the target-only loss hook; pass ``trl.SFTTrainer`` for the trainer's own loss."""
    from peft import LoraConfig

    model.config.use_cache = False
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=list(config.lora_targets), task_type="CAUSAL_LM", bias="none")
    args = _sft_config(config, Path(output_dir), has_eval=bool(eval_examples))
    with warnings.catch_warnings(), _no_dataset_progress_bars():
        # peft 0.21 reads a property that transformers 5 deprecates
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        trainer = (trainer_cls or _sft_trainer_class())(model=model, args=args, train_dataset=_as_dataset(examples),
                                              eval_dataset=_as_dataset(eval_examples) if eval_examples else None,
                                              processing_class=tokenizer, peft_config=lora,
                                              callbacks=list(callbacks))
    _quiet(trainer)
    return trainer


def train_lora(
    train_rows: Iterable[Mapping[str, Any]],
    out_dir: str | os.PathLike[str],
    config: TrainConfig | None = None,
    *,
    model: Any = None,
    tokenizer: Any = None,
    eval_rows: Iterable[Mapping[str, Any]] | None = None,
    progress: bool = True,
    force: bool = False,
    time_budget_s: float | None = None,
    callbacks: Sequence[Any] = (),
    trainer_cls: type | None = None,
) -> TrainResult:
    """Fine-tune ``config.base_model`` with LoRA on rows with ``id``, ``request``, ``flow``.

    Writes ``<out_dir>/adapter/``, ``<out_dir>/training_record.json`` and, while running,
    ``<out_dir>/checkpoints/``. A finished run with the same fingerprint (configuration, data,
    code digest) and time budget is reused unless ``force``; an unfinished one resumes from
    its last checkpoint (``force`` discards it).

    ``model``/``tokenizer`` may be passed to reuse an already loaded base model; LoRA layers are
    injected into it in place (pass a copy if the base model is needed afterwards).
    ``eval_rows`` (the training corpus's *validation* split, never test) gives validation losses every
    ``config.eval_every`` steps (on its first ``config.loss_pairs`` rows) and, for its first
    ``config.flowsim_requests`` rows, the greedy FlowSim
    (:class:`wfutils.slm.validation.ValidationFlowSim`); with ``config.select_best`` the adapter of the
    best evaluation by ``config.select_metric`` is kept. The record's ``validation_curve`` holds both.
    ``time_budget_s`` caps the training time; ``callbacks`` are extra ``TrainerCallback`` objects;
    ``trainer_cls`` replaces the trainer class (``trl.SFTTrainer``: the trainer's own loss).
    """
    import torch

    from wfutils.models import load_model_and_tokenizer, resolve_model, set_threads

    config = config or TrainConfig()
    out_dir = Path(out_dir)
    # ---- checks before any expensive work
    model_path = resolve_model(config.base_model) if model is None else None
    if tokenizer is None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_path or resolve_model(config.base_model), local_files_only=True)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    examples, dropped = encode_dataset(tokenizer, train_rows, max_length=config.max_length,
                                       truncation=config.truncation, context_column=config.context_column,
                                       system_prompt=config.system_prompt)
    eval_examples: list[EncodedExample] = []
    curve_callbacks: list[Any] = []
    if eval_rows is not None and config.eval_every:
        eval_rows = _rows(eval_rows)
        eval_examples, _ = encode_dataset(tokenizer, eval_rows[:config.loss_pairs], max_length=config.max_length,
                                          truncation="drop", context_column=config.context_column,
                                          system_prompt=config.system_prompt, split="validation")
        if config.flowsim_requests and eval_rows:
            scored = eval_rows[:config.flowsim_requests]
            budget = default_max_new_tokens(tokenizer, [r["flow"] for r in scored],
                                            cap=min(config.max_length, config.flowsim_max_new_tokens or config.max_length))
            curve_callbacks.append(ValidationFlowSim(scored, tokenizer, max_new_tokens=budget,
                                                     batch_size=config.flowsim_batch_size,
                                                     system_prompt=config.system_prompt,
                                                     context_column=config.context_column))
    elif config.select_best:
        raise ValueError("select_best needs eval_rows (the validation split)")
    digest = _data_digest(examples) + (("+" + _data_digest(eval_examples)) if eval_examples else "")
    fingerprint = config.fingerprint(digest)
    record_path = out_dir / RECORD_FILE
    ckpt_root = out_dir / CHECKPOINT_DIR
    if not force and record_path.is_file():
        record = read_training_record(out_dir)
        if (record.get("fingerprint") == fingerprint and record.get("time_budget_s") == time_budget_s
                and (out_dir / ADAPTER_DIR).is_dir()):
            return TrainResult(out_dir, out_dir / ADAPTER_DIR, record, reused=True)

    from accelerate import PartialState

    processes = PartialState()  # the trainer's accelerator shares it (one process, or every launched one)
    if processes.is_main_process:  # only one process deletes stale checkpoints and marks the run
        remove_leftovers(out_dir)  # what an interrupted writer left (staging adapter, temporary files)
        if force:
            shutil.rmtree(ckpt_root, ignore_errors=True)
        _prepare_checkpoints(ckpt_root, fingerprint)
    processes.wait_for_everyone()
    resume = _last_checkpoint(ckpt_root, fingerprint)

    threads = set_threads(config.num_threads)
    torch.manual_seed(config.seed)
    if model is None:  # the trainer moves it to its device (or shards it under DeepSpeed / FSDP)
        model, _ = load_model_and_tokenizer(model_path, dtype="bfloat16" if config.bf16 else "float32", device="cpu")
    clock = TrainingClock(time_budget_s, progress=progress)
    keep = [KeepAdapters(config.keep_steps, out_dir / CURVE_DIR)] if config.keep_steps else []
    if processes.is_main_process and (force or not resume):  # curve points of another (or a restarted) run
        shutil.rmtree(out_dir / CURVE_DIR, ignore_errors=True)
    trainer = build_trainer(examples, config, model=model, tokenizer=tokenizer, output_dir=ckpt_root,
                            eval_examples=eval_examples, callbacks=[*curve_callbacks, *keep, clock, *callbacks],
                            trainer_cls=trainer_cls)  # the clock after the FlowSim curve: generation is not a step
    wall0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        output = trainer.train(resume_from_checkpoint=resume)
    wall = time.perf_counter() - wall0
    # A resumed run restores the clock from the checkpoint as a new callback object.
    clock = next(cb for cb in trainer.callback_handler.callbacks if isinstance(cb, TrainingClock))
    if resume and clock.resumed_from_step is None:
        clock.resumed_from_step = int(Path(resume).name.rsplit("-", 1)[-1])

    peft_model = trainer.model
    staging = out_dir / f".{ADAPTER_DIR}.staging.tmp"
    trainer.save_model(str(staging))  # every process (gathers sharded weights); the main one writes
    record: dict[str, Any] = {}
    if trainer.is_world_process_zero():
        with atomic_dir(out_dir / ADAPTER_DIR) as tmp:
            shutil.copytree(staging, tmp, dirs_exist_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
        state = trainer.state
        curve = clock.curve
        tokens = sum(e["tokens"] or 0 for e in curve)
        secs = max(clock.train_seconds, 1e-9)
        n_trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
        n_total = sum(p.numel() for p in peft_model.parameters())
        target_tokens = sum(len(e) - e.n_prompt for e in examples)
        validation = [{"step": h["step"], "loss": h["eval_loss"]} for h in state.log_history if "eval_loss" in h]
        record = {
            "status": "complete",
            "fingerprint": fingerprint,
            "code_digest": provenance.code_digest(),
            "config": config.to_dict(),
            "trainer": f"{type(trainer).__name__} (trl {_version('trl')}, transformers {_version('transformers')})",
            "base_model": config.base_model,
            "base_model_path": str(model_path) if model_path else None,
            "versions": provenance.version_record(),
            "n_examples": len(examples),
            "dropped_too_long": dropped,
            "n_validation_examples": len(eval_examples),
            "n_trainable_params": n_trainable,
            "n_params": n_total,
            "steps": state.global_step,
            "total_steps": state.max_steps,
            "stopped_by": clock.stopped_by,
            "time_budget_s": time_budget_s,
            "epochs": round(float(state.epoch or 0.0), 3),
            "tokens": tokens,
            "target_tokens_per_epoch": target_tokens,
            "train_seconds": round(clock.train_seconds, 2),
            "wall_seconds_this_session": round(wall, 2),
            "tokens_per_s": round(tokens / secs, 1),
            "final_loss": next((e["loss"] for e in reversed(curve) if e["loss"] is not None), None),
            "mean_train_loss_this_session": round(float(output.training_loss), 5),
            "loss_curve": curve,
            "validation_loss": validation,
            "validation_curve": validation_curve(state.log_history),
            "n_flowsim_requests": len(curve_callbacks[0].references) if curve_callbacks else 0,
            "flowsim_max_new_tokens": curve_callbacks[0].max_new_tokens if curve_callbacks else None,
            "best_checkpoint": state.best_model_checkpoint if config.select_best else None,
            "best_step": state.best_global_step if config.select_best else None,
            "selected_by": config.select_metric if config.select_best else None,
            "resumed_from_step": clock.resumed_from_step,
            "curve_adapters": {str(step): f"{CURVE_DIR}/step-{step}" for step in config.keep_steps
                               if step <= state.global_step and (out_dir / CURVE_DIR / f"step-{step}").is_dir()},
            "torch_threads": threads,
            "num_processes": trainer.accelerator.num_processes,
            "distributed_type": str(trainer.accelerator.distributed_type),
            "device": str(trainer.args.device),
            "peak_rss_gib": provenance.peak_rss_gib(),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        atomic_write_json(record_path, record, indent=1)
        shutil.rmtree(ckpt_root, ignore_errors=True)
    peft_model.eval()
    return TrainResult(out_dir, out_dir / ADAPTER_DIR, record, reused=False, model=peft_model, trainer=trainer)


def _version(name: str) -> str:
    return provenance.package_version(name) or "?"


def load_finetuned(
    out_dir: str | os.PathLike[str],
    *,
    base_model: str | None = None,
    device: str | None = None,
    dtype: Any = "float32",
    merge: bool = True,
):
    """Load the base model with the adapter of a finished run; returns ``(model, tokenizer)``.

    ``out_dir`` is a run directory (with ``training_record.json`` and ``adapter/``) or an adapter
    directory. With ``merge`` the LoRA weights are merged into the base weights (faster generation).
    """
    from peft import PeftModel

    from wfutils.models import load_model_and_tokenizer

    out_dir = Path(out_dir)
    adapter = out_dir / ADAPTER_DIR if (out_dir / ADAPTER_DIR).is_dir() else out_dir
    if not (adapter / "adapter_config.json").is_file():
        raise FileNotFoundError(f"no LoRA adapter (adapter_config.json) in {adapter}")
    if base_model is None:
        if (out_dir / RECORD_FILE).is_file():
            base_model = read_training_record(out_dir)["base_model"]
        else:
            raise ValueError(f"{out_dir} has no {RECORD_FILE}; pass base_model=")
    model, tokenizer = load_model_and_tokenizer(base_model, dtype=dtype, device=device)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        model = PeftModel.from_pretrained(model, adapter)
    if merge:
        model = model.merge_and_unload()
    model.eval()
    return model, tokenizer
