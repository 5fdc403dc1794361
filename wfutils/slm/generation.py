"""Greedy generation of flows for whole splits by the fine-tuned arm, written as predictions with their metadata.

Prompts (:mod:`wfutils.slm.formatting`) are sorted by length and decoded in left-padded batches by the
in-process engine (:class:`wfutils.engines.inprocess.InProcessTransformersEngine`: ``model.generate``,
greedy, stopping at end-of-turn). Every finished batch is appended to ``predictions/<system>.jsonl``
through :class:`wfutils.data.predictions.PredictionWriter`, which also writes the ``<system>.meta.json``
sidecar (:class:`SystemMeta`: arm, base model, adapter, engine, decoding, ...). A killed run resumes where
it stopped, as long as the resume key (the metadata, the code digest and the caller's ``key``, e.g. the
adapter fingerprint) is unchanged; ``force`` regenerates. :class:`GenerationConfig` holds notebook 02's
generation settings.

The adapter check (:func:`check_adapter`) compares the first answers of the headline split with the base model's
greedy answers to the same prompts: an adapter that changes none of them is reported
(:class:`AdapterUnchangedWarning`), since a serving stack can silently drop a LoRA adapter.

``latency_s`` of a record is the wall time of its batch divided by the batch size (the
amortised cost per flow); the batch wall time is the latency each request actually saw.

Constrained decoding (an ablation, off by default) masks every token that would leave the
flow JSON Schema, with llguidance (:func:`schema_constraint`), which ``benchmarks/slm_bench.py``
chose over lm-format-enforcer.
"""

from __future__ import annotations

import copy
import gc
import json
import os
import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from wfutils.config import validate
from wfutils.data.predictions import (
    FINE_TUNED,
    NO_STRATEGY,
    Prediction,
    PredictionWriter,
    SystemMeta,
    predictions_path,
    read_predictions,
    system_name,
)
from wfutils.data.store import evaluation_splits, load_run_data
from wfutils.engines.inprocess import InProcessTransformersEngine
from wfutils.flows.vocabulary import flow_text
from wfutils.provenance import peak_rss_gib
from wfutils.slm.formatting import SYSTEM_PROMPT, end_of_turn_id, prompt_token_ids, stop_token_ids
from wfutils.slm.layout import finetuning_dir
from wfutils.slm.recipe import record_recipe, record_seed
from wfutils.storage import atomic_write_json

__all__ = [
    "GenerationConfig",
    "AdapterUnchangedWarning",
    "adapter_check_path",
    "adapter_check_sentence",
    "check_adapter",
    "finetuned_system_name",
    "slm_engine",
    "default_max_new_tokens",
    "slm_system_meta",
    "generate_predictions",
    "generate_for_run",
    "decoding_schema",
    "schema_constraint",
]

#: ``factory(prompt_lengths_of_the_batch) -> LogitsProcessorList`` (called once per batch), see :func:`schema_constraint`.
ConstraintFactory = Callable[[Sequence[int]], Any]


@dataclass(frozen=True)
class GenerationConfig:
    """Notebook 02's settings that are not training settings (:class:`wfutils.slm.training.TrainConfig`):
    what the fine-tuned model is trained on and asked, and how its answers are decoded."""

    train_corpus: str = "synthetic"  # the run's data set to fine-tune on (a name or a .jsonl stem of notebook 01)
    n_train: int | None = None  # first N training pairs (None: the whole train split)
    time_budget_s: float | None = None  # train for at most this many seconds, then keep the adapter as it is
    eval_splits: list[str] | None = None  # "<data set>/<split>" names; None: every test / ood split
    eval_limit: int | None = None  # first N examples of each evaluation split
    test_limit: int | None = None  # first N of the training corpus's test split instead (None: eval_limit)
    gen_batch_size: int = 16  # flows decoded together
    max_new_tokens_cap: int = 1024
    constrained: bool = False  # ablation: JSON-Schema-guided decoding (llguidance)
    force: bool = False  # retrain the adapter and regenerate the predictions even when nothing changed
    system: str | None = None  # None: slm-<model>-lora, trained in <run>/slm; a name: trained in <run>/slm/<name>
    adapter_check: int = 4  # first N headline answers compared with the base model's (none changed: a warning; 0: off)
    curve_limit: int = 50  # first N test requests answered by each learning-curve adapter (TrainConfig.keep_steps)
    recipe_sweep: str | None = None  # a sweep.json (python -m wfutils.slm.sweep) the recipe was chosen from

    def __post_init__(self) -> None:
        validate(self)
        if self.recipe_sweep is not None and not Path(self.recipe_sweep).is_file():
            raise ValueError(f"recipe_sweep {self.recipe_sweep!r}: no such file (a sweep.json written by "
                             f"python -m wfutils.slm.sweep; relative paths start at {Path.cwd()})")
        problems = [f"{name} must be >= 1 or None, got {value!r}" for name, value in
                    (("n_train", self.n_train), ("eval_limit", self.eval_limit), ("test_limit", self.test_limit))
                    if value is not None and value < 1]
        if self.gen_batch_size < 1:
            problems.append(f"gen_batch_size must be >= 1, got {self.gen_batch_size!r}")
        if self.curve_limit < 1:
            problems.append(f"curve_limit must be >= 1, got {self.curve_limit!r}")
        if self.adapter_check < 0:
            problems.append(f"adapter_check must be >= 0 (0: no check), got {self.adapter_check!r}")
        if self.max_new_tokens_cap < 1:
            problems.append(f"max_new_tokens_cap must be >= 1, got {self.max_new_tokens_cap!r}")
        if self.time_budget_s is not None and self.time_budget_s <= 0:
            problems.append(f"time_budget_s must be > 0 or None, got {self.time_budget_s!r}")
        if self.system is not None:
            try:
                finetuning_dir(".", self.system)
            except ValueError as exc:
                problems.append(str(exc))
        if problems:
            raise ValueError("invalid GenerationConfig: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def written_system(values: Mapping[str, Any]) -> str:
        """The system a run of notebook 02 writes, from its parameter values (:func:`finetuned_system_name`)."""
        return finetuned_system_name(values["base_model"], values.get("system"), bool(values.get("constrained")))


def finetuned_system_name(base_model: str, system: str | None = None, constrained: bool = False) -> str:
    """Notebook 02's system: ``system`` where set, else ``slm-<base model>-lora`` (``-lora-constrained``)."""
    return system or system_name(FINE_TUNED, base_model, "lora-constrained" if constrained else "lora")


def slm_engine(model: Any, tokenizer: Any) -> InProcessTransformersEngine:
    """The in-process engine for a model of this arm: its chat template's end-of-turn tokens stop a row."""
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else end_of_turn_id(tokenizer)
    return InProcessTransformersEngine(model, tokenizer, stop_ids=stop_token_ids(tokenizer), pad_id=pad_id)


def default_max_new_tokens(tokenizer: Any, references: Iterable[Any], *, slack: float = 1.25, extra: int = 16,
                           cap: int = 2048) -> int:
    """A generation budget from the token lengths of the reference flows (longest x slack + extra)."""
    longest = max((len(tokenizer(flow_text(r), add_special_tokens=False)["input_ids"]) for r in references),
                  default=256)
    return int(min(cap, longest * slack + extra))


def slm_system_meta(
    system: str,
    model: Any,
    tokenizer: Any,
    *,
    base_model: str,
    adapter: str | None = None,
    constrained: bool = False,
    train_corpus: str = "synthetic",
    record: Mapping[str, Any] | None = None,
    checkpoint_step: int | None = None,
) -> SystemMeta:
    """The :class:`SystemMeta` of a fine-tuned system generated here: the adapter answers the bare request.

    ``n_params`` is counted from ``model``; ``model_sha256`` is that of the base model's GGUF when known;
    the engine is :func:`slm_engine`'s description (the weights' dtype as its quantisation). ``record``: the
    adapter's training record, whose recipe and seed the metadata keep (:mod:`wfutils.slm.recipe`; another seed
    of one recipe is a spread, not a rival); ``checkpoint_step``: a learning-curve point's step.
    """
    from wfutils.models import count_parameters, model_sha256
    from wfutils.weights import WEIGHTS

    engine = slm_engine(model, tokenizer).info()
    # A registry model's published count, as the prompted arm records it: a dequantised copy may hold an untied
    # output head the published count (and the GGUF) share with the embeddings.
    registered = WEIGHTS.get(str(base_model))
    n_params = registered.n_params if registered is not None else count_parameters(model)
    if adapter is not None and engine.adapter_format is None:  # load_finetuned merges the LoRA weights by default
        engine = replace(engine, adapter_format="peft-lora (merged)")
    return SystemMeta(
        system=system, arm=FINE_TUNED, base_model=str(base_model), n_params=n_params, adapter=adapter,
        strategy=NO_STRATEGY, k=0, retrieval="none", engine=engine,
        decoding="constrained" if constrained else "greedy", model_sha256=model_sha256(base_model),
        train_corpus=train_corpus,
        recipe=record_recipe(record, checkpoint_step, train_corpus=train_corpus) if record else None,
        training_seed=record_seed(record) if record else None,
    )


def _check_rows(rows: Any, split: str, context_column: str | None) -> list[dict[str, Any]]:
    rows = [dict(r) for r in (rows.to_list() if hasattr(rows, "to_list") else rows)]
    for i, row in enumerate(rows):
        for name in ("id", "request", "flow"):
            if name not in row or row[name] in (None, ""):
                raise ValueError(f"{split} record {i}: field {name!r} is missing or empty")
        if context_column and context_column not in row:
            raise ValueError(f"{split} record {i} (id {row['id']!r}): context column {context_column!r} is missing")
    return rows


def _generate_into(
    writer: PredictionWriter,
    engine: InProcessTransformersEngine,
    rows: list[dict[str, Any]],
    *,
    split: str,
    batch_size: int,
    max_new_tokens: int | None,
    context_column: str | None,
    system_prompt: str,
    constraint: ConstraintFactory | None,
    progress: bool,
) -> dict[str, Any]:
    """Generate the rows not yet in ``writer``; returns counts and timings."""
    from tqdm.auto import tqdm

    tokenizer = engine.tokenizer
    system = writer.meta.system
    todo = [r for r in rows if str(r["id"]) not in writer.done_ids]
    stats = {"n": len(rows), "generated": len(todo), "completion_tokens": 0, "seconds": 0.0,
             "max_new_tokens": max_new_tokens}
    if not todo:
        return stats
    if max_new_tokens is None:
        max_new_tokens = stats["max_new_tokens"] = default_max_new_tokens(tokenizer, [r["flow"] for r in rows])
    prompts = [prompt_token_ids(tokenizer, r["request"], system_prompt=system_prompt,
                                context=r.get(context_column) if context_column else None) for r in todo]
    order = sorted(range(len(todo)), key=lambda i: len(prompts[i]), reverse=True)
    bar = tqdm(total=len(todo), desc=f"generating {split} ({system})", unit="flow", disable=not progress)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        batch_prompts = [prompts[i] for i in idx]
        processor = constraint([len(p) for p in batch_prompts]) if constraint else None
        t0 = time.perf_counter()
        outs = engine.generate(batch_prompts, max_new_tokens=max_new_tokens, logits_processor=processor)
        dt = time.perf_counter() - t0
        for i, gen in zip(idx, outs):
            row = todo[i]
            writer.write(Prediction.from_output(
                id=str(row["id"]), split=split, system=system, request=row["request"],
                reference=row["flow"] if isinstance(row["flow"], str) else flow_text(row["flow"]),
                output=gen.text, latency_s=round(dt / len(idx), 4), prompt_tokens=gen.prompt_tokens,
                completion_tokens=gen.completion_tokens))
        stats["completion_tokens"] += sum(g.completion_tokens for g in outs)
        stats["seconds"] += dt
        bar.update(len(idx))
        bar.set_postfix(tok_s=f"{sum(g.completion_tokens for g in outs) / dt:.0f}")
    bar.close()
    stats["seconds"] = round(stats["seconds"], 2)
    stats["tokens_per_s"] = round(stats["completion_tokens"] / max(stats["seconds"], 1e-9), 1)
    return stats


def generate_predictions(
    model: Any,
    tokenizer: Any,
    rows: Iterable[Mapping[str, Any]],
    out_path: str | os.PathLike[str],
    *,
    meta: SystemMeta,
    split: str,
    key: Any = None,
    force: bool = False,
    batch_size: int = 16,
    max_new_tokens: int | None = None,
    context_column: str | None = None,
    system_prompt: str = SYSTEM_PROMPT,
    constraint: ConstraintFactory | None = None,
    progress: bool = True,
) -> Path:
    """Generate a flow for every row (``id``, ``request``, ``flow`` = reference) not yet in ``out_path``.

    ``meta`` describes the system (written to the sidecar); ``key`` joins the resume key (pass
    the adapter fingerprint); ``force`` starts the file afresh. ``constraint`` is a constrained-decoding factory
    (:func:`schema_constraint`). Returns ``out_path``.
    """
    rows = _check_rows(rows, split, context_column)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    out_path = Path(out_path)
    with slm_engine(model, tokenizer) as engine, PredictionWriter(out_path, meta, key=key, force=force) as writer:
        _generate_into(writer, engine, rows, split=split, batch_size=batch_size, max_new_tokens=max_new_tokens,
                       context_column=context_column, system_prompt=system_prompt, constraint=constraint,
                       progress=progress)
    return out_path


def generate_for_run(
    model: Any,
    tokenizer: Any,
    run_dir: str | os.PathLike[str],
    *,
    meta: SystemMeta,
    key: Any = None,
    force: bool = False,
    eval_splits: Sequence[str] | None = None,
    limit: int | None = None,
    test_limit: int | None = None,
    batch_size: int = 16,
    max_new_tokens: int | None = None,
    max_new_tokens_cap: int = 1024,
    constraint: ConstraintFactory | None = None,
    adapter_check: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Generate predictions for evaluation splits of a run into ``predictions/<meta.system>.jsonl``.

    ``eval_splits`` are ``<dataset>/<split>`` names (``synthetic/validation`` for model selection,
    ``synthetic/test`` for the final numbers; None: every evaluation split of the run), with the
    test split of ``meta.train_corpus`` always first (:func:`wfutils.data.store.evaluation_splits`);
    a split the run lacks raises before any generation.
    ``limit`` keeps the first N rows of each split; ``test_limit``, when given, replaces it for the
    training corpus's test split (the headline set: all of it, other splits sampled). All splits go through one
    :class:`PredictionWriter` (so ``force`` restarts the file once). Returns timings per split and, for a
    system with an adapter and ``adapter_check`` > 0, :func:`check_adapter`'s result on the first requests of
    the headline split (``adapter_check`` in the summary).
    """
    data = load_run_data(run_dir, include_train=True)
    wanted = [tuple(name.split("/", 1)) for name in evaluation_splits(data, meta.train_corpus, eval_splits)]
    for name, value in (("limit", limit), ("test_limit", test_limit)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a positive int or None, got {value!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if isinstance(adapter_check, bool) or not isinstance(adapter_check, int) or adapter_check < 0:
        raise ValueError(f"adapter_check must be an int >= 0 (0: no check), got {adapter_check!r}")
    path = predictions_path(run_dir, meta.system)
    summary: dict[str, Any] = {"system": meta.system, "arm": meta.arm, "path": str(path), "splits": {}}
    with slm_engine(model, tokenizer) as engine, PredictionWriter(path, meta, key=key, force=force) as writer:
        summary["restarted"] = writer.restart_reason
        resume_key, headline = writer.resume_key, None
        if writer.restart_reason:  # regenerated answers are compared afresh
            adapter_check_path(path).unlink(missing_ok=True)
        for name, split in wanted:
            rows = _check_rows(data[name][split], split, None)
            keep = test_limit if test_limit is not None and (name, split) == (meta.train_corpus, "test") else limit
            rows = rows[:keep] if keep is not None else rows
            budget = max_new_tokens or default_max_new_tokens(tokenizer, [r["flow"] for r in rows],
                                                              cap=max_new_tokens_cap)
            summary["splits"][f"{name}/{split}"] = _generate_into(
                writer, engine, rows, split=split, batch_size=batch_size, max_new_tokens=budget,
                context_column=None, system_prompt=SYSTEM_PROMPT, constraint=constraint, progress=progress)
            if headline is None:  # the training corpus's test split when the run has it, else the first split
                headline = (split, rows[:adapter_check], budget)
    if adapter_check and meta.adapter is not None and headline is not None:
        split, rows, budget = headline
        summary["adapter_check"] = check_adapter(
            model, tokenizer, path, rows, split=split, base_model=meta.base_model, key=resume_key,
            max_new_tokens=budget, batch_size=batch_size, constraint=constraint)
    summary["peak_rss_gib"] = peak_rss_gib()  # of the whole process, training included
    return summary


# --------------------------------------------------------------------------- adapter check


class AdapterUnchangedWarning(UserWarning):
    """The fine-tuned model gave its base model's answers to every request compared: the adapter may not be applied."""


#: ``predictions/<system>.adapter_check.json``: :func:`check_adapter`'s stored result.
ADAPTER_CHECK_SUFFIX = ".adapter_check.json"


def adapter_check_path(predictions_file: str | os.PathLike[str]) -> Path:
    """Where the adapter check of a predictions file is kept: ``<system>.jsonl`` -> ``<system>.adapter_check.json``."""
    path = Path(predictions_file)
    return path.with_name(path.name.removesuffix(".jsonl") + ADAPTER_CHECK_SUFFIX)


@contextmanager
def _base_model(model: Any, base_model: str) -> Iterator[Any]:
    """The base model without the adapter: the peft model with its adapter disabled, else (merged LoRA weights)
    a fresh copy of ``base_model`` in the same dtype and device, freed afterwards."""
    if hasattr(model, "disable_adapter") and hasattr(model, "peft_config"):
        with model.disable_adapter():
            yield model
        return
    from wfutils.models import load_model_and_tokenizer

    base, _ = load_model_and_tokenizer(base_model, dtype=str(model.dtype).removeprefix("torch."),
                                       device=str(model.device))
    try:
        yield base
    finally:
        del base
        gc.collect()


def check_adapter(
    model: Any,
    tokenizer: Any,
    predictions_file: str | os.PathLike[str],
    rows: Sequence[Mapping[str, Any]],
    *,
    split: str,
    base_model: str,
    key: str,
    max_new_tokens: int,
    batch_size: int = 16,
    constraint: ConstraintFactory | None = None,
) -> dict[str, Any]:
    """Compare the fine-tuned answers to ``rows`` (already in ``predictions_file``) with the base model's greedy
    answers to the same prompts, budget and engine; warns (:class:`AdapterUnchangedWarning`) when none differs.

    The result (``n_compared``, ``n_identical``, ``n_changed``, ``identical_ids``, ``changed_ids``) is stored
    beside the predictions (:func:`adapter_check_path`) and reused while ``key`` (the predictions' resume key)
    and the compared ids are unchanged.
    """
    path = adapter_check_path(predictions_file)
    ids = [str(r["id"]) for r in rows]
    stored = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    if stored.get("key") == key and stored.get("ids") == ids and stored.get("split") == split:
        result = stored
    else:
        answers = {r.id: r.output for r in read_predictions(predictions_file) if r.split == split and r.id in ids}
        missing = [i for i in ids if i not in answers]
        if missing:
            raise ValueError(f"{predictions_file}: no {split} prediction for ids {missing} "
                             "to compare with the base model's")
        prompts = [prompt_token_ids(tokenizer, r["request"], system_prompt=SYSTEM_PROMPT) for r in rows]
        base_answers: list[str] = []
        with _base_model(model, base_model) as base, slm_engine(base, tokenizer) as engine:
            for start in range(0, len(prompts), batch_size):
                batch = prompts[start:start + batch_size]
                processor = constraint([len(p) for p in batch]) if constraint else None
                base_answers += [g.text for g in engine.generate(batch, max_new_tokens=max_new_tokens,
                                                                 logits_processor=processor)]
        identical = [i for i, text in zip(ids, base_answers) if answers[i] == text]
        result = {"key": key, "split": split, "ids": ids, "base_model": str(base_model), "n_compared": len(ids),
                  "n_identical": len(identical), "n_changed": len(ids) - len(identical),
                  "identical_ids": identical, "changed_ids": [i for i in ids if i not in identical],
                  "max_new_tokens": max_new_tokens}
        atomic_write_json(path, result)
    if result["n_compared"] and result["n_changed"] == 0:
        warnings.warn(adapter_check_sentence(result), AdapterUnchangedWarning, stacklevel=2)
    return result


def adapter_check_sentence(check: Mapping[str, Any] | None) -> str:
    """One line on an adapter check (:func:`check_adapter`): how many of the first answers the adapter changed."""
    if not check or not check.get("n_compared"):
        return "the adapter was not compared with its base model in this run"
    n, changed = check["n_compared"], check["n_changed"]
    if changed == 0:
        return (f"the adapter changed none of the first {n} answers of {check['split']} requests: the fine-tuned "
                f"system answered exactly as its base model {check['base_model']}, so the adapter may not be "
                "applied and its scores may be the base model's")
    return f"the adapter changed {changed} of the first {n} answers of {check['split']} requests"


# --------------------------------------------------------------------------- constrained decoding


def decoding_schema(schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """The flow JSON Schema in the subset grammar engines compile: its ``if``/``then`` (flow-logic
    components name a flow-logic definition) rewritten as an ``anyOf`` of the two component shapes."""
    from wfutils.flows.schema import FLOW_SCHEMA
    from wfutils.flows.vocabulary import COMPONENT_CATEGORIES, FLOW_LOGIC_DEFINITIONS

    schema = copy.deepcopy(schema or FLOW_SCHEMA)
    component = schema.get("$defs", {}).get("component")
    if not component or "if" not in component:
        return schema
    component.pop("if")
    then = component.pop("then")
    flow_logic = copy.deepcopy(component)
    flow_logic["properties"]["category"] = {"const": "flowlogic"}
    flow_logic["properties"]["definition"] = {**flow_logic["properties"]["definition"],
                                              **then.get("properties", {}).get("definition", {})}
    flow_logic["properties"]["definition"].setdefault("enum", list(FLOW_LOGIC_DEFINITIONS))
    flow_logic["properties"]["definition"].pop("$comment", None)
    flow_logic["properties"]["definition"].pop("minLength", None)
    flow_logic["required"] = sorted(set(flow_logic.get("required", [])) | {"category"})
    other = copy.deepcopy(component)
    other["properties"]["category"] = {"enum": [c for c in COMPONENT_CATEGORIES if c != "flowlogic"]}
    schema["$defs"]["component"] = {"anyOf": [flow_logic, other]}
    return schema


_LL_TOKENIZERS: dict[int, Any] = {}


def _ll_tokenizer(tokenizer: Any) -> Any:
    """llguidance's view of the vocabulary (built once per tokenizer; about half a second)."""
    import llguidance.hf

    key = id(tokenizer)
    if key not in _LL_TOKENIZERS:
        _LL_TOKENIZERS[key] = llguidance.hf.from_tokenizer(tokenizer, n_vocab=len(tokenizer),
                                                           eos_token=end_of_turn_id(tokenizer))
    return _LL_TOKENIZERS[key]


class SchemaLogitsProcessor:
    """Masks every token that would leave the grammar (llguidance), row by row, inside ``model.generate``.

    One matcher per row; the first call records where the prompts end, later calls feed each
    row's newest token to its matcher. A row whose matcher has stopped (its answer ended) is left
    alone: ``generate`` pads it until the batch is done.
    """

    def __init__(self, tokenizer: Any, grammar: str, batch_size: int) -> None:
        import llguidance

        ll_tokenizer = _ll_tokenizer(tokenizer)
        self._matchers = [llguidance.LLMatcher(ll_tokenizer, grammar, log_level=0) for _ in range(batch_size)]
        error = self._matchers[0].get_error() if self._matchers and self._matchers[0].is_error() else None
        if error:
            raise ValueError(f"llguidance cannot compile the flow grammar: {error}")
        self._vocab = len(tokenizer)
        self._started = False

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import numpy as np
        import torch

        if self._started:
            for matcher, token in zip(self._matchers, input_ids[:, -1].tolist()):
                if not matcher.is_stopped() and not matcher.is_error():
                    matcher.consume_token(int(token))
        self._started = True
        words = (self._vocab + 31) // 32
        bitmask = np.full((len(self._matchers), words), -1, dtype=np.int32)
        for row, matcher in enumerate(self._matchers):
            if not matcher.is_stopped() and not matcher.is_error():
                view = bitmask[row]
                matcher.unsafe_compute_mask_ptr(view.ctypes.data, view.nbytes)
        bits = np.unpackbits(bitmask.view(np.uint8), axis=1, bitorder="little")[:, :self._vocab].astype(bool)
        allowed = torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
        allowed[:, :self._vocab] = torch.from_numpy(bits).to(scores.device)
        return scores.masked_fill(~allowed, float("-inf"))


def schema_constraint(tokenizer: Any, schema: dict[str, Any] | None = None) -> ConstraintFactory:
    """A constraint factory for :func:`generate_predictions` / :func:`generate_for_run`: every output
    follows the flow JSON Schema (compact JSON, as in training), through llguidance."""
    import llguidance
    from transformers import LogitsProcessorList

    grammar = llguidance.LLMatcher.grammar_from_json_schema(
        json.dumps(decoding_schema(schema)),
        overrides={"whitespace_flexible": False, "item_separator": ",", "key_separator": ":"})
    SchemaLogitsProcessor(tokenizer, grammar, 1)  # fail early on a grammar it cannot compile

    def factory(prompt_lengths: Sequence[int]) -> Any:
        return LogitsProcessorList([SchemaLogitsProcessor(tokenizer, grammar, batch_size=len(prompt_lengths))])

    return factory
