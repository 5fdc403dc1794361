"""What a prompted system is: its :class:`wfutils.data.predictions.SystemMeta`, built from explicit facts.

Every predictions file of the prompted arm carries a sidecar saying which model answered
(``base_model``, ``n_params``, ``model_sha256``), how it was prompted (``strategy``, ``k``,
``retrieval``), what served it (``engine``, an :class:`~wfutils.data.predictions.EngineInfo`) and how
it decoded (``decoding``). :func:`prompted_meta` builds it from the strategy object and the arm's
settings; nothing is parsed back from a system name.

``n_params``: for a name of the weights registry (:data:`wfutils.weights.WEIGHTS`), its published count,
the same whichever engine serves it; for another local model, the count read from its weights' headers
(:func:`wfutils.models.local_model_facts`); **None means not published** (a remote endpoint does not say
how large its model is; ``PromptConfig``-level ``n_params`` states it when known).
``model_sha256``: the SHA-256 of the GGUF file a local model is served from or was dequantised from (the
registry's pinned hash for a registry name); None otherwise.
"""

from __future__ import annotations

from wfutils.data.predictions import PROMPTED, EngineInfo, SystemMeta
from wfutils.llm.strategies import Strategy, get_strategy

__all__ = ["decoding_label", "prompted_meta"]


def decoding_label(temperature: float, json_mode: str = "none", *, prompt_cache: bool = False) -> str:
    """``greedy`` (temperature 0) or ``sampling(temperature=T)``, plus ``+json_object`` / ``+json_schema``,
    plus ``+prompt_cache`` when the engine reused the KV cache of a previous prompt's prefix (llama.cpp's
    ``cache_prompt``: greedy answers then depend on the order of the requests, book/methods.md, "Engines")."""
    base = "greedy" if float(temperature) == 0.0 else f"sampling(temperature={float(temperature):g})"
    label = base if json_mode == "none" else f"{base}+json_{json_mode}"
    return f"{label}+prompt_cache" if prompt_cache else label


def prompted_meta(system: str, strategy: str | Strategy, *, base_model: str, n_params: int | None, k: int,
                  retrieval: str, engine: EngineInfo | None, decoding: str, model_sha256: str | None = None,
                  train_corpus: str = "synthetic") -> SystemMeta:
    """The :class:`SystemMeta` of a prompted system (``retrieval`` is the arm's mode; strategies
    that retrieve nothing get ``none``, and ``k`` is the number of examples a prompt shows)."""
    s = get_strategy(strategy)
    return SystemMeta(system=system, arm=PROMPTED, base_model=str(base_model),
                      n_params=None if n_params is None else int(n_params),
                      adapter=None, strategy=s.name, k=s.examples_in_prompt(k), retrieval=s.retrieval(retrieval),
                      engine=engine, decoding=decoding, model_sha256=model_sha256, train_corpus=train_corpus)
