"""Fine-tune a small language model on (request -> flow) pairs with LoRA.

The prompt is the model's chat template with a short system instruction and the request
(optionally followed by extra context such as retrieved catalogue entries); the target is the
flow as compact JSON followed by the end-of-turn token. Loss is computed on the target tokens
only. Examples are grouped by length into batches padded to the longest member (dynamic
padding), gradients can be accumulated, and the run writes an atomic checkpoint (adapter +
optimizer + scheduler + step + loss history) every ``checkpoint_every`` steps, so a killed run
started again with the same configuration resumes where it stopped. The finished adapter is
saved next to ``training_record.json`` (parameters, versions, loss curve, tokens/s, wall time).

The loop is plain PyTorch driven through :class:`accelerate.Accelerator`, so the same code runs
on 2 CPU cores and, with ``accelerate launch --config_file configs/accelerate/<x>.yaml``, on
several GPUs.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from wfutils.flows.parsing import dumps_flow

__all__ = [
    "SYSTEM_PROMPT",
    "ALL_PROJECTIONS",
    "TrainConfig",
    "EncodedExample",
    "TrainResult",
    "build_messages",
    "prompt_token_ids",
    "encode_example",
    "encode_dataset",
    "length_grouped_batches",
    "collate",
    "train_lora",
    "load_finetuned",
    "read_training_record",
    "system_name",
    "set_threads",
]

SYSTEM_PROMPT = (
    "You turn a workflow request into a ServiceNow-style low-code flow. "
    "Answer with the flow as compact JSON only: a trigger and an ordered list of components."
)
ALL_PROJECTIONS: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
IGNORE_INDEX = -100
RECORD_FILE = "training_record.json"
ADAPTER_DIR = "adapter"
CHECKPOINT_DIR = "checkpoint"


# --------------------------------------------------------------------------- configuration


@dataclass
class TrainConfig:
    """Parameters of a LoRA fine-tuning run (all JSON-serialisable; stored in the record)."""

    base_model: str = "smollm2-135m"
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] = ALL_PROJECTIONS
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 5
    lr_schedule: str = "linear"  # linear | constant
    batch_size: int = 8
    grad_accum: int = 1
    epochs: float = 1.0
    max_steps: int | None = None  # overrides epochs when set
    max_length: int = 512
    truncation: str = "error"  # error | drop  (what to do with examples longer than max_length)
    seed: int = 0
    bf16: bool = False
    gradient_checkpointing: bool = False
    checkpoint_every: int = 25
    context_column: str | None = None  # a column with extra prompt context (retrieved entries)
    system_prompt: str = SYSTEM_PROMPT
    num_threads: int | None = None  # torch CPU threads; None = all CPUs this process may use

    def __post_init__(self) -> None:
        self.lora_targets = tuple(self.lora_targets)
        problems = []
        if self.truncation not in ("error", "drop"):
            problems.append(f"truncation must be 'error' or 'drop', got {self.truncation!r}")
        if self.lr_schedule not in ("linear", "constant"):
            problems.append(f"lr_schedule must be 'linear' or 'constant', got {self.lr_schedule!r}")
        for name in ("lora_r", "batch_size", "grad_accum", "max_length", "checkpoint_every"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.max_steps is None and not self.epochs > 0:
            problems.append(f"epochs must be > 0 when max_steps is not set, got {self.epochs!r}")
        if self.max_steps is not None and self.max_steps < 1:
            problems.append(f"max_steps must be >= 1, got {self.max_steps!r}")
        if not self.lora_targets:
            problems.append("lora_targets is empty")
        if problems:
            raise ValueError("invalid TrainConfig: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["lora_targets"] = list(self.lora_targets)
        return data

    def fingerprint(self, data_digest: str) -> str:
        """Identifies a run: same config + same training data = same fingerprint (resume / reuse)."""
        data = self.to_dict()
        data.pop("checkpoint_every")
        data.pop("num_threads")
        blob = json.dumps({"config": data, "data": data_digest}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def system_name(base_model: str, suffix: str = "lora") -> str:
    """The predictions-file system name of the SLM arm, e.g. ``slm-smollm2-135m-lora``."""
    from wfutils.models import model_slug

    return f"slm-{model_slug(base_model)}-{suffix}"


def set_threads(num_threads: int | None = None) -> int:
    """Set torch's CPU threads and return the count.

    ``None`` means ``$WFBOOK_TORCH_THREADS`` if set, else every CPU this process may use. On a
    small machine shared with other CPU-heavy work, set ``WFBOOK_TORCH_THREADS=1``: more
    OpenMP threads than idle cores makes every matrix product wait on busy cores (measured
    here to slow generation down 2-4x).
    """
    import torch

    if num_threads is None and os.environ.get("WFBOOK_TORCH_THREADS"):
        num_threads = int(os.environ["WFBOOK_TORCH_THREADS"])
    if num_threads is None:
        try:
            num_threads = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - non-Linux
            num_threads = os.cpu_count() or 1
    torch.set_num_threads(max(1, int(num_threads)))
    return torch.get_num_threads()


# --------------------------------------------------------------------------- prompt formatting


def build_messages(
    request: str,
    *,
    context: str | None = None,
    examples: Sequence[tuple[str, str]] = (),
    system_prompt: str = SYSTEM_PROMPT,
) -> list[dict[str, str]]:
    """Chat messages for one request: system instruction (+ context), few-shot turns, the request."""
    system = system_prompt
    if context:
        system += "\n\nRelevant catalogue entries:\n" + context.strip()
    messages = [{"role": "system", "content": system}]
    for example_request, example_flow in examples:
        messages.append({"role": "user", "content": example_request})
        messages.append({"role": "assistant", "content": example_flow})
    messages.append({"role": "user", "content": request})
    return messages


def _plain_prompt(messages: list[dict[str, str]]) -> str:
    """Fallback format for base models without a chat template (e.g. Mistral-Nemo-Base)."""
    parts = []
    for m in messages:
        tag = {"system": "### Instruction", "user": "### Request", "assistant": "### Flow"}[m["role"]]
        parts.append(f"{tag}:\n{m['content']}\n")
    parts.append("### Flow:\n")
    return "\n".join(parts)


def end_of_turn_id(tokenizer) -> int:
    """The token that ends the assistant's answer (``<|im_end|>`` for SmolLM2, else EOS)."""
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no EOS token; cannot mark the end of a flow")
    return int(tokenizer.eos_token_id)


def prompt_token_ids(
    tokenizer,
    request: str,
    *,
    context: str | None = None,
    examples: Sequence[tuple[str, str]] = (),
    system_prompt: str = SYSTEM_PROMPT,
) -> list[int]:
    """Token ids of the prompt, ending where the model's flow should start."""
    messages = build_messages(request, context=context, examples=examples, system_prompt=system_prompt)
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])
    ids = list(tokenizer(_plain_prompt(messages), add_special_tokens=False)["input_ids"])
    return ([tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []) + ids


def _flow_text(flow: Any) -> str:
    """Compact JSON of a flow given as dict or JSON text."""
    if isinstance(flow, str):
        return dumps_flow(json.loads(flow))
    return dumps_flow(flow)


@dataclass
class EncodedExample:
    """One training example as token ids; ``labels`` is IGNORE_INDEX on the prompt."""

    id: str
    input_ids: list[int]
    labels: list[int]

    @property
    def n_prompt(self) -> int:
        return sum(1 for x in self.labels if x == IGNORE_INDEX)

    def __len__(self) -> int:
        return len(self.input_ids)


def encode_example(
    tokenizer,
    request: str,
    flow: Any,
    *,
    id: str = "",
    context: str | None = None,
    system_prompt: str = SYSTEM_PROMPT,
) -> EncodedExample:
    """Prompt + compact-JSON flow + end-of-turn, with loss only on flow and end-of-turn tokens."""
    prompt = prompt_token_ids(tokenizer, request, context=context, system_prompt=system_prompt)
    target = list(tokenizer(_flow_text(flow), add_special_tokens=False)["input_ids"]) + [end_of_turn_id(tokenizer)]
    return EncodedExample(id=str(id), input_ids=prompt + target, labels=[IGNORE_INDEX] * len(prompt) + target)


def _rows(data: Any) -> list[dict[str, Any]]:
    if hasattr(data, "to_list"):
        return list(data.to_list())
    return [dict(r) for r in data]


def encode_dataset(
    tokenizer,
    rows: Iterable[Mapping[str, Any]],
    *,
    max_length: int,
    truncation: str = "error",
    context_column: str | None = None,
    system_prompt: str = SYSTEM_PROMPT,
) -> tuple[list[EncodedExample], list[dict[str, Any]]]:
    """Check and encode training rows (id, request, flow); returns (examples, dropped).

    Raises ValueError naming the record for an empty split, a missing/empty field, a flow that
    is not JSON, or (with ``truncation="error"``) examples longer than ``max_length``.
    """
    rows = _rows(rows)
    if not rows:
        raise ValueError("the training split is empty: nothing to fine-tune on")
    examples: list[EncodedExample] = []
    for i, row in enumerate(rows):
        rid = str(row.get("id", i))
        for name in ("request", "flow"):
            if not row.get(name):
                raise ValueError(f"training record {i} (id {rid!r}): field {name!r} is missing or empty")
        context = row.get(context_column) if context_column else None
        if context_column and context_column not in row:
            raise ValueError(f"training record {i} (id {rid!r}): context column {context_column!r} is missing")
        try:
            examples.append(encode_example(tokenizer, row["request"], row["flow"], id=rid,
                                           context=context, system_prompt=system_prompt))
        except json.JSONDecodeError as exc:
            raise ValueError(f"training record {i} (id {rid!r}): field 'flow' is not valid JSON ({exc.msg})") from None
    too_long = [e for e in examples if len(e) > max_length]
    dropped: list[dict[str, Any]] = []
    if too_long:
        worst = sorted(too_long, key=len, reverse=True)
        listing = ", ".join(f"{e.id} ({len(e)} tokens)" for e in worst[:5])
        if truncation == "error":
            raise ValueError(
                f"{len(too_long)} of {len(examples)} training examples are longer than max_length={max_length} "
                f"tokens (longest: {listing}); raise max_length to at least {len(worst[0])} or pass "
                f"truncation='drop' to leave them out"
            )
        dropped = [{"id": e.id, "tokens": len(e)} for e in too_long]
        examples = [e for e in examples if len(e) <= max_length]
        if not examples:
            raise ValueError(f"every training example is longer than max_length={max_length} tokens ({listing})")
    return examples, dropped


def _data_digest(examples: Sequence[EncodedExample]) -> str:
    h = hashlib.sha256()
    for e in examples:
        h.update(e.id.encode())
        h.update(json.dumps(e.input_ids).encode())
        h.update(str(e.n_prompt).encode())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------- batching


def length_grouped_batches(lengths: Sequence[int], batch_size: int, seed: int) -> list[list[int]]:
    """Batches of indices with similar lengths, in a random (seeded) order.

    Indices are shuffled, cut into chunks of ``50 * batch_size``, sorted by length inside each
    chunk and split into batches; the batch order is then shuffled. Similar lengths keep the
    padding of each batch small while keeping the order random across epochs.
    """
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    chunk = 50 * batch_size
    batches: list[list[int]] = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start:start + chunk], key=lambda i: lengths[i], reverse=True)
        batches.extend(part[j:j + batch_size] for j in range(0, len(part), batch_size))
    rng.shuffle(batches)
    return batches


def collate(examples: Sequence[EncodedExample], pad_id: int):
    """Right-pad a batch to its longest member; returns (input_ids, attention_mask, labels) tensors."""
    import torch

    width = max(len(e) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e)
        ids[row, :n] = torch.tensor(e.input_ids)
        labels[row, :n] = torch.tensor(e.labels)
        mask[row, :n] = 1
    return ids, mask, labels


def _schedule(n_examples: int, lengths: Sequence[int], config: TrainConfig) -> list[list[int]]:
    """The full list of micro-batches of the run (deterministic from the seed), step-aligned."""
    per_epoch = math.ceil(n_examples / config.batch_size)
    if config.max_steps is not None:
        n_micro = config.max_steps * config.grad_accum
    else:
        n_micro = max(1, math.ceil(config.epochs * per_epoch / config.grad_accum)) * config.grad_accum
    micro: list[list[int]] = []
    epoch = 0
    while len(micro) < n_micro:
        micro.extend(length_grouped_batches(lengths, config.batch_size, config.seed + epoch))
        epoch += 1
    return micro[:n_micro]


# --------------------------------------------------------------------------- loss

_PLAIN_DECODERS = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM",
                   "Phi3ForCausalLM", "OlmoForCausalLM", "Olmo2ForCausalLM", "GraniteForCausalLM")


def supports_target_only_loss(causal_lm) -> bool:
    """True for decoders whose logits are exactly ``lm_head(last hidden state)`` (no soft-capping/scaling)."""
    config = causal_lm.config
    return (type(causal_lm).__name__ in _PLAIN_DECODERS and not getattr(config, "final_logit_softcapping", None)
            and getattr(config, "logits_scaling", 1.0) in (1.0, None)
            and hasattr(causal_lm, "model") and causal_lm.get_output_embeddings() is not None)


def target_only_loss(causal_lm, input_ids, attention_mask, labels, num_items: int):
    """Summed next-token cross-entropy over the target tokens, divided by ``num_items``.

    Equal to the model's own loss with ``num_items_in_batch=num_items``, but the vocabulary
    projection is computed only where a label follows (not on prompt or padding positions).
    """
    import torch.nn.functional as F

    hidden = causal_lm.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    shifted = labels[:, 1:]
    keep = shifted != IGNORE_INDEX
    logits = causal_lm.get_output_embeddings()(hidden[:, :-1][keep])
    return F.cross_entropy(logits.float(), shifted[keep], reduction="sum") / max(1, num_items)


# --------------------------------------------------------------------------- atomic files


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _replace_dir(tmp: Path, target: Path) -> None:
    """Move a finished directory into place (the old one, if any, is removed after the swap)."""
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


def read_training_record(out_dir: str | os.PathLike) -> dict[str, Any]:
    """The training record of a finished run directory (``<out_dir>/training_record.json``)."""
    path = Path(out_dir) / RECORD_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no training record at {path}: has the fine-tuning run finished?")
    return json.loads(path.read_text())


def peak_rss_gib() -> float:
    """Peak resident memory of this process so far, in GiB."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**30 if sys.platform == "darwin" else 2**20), 2)  # bytes on macOS, KiB on Linux


def _versions() -> dict[str, str]:
    import accelerate
    import peft
    import torch
    import transformers

    import wfutils

    return {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
            "accelerate": accelerate.__version__, "wfutils": wfutils.__version__}


# --------------------------------------------------------------------------- training


@dataclass
class TrainResult:
    """What :func:`train_lora` produced."""

    out_dir: Path
    adapter_dir: Path
    record: dict[str, Any]
    reused: bool = False  # True when a finished run with the same fingerprint was found
    complete: bool = True  # False when the session stopped early (time budget); rerun to continue
    model: Any = field(default=None, repr=False)  # the trained PEFT model (None when reused)


def _save_checkpoint(ckpt: Path, peft_model, optimizer, scheduler, state: dict[str, Any]) -> None:
    import torch
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    tmp = ckpt.with_name(f".{ckpt.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    weights = {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(peft_model).items()}
    save_file(weights, str(tmp / "adapter.safetensors"))
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "torch_rng": torch.get_rng_state()}, tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps(state) + "\n")
    _replace_dir(tmp, ckpt)


def _load_checkpoint(ckpt: Path, peft_model, optimizer, scheduler, fingerprint: str) -> dict[str, Any] | None:
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    state_file = ckpt / "state.json"
    if not state_file.is_file():
        return None
    state = json.loads(state_file.read_text())
    if state.get("fingerprint") != fingerprint:
        return None  # a different run's checkpoint: start afresh (it is replaced at the next save)
    set_peft_model_state_dict(peft_model, load_file(str(ckpt / "adapter.safetensors")))
    blob = torch.load(ckpt / "optimizer.pt", weights_only=False)
    optimizer.load_state_dict(blob["optimizer"])
    scheduler.load_state_dict(blob["scheduler"])
    torch.set_rng_state(blob["torch_rng"])
    return state


def train_lora(
    train_rows: Iterable[Mapping[str, Any]],
    out_dir: str | os.PathLike,
    config: TrainConfig | None = None,
    *,
    model: Any = None,
    tokenizer: Any = None,
    progress: bool = True,
    overwrite: bool = False,
    time_budget_s: float | None = None,
    stop_after_steps: int | None = None,
) -> TrainResult:
    """Fine-tune ``config.base_model`` with LoRA on rows with ``id``, ``request``, ``flow``.

    Writes ``<out_dir>/adapter/``, ``<out_dir>/training_record.json`` and, while running,
    ``<out_dir>/checkpoint/``. A finished run with the same configuration and data is reused
    (unless ``overwrite``); an unfinished one resumes from its checkpoint.

    ``model``/``tokenizer`` may be passed to reuse an already loaded base model; LoRA layers are
    injected into it in place (pass a copy if the base model is needed afterwards).

    ``time_budget_s`` caps the training time (checked between steps; a resumed run counts its
    earlier sessions): when it is reached the adapter is saved as it is and the record says
    ``"stopped_by": "time_budget"``. ``stop_after_steps`` ends this session early instead
    (a checkpoint is written, ``complete=False``; calling again continues from there).
    """
    import torch
    from accelerate import Accelerator
    from peft import LoraConfig, get_peft_model
    from tqdm import tqdm

    from wfutils.models import load_model_and_tokenizer, resolve_model

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
    fingerprint = config.fingerprint(_data_digest(examples))
    record_path = out_dir / RECORD_FILE
    if record_path.is_file() and not overwrite:
        record = json.loads(record_path.read_text())
        if (record.get("fingerprint") == fingerprint and record.get("time_budget_s") == time_budget_s
                and (out_dir / ADAPTER_DIR).is_dir()):
            return TrainResult(out_dir, out_dir / ADAPTER_DIR, record, reused=True)

    threads = set_threads(config.num_threads)
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    accelerator = Accelerator(mixed_precision="bf16" if config.bf16 else "no")
    ds_plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    if ds_plugin is not None:  # no DataLoader is prepared, so DeepSpeed needs the batch size spelled out
        ds_plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = config.batch_size
        ds_plugin.deepspeed_config["gradient_accumulation_steps"] = config.grad_accum
    sharded = accelerator.distributed_type.name in ("DEEPSPEED", "FSDP")
    if model is None:
        model, _ = load_model_and_tokenizer(model_path, dtype="float32", device=str(accelerator.device))
    model.config.use_cache = False
    if config.gradient_checkpointing:
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=list(config.lora_targets), task_type="CAUSAL_LM", bias="none")
    with warnings.catch_warnings():  # peft 0.21 reads a property that transformers 5 deprecates
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        peft_model = get_peft_model(model, lora)
    n_trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    n_total = sum(p.numel() for p in peft_model.parameters())
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)

    lengths = [len(e) for e in examples]
    micro_batches = _schedule(len(examples), lengths, config)
    # Each process takes every num_processes-th micro-batch (data parallel without a DataLoader);
    # all processes must run the same number of steps, so the schedule is cut to a multiple.
    unit = accelerator.num_processes * config.grad_accum
    if accelerator.num_processes > 1:
        micro_batches = micro_batches[:max(unit, len(micro_batches) // unit * unit)]
    micro_batches = micro_batches[accelerator.process_index::accelerator.num_processes]
    total_steps = len(micro_batches) // config.grad_accum
    warmup = min(config.warmup_steps, max(0, total_steps - 1))

    def lr_lambda(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / (warmup + 1)
        if config.lr_schedule == "constant":
            return 1.0
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)
    peft_model, optimizer, scheduler = accelerator.prepare(peft_model, optimizer, scheduler)
    ckpt_dir = out_dir / CHECKPOINT_DIR
    state = {"fingerprint": fingerprint, "step": 0, "loss_curve": [], "tokens": 0, "target_tokens": 0,
             "train_seconds": 0.0, "resumed_from_step": None}
    loaded = _load_checkpoint(ckpt_dir, accelerator.unwrap_model(peft_model), optimizer, scheduler, fingerprint)
    if loaded is not None:
        state = loaded
        state["resumed_from_step"] = loaded["step"]

    pad_id = int(tokenizer.pad_token_id)
    causal_lm = accelerator.unwrap_model(peft_model).get_base_model()
    # One process, plain decoder: project only the target positions onto the vocabulary (the
    # full logits tensor of a batch is the largest allocation of a small model's step).
    fast_loss = accelerator.num_processes == 1 and supports_target_only_loss(causal_lm)
    peft_model.train()
    wall0 = time.perf_counter()
    bar = tqdm(total=total_steps, initial=state["step"], desc="fine-tuning", unit="step",
               disable=not progress or not accelerator.is_main_process)
    session_steps = 0
    stopped_early = False
    stopped_by = None
    for step in range(state["step"], total_steps):
        if session_steps and stop_after_steps is not None and session_steps >= stop_after_steps:
            stopped_early = True
            break
        if time_budget_s is not None and state["train_seconds"] >= time_budget_s:
            stopped_by = "time_budget"
            break
        session_steps += 1
        t0 = time.perf_counter()
        group = micro_batches[step * config.grad_accum:(step + 1) * config.grad_accum]
        batches = [collate([examples[i] for i in mb], pad_id) for mb in group]
        n_target = sum(int((labels != IGNORE_INDEX).sum()) for _, _, labels in batches)  # whole step
        step_loss = 0.0
        n_tokens = 0
        for ids, mask, labels in batches:
            ids, mask, labels = (t.to(accelerator.device) for t in (ids, mask, labels))
            with accelerator.autocast():
                if fast_loss:
                    loss = target_only_loss(causal_lm, ids, mask, labels, n_target)
                else:
                    loss = peft_model(input_ids=ids, attention_mask=mask, labels=labels,
                                      num_items_in_batch=n_target).loss
            accelerator.backward(loss)
            step_loss += float(loss.detach())
            n_tokens += int(mask.sum())
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        state["step"] = step + 1
        state["tokens"] += n_tokens
        state["target_tokens"] += n_target
        entry = {"step": step + 1, "loss": round(step_loss, 5), "lr": scheduler.get_last_lr()[0],
                 "tokens": n_tokens, "seconds": 0.0}
        state["loss_curve"].append(entry)
        if accelerator.is_main_process and (state["step"] % config.checkpoint_every == 0) and state["step"] < total_steps:
            _save_checkpoint(ckpt_dir, accelerator.unwrap_model(peft_model), optimizer, scheduler, state)
        dt = time.perf_counter() - t0  # the step's whole cost: collation, forward/backward, update, checkpoint
        entry["seconds"] = round(dt, 4)
        state["train_seconds"] += dt
        bar.update(1)
        bar.set_postfix(loss=f"{step_loss:.3f}", tok_s=f"{n_tokens / dt:.0f}")
    bar.close()
    wall = time.perf_counter() - wall0

    unwrapped = accelerator.unwrap_model(peft_model)
    # Under DeepSpeed / FSDP the weights are sharded: gather a full state dict (every process).
    full_state = accelerator.get_state_dict(peft_model) if sharded else None
    if stopped_early:
        if accelerator.is_main_process:
            _save_checkpoint(ckpt_dir, unwrapped, optimizer, scheduler, state)
        partial = {"status": "partial", "fingerprint": fingerprint, "steps": state["step"],
                   "total_steps": total_steps, "loss_curve": state["loss_curve"]}
        return TrainResult(out_dir, out_dir / ADAPTER_DIR, partial, complete=False, model=unwrapped)
    record: dict[str, Any] = {}
    if accelerator.is_main_process:
        tmp = out_dir / f".{ADAPTER_DIR}.tmp-{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        if full_state is not None:
            unwrapped.save_pretrained(tmp, state_dict=full_state)
        else:
            unwrapped.save_pretrained(tmp)
        _replace_dir(tmp, out_dir / ADAPTER_DIR)
        secs = max(state["train_seconds"], 1e-9)
        per_epoch = math.ceil(len(examples) / config.batch_size)
        record = {
            "status": "complete",
            "fingerprint": fingerprint,
            "config": config.to_dict(),
            "base_model": config.base_model,
            "base_model_path": str(model_path) if model_path else None,
            "versions": _versions(),
            "n_examples": len(examples),
            "dropped_too_long": dropped,
            "n_trainable_params": n_trainable,
            "n_params": n_total,
            "steps": state["step"],
            "total_steps": total_steps,
            "stopped_by": stopped_by,
            "time_budget_s": time_budget_s,
            "epochs": round(state["step"] * config.grad_accum * accelerator.num_processes / per_epoch, 3),
            "tokens": state["tokens"],
            "target_tokens": state["target_tokens"],
            "train_seconds": round(state["train_seconds"], 2),
            "wall_seconds_this_session": round(wall, 2),
            "tokens_per_s": round(state["tokens"] / secs, 1),
            "target_tokens_per_s": round(state["target_tokens"] / secs, 1),
            "final_loss": state["loss_curve"][-1]["loss"] if state["loss_curve"] else None,
            "loss_curve": state["loss_curve"],
            "resumed_from_step": state["resumed_from_step"],
            "torch_threads": threads,
            "num_processes": accelerator.num_processes,
            "device": str(accelerator.device),
            "peak_rss_gib": peak_rss_gib(),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        _atomic_write_text(record_path, json.dumps(record, indent=1) + "\n")
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    unwrapped.eval()
    return TrainResult(out_dir, out_dir / ADAPTER_DIR, record, reused=False, model=unwrapped)


def load_finetuned(
    out_dir: str | os.PathLike,
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


# --------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> None:
    """Fine-tune on a run's synthetic train split; works under ``accelerate launch -m wfutils.slm``.

    Example (4 GPUs, ZeRO-2)::

        accelerate launch --config_file configs/accelerate/deepspeed_zero2.yaml -m wfutils.slm \\
            --run-dir results/paper --base-model mistralai/Mistral-Nemo-Base-2407 --bf16 \\
            --gradient-checkpointing --batch-size 4 --grad-accum 4 --epochs 2 --learning-rate 2e-4
    """
    import argparse

    from wfutils.data.store import load_run_data

    defaults = TrainConfig()
    parser = argparse.ArgumentParser(prog="python -m wfutils.slm", description=main.__doc__.splitlines()[0])
    parser.add_argument("--run-dir", required=True, help="run folder with data/ (written by notebook 01)")
    parser.add_argument("--out-dir", default=None, help="default: <run-dir>/slm")
    parser.add_argument("--n-train", type=int, default=None)
    parser.add_argument("--time-budget-s", type=float, default=None)
    for name, value in defaults.to_dict().items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            parser.add_argument(flag, action="store_true", default=value)
        elif isinstance(value, list):
            parser.add_argument(flag, nargs="+", default=value)
        elif name == "max_steps" or name == "context_column" or name == "num_threads":
            parser.add_argument(flag, type=int if name != "context_column" else str, default=value)
        else:
            parser.add_argument(flag, type=type(value), default=value)
    args = vars(parser.parse_args(argv))
    run_dir = Path(args.pop("run_dir"))
    out_dir = Path(args.pop("out_dir") or run_dir / "slm")
    n_train = args.pop("n_train")
    budget = args.pop("time_budget_s")
    train = load_run_data(run_dir, include_train=True)["synthetic"]["train"]
    if n_train is not None:
        train = train.select(range(min(n_train, len(train))))
    result = train_lora(train, out_dir, TrainConfig(**args), time_budget_s=budget)
    print(json.dumps({k: result.record.get(k) for k in ("status", "steps", "final_loss", "tokens_per_s")}))

