"""How the SLM arm talks to its model: the prompt, the completion and the tokens that end it.

Training and generation share these functions, so the prompt a fine-tuned model sees at test
time is token for token the prompt it was trained on. The prompt is the model's chat template
with a short system instruction (plus optional context) and the request; the completion is the
flow in its one text form (:func:`wfutils.flows.vocabulary.flow_text`, compact JSON) followed by
the end-of-turn token. Base models without a chat template get a plain ``### Request:`` /
``### Flow:`` format instead.
"""

from __future__ import annotations

from typing import Any

from wfutils.flows.vocabulary import flow_text

__all__ = [
    "SYSTEM_PROMPT",
    "IGNORE_INDEX",
    "training_messages",
    "end_of_turn_id",
    "stop_token_ids",
    "prompt_token_ids",
    "completion_token_ids",
]

SYSTEM_PROMPT = (
    "You turn a workflow request into a ServiceNow-style low-code flow. "
    "Answer with the flow as compact JSON only: a trigger and an ordered list of components."
)
#: Label of a position that carries no loss (prompt and padding).
IGNORE_INDEX = -100
_EXTRA_STOP_TOKENS = ("<|im_end|>", "<|endoftext|>", "</s>", "<|eot_id|>")


def training_messages(
    request: str,
    *,
    context: str | None = None,
    system_prompt: str = SYSTEM_PROMPT,
) -> list[dict[str, str]]:
    """Chat messages of the fine-tuned arm for one request: instruction (+ context), then the request.

    (Prompting with examples is the prompted arm's: :func:`wfutils.llm.strategies.build_messages`.)
    """
    system = system_prompt
    if context:
        system += "\n\nRelevant catalogue entries:\n" + context.strip()
    return [{"role": "system", "content": system}, {"role": "user", "content": request}]


def _plain_prompt(messages: list[dict[str, str]]) -> str:
    """Fallback format for base models without a chat template (e.g. Mistral-Nemo-Base)."""
    parts = []
    for m in messages:
        tag = {"system": "### Instruction", "user": "### Request", "assistant": "### Flow"}[m["role"]]
        parts.append(f"{tag}:\n{m['content']}\n")
    parts.append("### Flow:\n")
    return "\n".join(parts)


def end_of_turn_id(tokenizer: Any) -> int:
    """The token that ends the assistant's answer (``<|im_end|>`` for SmolLM2, else EOS)."""
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no EOS token; cannot mark the end of a flow")
    return int(tokenizer.eos_token_id)


def stop_token_ids(tokenizer: Any) -> list[int]:
    """Every token id that ends generation: end-of-turn plus the usual end tokens the vocabulary has."""
    ids = {end_of_turn_id(tokenizer)}
    for token in _EXTRA_STOP_TOKENS:
        tid = tokenizer.convert_tokens_to_ids(token)
        if isinstance(tid, int) and tid != tokenizer.unk_token_id and tid >= 0:
            ids.add(tid)
    return sorted(ids)


def prompt_token_ids(
    tokenizer: Any,
    request: str,
    *,
    context: str | None = None,
    system_prompt: str = SYSTEM_PROMPT,
) -> list[int]:
    """Token ids of the prompt, ending where the model's flow should start."""
    messages = training_messages(request, context=context, system_prompt=system_prompt)
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])
    ids = list(tokenizer(_plain_prompt(messages), add_special_tokens=False)["input_ids"])
    return ([tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []) + ids


def completion_token_ids(tokenizer: Any, flow: Any) -> list[int]:
    """Token ids of the answer the model is trained to give: the flow's text, then end-of-turn."""
    return list(tokenizer(flow_text(flow), add_special_tokens=False)["input_ids"]) + [end_of_turn_id(tokenizer)]
