"""Learning-curve points of one fine-tuning run: the adapters kept at ``TrainConfig.keep_steps`` answer the
first requests of the training corpus's test split, so notebook 06 can draw test quality against the number of
labelled pairs (the data break-even) on the requests every prompted system answered too.

Each point is a fine-tuned system of its own (``<system>-step<N>``) whose sidecar says ``learning_curve``:
notebooks 04 and 05 leave it out, it is never the headline's fine-tuned system.
"""

from __future__ import annotations

import gc
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from wfutils.slm.generation import GenerationConfig, generate_for_run, slm_system_meta
from wfutils.slm.training import load_finetuned, read_training_record

__all__ = ["curve_system", "generate_curve_points"]


def curve_system(system: str, step: int) -> str:
    """The predictions-file name of the learning-curve point of ``system`` at optimizer step ``step``."""
    return f"{system}-step{int(step)}"


def generate_curve_points(run_dir: str | os.PathLike[str], slm_dir: str | os.PathLike[str], *, system: str,
                          base_model: str, generation: GenerationConfig, max_new_tokens: int | None = None,
                          dtype: str = "float32", progress: bool = True) -> dict[str, Any]:
    """Answer the first ``generation.curve_limit`` requests of the training corpus's test split with every
    learning-curve adapter the training record lists (``curve_adapters``); returns each point's generation
    summary by system name (empty when the run kept none).

    ``max_new_tokens``: the answer budget of the run's own fine-tuned system on that split, so every point
    answers under the same budget; ``dtype``: the one the run's own system was loaded in (``load_finetuned``'s).
    Answers already written for the same adapter are reused (resumable).
    """
    run_dir, slm_dir = Path(run_dir), Path(slm_dir)
    record = read_training_record(slm_dir)
    adapters = record.get("curve_adapters") or {}
    summaries: dict[str, Any] = {}
    for step, relative in sorted(adapters.items(), key=lambda item: int(item[0])):
        adapter_dir = slm_dir / relative
        model, tokenizer = load_finetuned(adapter_dir, base_model=base_model, dtype=dtype)
        name = curve_system(system, int(step))
        meta = replace(slm_system_meta(name, model, tokenizer, base_model=base_model,
                                       adapter=os.path.relpath(adapter_dir, run_dir),
                                       train_corpus=generation.train_corpus, record=record,
                                       checkpoint_step=int(step)), learning_curve=True)
        summaries[name] = generate_for_run(
            model, tokenizer, run_dir, meta=meta, force=generation.force,
            key={"adapter": record["fingerprint"], "step": int(step), "max_new_tokens": max_new_tokens,
                 "max_new_tokens_cap": generation.max_new_tokens_cap},
            eval_splits=[f"{generation.train_corpus}/test"], limit=generation.curve_limit,
            batch_size=generation.gen_batch_size, max_new_tokens=max_new_tokens,
            max_new_tokens_cap=generation.max_new_tokens_cap, progress=progress)
        del model
        gc.collect()
    return summaries
