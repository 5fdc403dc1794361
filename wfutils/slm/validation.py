"""Validation FlowSim while fine-tuning: the measured curve that chooses the training steps.

Validation *loss* says how well the model predicts the reference tokens; what the study reports
is FlowSim of greedy answers. :class:`ValidationFlowSim` is a trainer callback: at every
evaluation the trainer runs (``eval_every`` steps) it greedy-decodes the first ``n`` requests of
the validation split with the model being trained and adds their mean FlowSim
(``eval_flowsim``) and parse rate (``eval_parsed``) to the evaluation's metrics. Because the
trainer picks its best checkpoint from those very metrics, ``select_metric="flowsim"`` is the
trainer's own ``load_best_model_at_end`` / ``metric_for_best_model`` machinery on FlowSim. The
values are also appended to the trainer's ``log_history``, which every checkpoint saves, so a
resumed run keeps the curve of its earlier sessions. Never the test split.
"""

from __future__ import annotations

import time
from typing import Any, Mapping, Sequence

from wfutils.flows.flowsim import flow_similarities
from wfutils.flows.parsing import parse_flow
from wfutils.slm.formatting import SYSTEM_PROMPT, prompt_token_ids
from wfutils.slm.generation import slm_engine

__all__ = ["ValidationFlowSim", "validation_curve"]


def _callback_base() -> type:
    from transformers import TrainerCallback

    return TrainerCallback


class ValidationFlowSim(_callback_base()):
    """Greedy FlowSim of the first validation requests at every evaluation (``eval_flowsim``, ``eval_parsed``)."""

    def __init__(self, rows: Sequence[Mapping[str, Any]], tokenizer: Any, *, max_new_tokens: int,
                 batch_size: int = 16, system_prompt: str = SYSTEM_PROMPT, context_column: str | None = None) -> None:
        if not rows:
            raise ValueError("ValidationFlowSim needs at least one validation row")
        if max_new_tokens < 1 or batch_size < 1:
            raise ValueError(f"max_new_tokens and batch_size must be >= 1, got {max_new_tokens}, {batch_size}")
        self.references = [r["flow"] for r in rows]
        prompts = [prompt_token_ids(tokenizer, r["request"], system_prompt=system_prompt,
                                    context=r.get(context_column) if context_column else None) for r in rows]
        self.order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # similar lengths batch together
        self.prompts, self.tokenizer = prompts, tokenizer
        self.max_new_tokens, self.batch_size = int(max_new_tokens), int(batch_size)

    def score(self, model: Any) -> dict[str, float]:
        """Mean FlowSim and parse rate of ``model``'s greedy answers to the validation requests."""
        texts: dict[int, str] = {}
        engine = slm_engine(model, self.tokenizer)
        for start in range(0, len(self.order), self.batch_size):
            idx = self.order[start:start + self.batch_size]
            outs = engine.generate([self.prompts[i] for i in idx], max_new_tokens=self.max_new_tokens)
            texts.update({i: o.text for i, o in zip(idx, outs)})
        answers = [texts[i] for i in range(len(self.references))]
        parsed = [parse_flow(text).status == "ok" for text in answers]
        return {"eval_flowsim": round(float(flow_similarities(answers, self.references).mean()), 5),
                "eval_parsed": round(sum(parsed) / len(parsed), 4)}

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        if model is None or metrics is None:
            return control
        was_training = model.training
        model.eval()
        started = time.perf_counter()
        try:
            values = self.score(model)
        finally:
            if was_training:
                model.train()
        metrics.update(values)  # the dict the trainer then selects its best checkpoint from
        state.log_history.append({**values, "eval_flowsim_seconds": round(time.perf_counter() - started, 2),
                                  "n_flowsim_requests": len(self.references), "step": state.global_step})
        return control


def validation_curve(log_history: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Validation loss and FlowSim by step, from a trainer's ``log_history`` (one row per evaluated step;
    ``seconds``: the time the FlowSim answers took)."""
    by_step: dict[int, dict[str, Any]] = {}
    for entry in log_history:
        if "eval_loss" in entry or "eval_flowsim" in entry:
            row = by_step.setdefault(int(entry["step"]), {"step": int(entry["step"]), "loss": None, "flowsim": None,
                                                          "parsed": None, "seconds": None})
            if "eval_loss" in entry:
                row["loss"] = round(float(entry["eval_loss"]), 5)
            if "eval_flowsim" in entry:
                row["flowsim"], row["parsed"] = entry["eval_flowsim"], entry.get("eval_parsed")
                row["seconds"] = entry.get("eval_flowsim_seconds")
    return [by_step[s] for s in sorted(by_step)]

