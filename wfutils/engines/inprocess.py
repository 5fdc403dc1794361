"""Batched greedy generation with ``model.generate`` in this process (the fine-tuned arm's adapter, PEFT LoRA).

Prompts are left-padded into one batch and decoded greedily, each row stopping at its first stop token;
the tokens are counted per row up to and including that token. ``benchmarks/slm_bench.py`` compared it with
a hand-written loop that drops finished rows and kept ``model.generate``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from wfutils.engines.base import EngineInfo, InProcessEngine, register

__all__ = ["Generated", "InProcessTransformersEngine", "generate_batch", "left_padded"]


@dataclass
class Generated:
    """One generated answer."""

    text: str
    prompt_tokens: int
    completion_tokens: int  # generated tokens up to and including the stop token


def left_padded(prompts: Sequence[Sequence[int]], pad_id: int) -> tuple[Any, Any]:
    """Token ids and attention mask of a batch of tokenised prompts, padded on the left to the longest one
    (decoder-only models continue from the last position of every row)."""
    import torch

    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, p in enumerate(prompts):
        ids[row, width - len(p):] = torch.tensor(list(p))
        mask[row, width - len(p):] = 1
    return ids, mask


def generate_batch(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    stop_ids: Sequence[int],
    pad_id: int,
    logits_processor: Any = None,
) -> list[Generated]:
    """Greedy-decode a batch of tokenised prompts with ``model.generate`` (left padding, stops at ``stop_ids``).

    ``logits_processor`` (a ``LogitsProcessorList``) is passed on to ``generate``.
    """
    import torch
    from transformers import GenerationConfig

    if not prompts:
        return []
    ids, mask = left_padded(prompts, pad_id)
    device = next(model.parameters()).device
    stop = list(stop_ids)
    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=stop, pad_token_id=pad_id,
                              use_cache=True)
    with torch.inference_mode():
        out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), generation_config=config,
                             logits_processor=logits_processor)
    results = []
    stop_set = set(stop)
    for row, p in enumerate(prompts):
        new = out[row, ids.shape[1]:].tolist()
        n = next((k + 1 for k, t in enumerate(new) if t in stop_set), len(new))
        text = tokenizer.decode(new[:n], skip_special_tokens=True)
        results.append(Generated(text=text, prompt_tokens=len(p), completion_tokens=n))
    return results


@register
class InProcessTransformersEngine(InProcessEngine):
    """A loaded ``transformers`` model (a PEFT adapter on it included) generating in batches in this process.

    Entering puts the model in eval mode; leaving restores training mode if it was on.
    """

    name = "transformers-inprocess"
    starts_locally = False  # it runs a model the caller loaded, not one it starts by name

    def __init__(self, model: Any, tokenizer: Any, *, stop_ids: Sequence[int], pad_id: int) -> None:
        self.model, self.tokenizer, self.stop_ids, self.pad_id = model, tokenizer, list(stop_ids), pad_id
        self._was_training = False

    def info(self) -> EngineInfo:
        import torch
        import transformers

        adapter = "peft-lora" if hasattr(self.model, "peft_config") else None
        dtype = str(getattr(self.model, "dtype", "") or "").removeprefix("torch.") or None  # the weights as they run
        return EngineInfo(name=self.name, version=transformers.__version__, local=True, quantisation=dtype,
                          threads=torch.get_num_threads(), prompt_cache=None, adapter_format=adapter,
                          settings={"method": "model.generate, batched"})

    def __enter__(self) -> "InProcessTransformersEngine":
        self._was_training = bool(self.model.training)
        self.model.eval()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._was_training:
            self.model.train()

    def generate(self, prompts: Sequence[Sequence[int]], *, max_new_tokens: int,
                 logits_processor: Any = None) -> list[Generated]:
        return generate_batch(self.model, self.tokenizer, prompts, max_new_tokens=max_new_tokens,
                              stop_ids=self.stop_ids, pad_id=self.pad_id, logits_processor=logits_processor)
