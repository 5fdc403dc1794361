"""Batched greedy generation of flows for a whole split, written as predictions JSONL.

Prompts are sorted by length and generated in batches with left padding; each sequence stops
at its end-of-turn token and leaves the batch (and its KV cache), so the batch shrinks as its
answers finish. Every finished batch is appended to ``predictions/<system>.jsonl`` through
:class:`wfutils.data.predictions.PredictionWriter`, so a killed run resumes where it stopped.

``latency_s`` of a record is the wall time of its batch divided by the batch size (the
amortised cost per flow); the batch wall time is the latency each request actually saw.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from wfutils.data.store import parse_eval_splits
from wfutils.data.predictions import Prediction, PredictionWriter
from wfutils.slm.training import SYSTEM_PROMPT, _flow_text, end_of_turn_id, peak_rss_gib, prompt_token_ids

__all__ = ["Generated", "generate_batch", "default_max_new_tokens", "generate_predictions", "parse_eval_splits",
           "generate_for_run", "SchemaLogitsProcessor", "schema_constraint"]


@dataclass
class Generated:
    """One generated answer."""

    text: str
    prompt_tokens: int
    completion_tokens: int


def _stop_ids(tokenizer) -> list[int]:
    ids = {end_of_turn_id(tokenizer)}
    for tok in ("<|im_end|>", "<|endoftext|>", "</s>", "<|eot_id|>"):
        tid = tokenizer.convert_tokens_to_ids(tok)
        if isinstance(tid, int) and tid != tokenizer.unk_token_id and tid >= 0:
            ids.add(tid)
    return sorted(ids)


def generate_batch(
    model,
    tokenizer,
    prompts: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    logits_processor: Any = None,
) -> list[Generated]:
    """Greedy-decode a batch of tokenised prompts (left-padded), stopping at end-of-turn per sequence.

    A sequence that has stopped leaves the batch (its rows are dropped from the KV cache), so
    the remaining ones decode at the cost of a smaller batch instead of carrying finished rows
    to the longest answer. Tokens are those of ``model.generate`` with greedy decoding.
    ``logits_processor(input_ids, scores)`` sees the active rows only; a processor with a
    ``select_rows(keep)`` method is told which rows remain after each drop.
    """
    import torch

    if not prompts:
        return []
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else end_of_turn_id(tokenizer)
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, p in enumerate(prompts):
        ids[row, width - len(p):] = torch.tensor(list(p))
        mask[row, width - len(p):] = 1
    device = next(model.parameters()).device
    ids, mask = ids.to(device), mask.to(device)
    stop = torch.tensor(_stop_ids(tokenizer), device=device)
    processors = list(logits_processor) if logits_processor is not None else []
    active = list(range(len(prompts)))  # original row of each row still decoding
    new_tokens: list[list[int]] = [[] for _ in prompts]
    with torch.inference_mode():
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1)
        cache = out.cache if hasattr(out, "cache") else out.past_key_values
        for step in range(max_new_tokens):
            scores = out.logits[:, -1, :].float()
            for processor in processors:
                scores = processor(ids, scores)
            chosen = scores.argmax(-1)
            for row, token in zip(active, chosen.tolist()):
                new_tokens[row].append(token)
            if step == max_new_tokens - 1:
                break
            going = ~torch.isin(chosen, stop)
            if not bool(going.any()):
                break
            ids = torch.cat([ids, chosen[:, None]], dim=1)
            mask = torch.cat([mask, torch.ones_like(chosen)[:, None]], dim=1)
            if not bool(going.all()):
                keep = going.nonzero().flatten()
                cache.batch_select_indices(keep)
                ids, mask, chosen = ids[keep], mask[keep], chosen[keep]
                kept = keep.tolist()
                active = [active[j] for j in kept]
                for processor in processors:
                    if hasattr(processor, "select_rows"):
                        processor.select_rows(kept)
            out = model(input_ids=chosen[:, None], attention_mask=mask, position_ids=mask.sum(-1, keepdim=True) - 1,
                        cache=cache, use_cache=True)
    results = []
    for row, p in enumerate(prompts):
        text = tokenizer.decode(new_tokens[row], skip_special_tokens=True)
        results.append(Generated(text=text, prompt_tokens=len(p), completion_tokens=len(new_tokens[row])))
    return results


def default_max_new_tokens(tokenizer, references: Iterable[str], *, slack: float = 1.25, extra: int = 16,
                           cap: int = 2048) -> int:
    """A generation budget from the token lengths of the reference flows (longest x slack + extra)."""
    longest = max((len(tokenizer(_safe_flow_text(r), add_special_tokens=False)["input_ids"])
                   for r in references), default=256)
    return int(min(cap, longest * slack + extra))


def _safe_flow_text(reference: Any) -> str:
    try:
        return _flow_text(reference)
    except (json.JSONDecodeError, TypeError):
        return str(reference)


def generate_predictions(
    model,
    tokenizer,
    rows: Iterable[Mapping[str, Any]],
    out_path: str | os.PathLike,
    *,
    system: str,
    split: str,
    batch_size: int = 16,
    max_new_tokens: int | None = None,
    context_column: str | None = None,
    examples: Sequence[tuple[str, str]] = (),
    system_prompt: str = SYSTEM_PROMPT,
    logits_processor_factory: Any = None,
    progress: bool = True,
) -> Path:
    """Generate a flow for every row (``id``, ``request``, ``flow`` = reference) not yet in ``out_path``.

    ``examples`` adds few-shot (request, flow) turns to every prompt (the prompted baseline of the
    same model). ``logits_processor_factory(prompt_lengths)`` may return a logits processor list
    (constrained decoding). Returns ``out_path``.
    """
    from tqdm import tqdm

    rows = [dict(r) for r in (rows.to_list() if hasattr(rows, "to_list") else rows)]
    for i, row in enumerate(rows):
        for name in ("id", "request", "flow"):
            if name not in row or row[name] in (None, ""):
                raise ValueError(f"{split} record {i}: field {name!r} is missing or empty")
        if context_column and context_column not in row:
            raise ValueError(f"{split} record {i} (id {row['id']!r}): context column {context_column!r} is missing")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    out_path = Path(out_path)
    was_training = model.training
    model.eval()
    with PredictionWriter(out_path) as writer:
        todo = [r for r in rows if str(r["id"]) not in writer.done_ids]
        if not todo:
            return out_path
        if max_new_tokens is None:
            max_new_tokens = default_max_new_tokens(tokenizer, [r["flow"] for r in rows])
        few_shot = [(q, _safe_flow_text(f)) for q, f in examples]
        prompts = [prompt_token_ids(tokenizer, r["request"], examples=few_shot, system_prompt=system_prompt,
                                    context=r.get(context_column) if context_column else None) for r in todo]
        order = sorted(range(len(todo)), key=lambda i: len(prompts[i]), reverse=True)
        bar = tqdm(total=len(todo), desc=f"generating {split} ({system})", unit="flow", disable=not progress)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            batch_prompts = [prompts[i] for i in idx]
            processor = logits_processor_factory([len(p) for p in batch_prompts]) if logits_processor_factory else None
            t0 = time.perf_counter()
            outs = generate_batch(model, tokenizer, batch_prompts, max_new_tokens=max_new_tokens,
                                  logits_processor=processor)
            dt = time.perf_counter() - t0
            for i, gen in zip(idx, outs):
                row = todo[i]
                reference = row["flow"] if isinstance(row["flow"], str) else json.dumps(row["flow"])
                writer.write(Prediction.from_output(
                    id=str(row["id"]), split=split, system=system, request=row["request"], reference=reference,
                    output=gen.text, latency_s=round(dt / len(idx), 4), prompt_tokens=gen.prompt_tokens,
                    completion_tokens=gen.completion_tokens))
            bar.update(len(idx))
            bar.set_postfix(tok_s=f"{sum(g.completion_tokens for g in outs) / dt:.0f}")
        bar.close()
    if was_training:
        model.train()
    return out_path


def generate_for_run(
    model,
    tokenizer,
    run_dir: str | os.PathLike,
    *,
    system: str,
    eval_splits: Sequence[str] = ("synthetic/test", "synthetic/ood", "n8n/test", "logic_apps/test"),
    limit: int | None = None,
    batch_size: int = 16,
    max_new_tokens: int | None = None,
    max_new_tokens_cap: int = 1024,
    examples: Sequence[tuple[str, str]] = (),
    logits_processor_factory: Any = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Generate predictions for the evaluation splits of a run into ``predictions/<system>.jsonl``.

    Splits are read with :func:`wfutils.data.store.load_run_data`; a split the run lacks raises before
    any generation. ``limit`` keeps the first N rows of each split. Returns timings per split.
    """
    from wfutils.data.store import load_run_data
    from wfutils.data.predictions import predictions_path

    data = load_run_data(run_dir)
    wanted = parse_eval_splits(eval_splits)
    missing = [f"{n}/{s}" for n, s in wanted if n not in data or s not in data[n]]
    if missing:
        have = [f"{n}/{s}" for n, dd in data.items() for s in dd]
        raise ValueError(f"evaluation split(s) {missing} not found under {Path(run_dir) / 'data'}; available: {have}")
    path = predictions_path(run_dir, system)
    summary: dict[str, Any] = {"system": system, "path": str(path), "splits": {}}
    for name, split in wanted:
        ds = data[name][split]
        rows = ds.to_list()[:limit] if limit is not None else ds.to_list()
        budget = max_new_tokens or min(max_new_tokens_cap, default_max_new_tokens(tokenizer, [r["flow"] for r in rows]))
        t0 = time.perf_counter()
        generate_predictions(model, tokenizer, rows, path, system=system, split=split, batch_size=batch_size,
                             max_new_tokens=budget, examples=examples,
                             logits_processor_factory=logits_processor_factory, progress=progress)
        summary["splits"][f"{name}/{split}"] = {"n": len(rows), "max_new_tokens": budget,
                                                "seconds": round(time.perf_counter() - t0, 2)}
    summary["peak_rss_gib"] = peak_rss_gib()  # of the whole process, training included
    return summary


# --------------------------------------------------------------------------- constrained decoding

_TOKENIZER_DATA: dict[int, Any] = {}


def _enforcer_tokenizer_data(tokenizer) -> Any:
    """lm-format-enforcer's view of the vocabulary (built once per tokenizer; a few seconds)."""
    import functools

    from lmformatenforcer import TokenEnforcerTokenizerData

    key = id(tokenizer)
    if key not in _TOKENIZER_DATA:
        special = set(tokenizer.all_special_ids)
        zero = tokenizer.encode("0", add_special_tokens=False)[-1]
        vocab = len(tokenizer)
        regular = []
        for tid in range(vocab):
            if tid in special:
                continue
            after_zero = tokenizer.decode([zero, tid])[1:]
            alone = tokenizer.decode([tid])
            regular.append((tid, after_zero, len(after_zero) > len(alone)))

        def decode(tokens: list[int]) -> str:
            return tokenizer.decode(tokens).rstrip("\ufffd")

        _TOKENIZER_DATA[key] = TokenEnforcerTokenizerData(regular, functools.partial(decode), _stop_ids(tokenizer),
                                                          False, vocab)
    return _TOKENIZER_DATA[key]


class SchemaLogitsProcessor:
    """Masks every token that would break the flow JSON Schema (lm-format-enforcer), row by row.

    Works with left-padded batches: each row's full token sequence is handed to its own
    :class:`lmformatenforcer.TokenEnforcer`, which treats the first sequence it sees as the prompt.
    """

    def __init__(self, tokenizer, schema: dict[str, Any] | None = None, batch_size: int = 1) -> None:
        from lmformatenforcer import JsonSchemaParser, TokenEnforcer

        from wfutils.flows.schema import FLOW_SCHEMA

        data = _enforcer_tokenizer_data(tokenizer)
        self._enforcers = [TokenEnforcer(data, JsonSchemaParser(schema or FLOW_SCHEMA)) for _ in range(batch_size)]

    def select_rows(self, keep: Sequence[int]) -> None:
        """Keep the enforcers of these rows only (their sequences left the batch in this order)."""
        self._enforcers = [self._enforcers[j] for j in keep]

    def __call__(self, input_ids, scores):
        import torch

        mask = torch.full_like(scores, float("-inf"))
        for row, seq in enumerate(input_ids.tolist()):
            allowed = self._enforcers[row].get_allowed_tokens(seq).allowed_tokens
            mask[row, allowed] = 0.0
        return scores + mask


def schema_constraint(tokenizer, schema: dict[str, Any] | None = None):
    """A ``logits_processor_factory`` for :func:`generate_predictions`: JSON-Schema-guided decoding.

    Needs ``pip install lm-format-enforcer`` (0.11.3 was used here; its own transformers
    integration does not import with transformers 5, so the vocabulary is prepared here).
    """
    from transformers import LogitsProcessorList

    _enforcer_tokenizer_data(tokenizer)  # fail early, build once

    def factory(prompt_lengths: Sequence[int]):
        return LogitsProcessorList([SchemaLogitsProcessor(tokenizer, schema, batch_size=len(prompt_lengths))])

    return factory
