"""What a prompted system is: its :class:`wfutils.data.predictions.SystemMeta`, built from explicit facts.

Every predictions file of the prompted arm carries a sidecar saying which model answered
(``base_model``, ``n_params``, ``model_sha256``), how it was prompted (``strategy``, ``k``,
``retrieval``), what served it (``engine``) and how it decoded (``decoding``).
:func:`prompted_meta` builds it from the strategy object and the arm's settings; nothing is
parsed back from a system name.

``n_params``: for a local model, the parameter count read from its weights' headers
(safetensors; tied embeddings counted once, as ``model.num_parameters()`` does) without
loading it; **0 means unknown** (a remote endpoint does not say how large its model is;
``run_arm(n_params={"model": N})`` states it when known).
``model_sha256``: the SHA-256 of the GGUF file a local model was dequantised from
(:func:`wfutils.models.model_sha256`); None otherwise.
"""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path
from typing import Any

from wfutils.data.predictions import SystemMeta
from wfutils.llm.strategies import Strategy, get_strategy

__all__ = ["decoding_label", "local_model_facts", "parameters_on_disk", "prompted_meta"]


def _safetensors_numel(path: Path) -> int:
    with open(path, "rb") as handle:
        (size,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(size))
    return sum(math.prod(v["shape"]) for k, v in header.items() if k != "__metadata__")


def parameters_on_disk(model_dir: str | os.PathLike[str]) -> int:
    """Parameters of a Hugging Face model directory, from its safetensors headers, without loading it
    (0 when unknown; :func:`wfutils.models.count_parameters` counts a loaded model's)."""
    folder = Path(model_dir)
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return 0
    try:
        return int(sum(_safetensors_numel(f) for f in files))
    except (OSError, ValueError, KeyError, struct.error):
        return 0


def local_model_facts(model: str | os.PathLike[str]) -> dict[str, Any]:
    """``n_params`` and ``model_sha256`` of a local model (a known name or a model directory)."""
    from wfutils.models import model_sha256, resolve_model

    model_dir = resolve_model(model)
    return {"n_params": parameters_on_disk(model_dir), "model_sha256": model_sha256(model),
            "model_dir": str(model_dir)}


def decoding_label(temperature: float, json_mode: str = "none", *, prompt_cache: bool = False) -> str:
    """``greedy`` (temperature 0) or ``sampling(temperature=T)``, plus ``+json_object`` / ``+json_schema``,
    plus ``+prompt_cache`` when the engine reused the KV cache of a previous prompt's prefix (llama.cpp's
    ``cache_prompt``: greedy answers then depend on the order of the requests, :mod:`wfutils.llm.llamacpp`)."""
    base = "greedy" if float(temperature) == 0.0 else f"sampling(temperature={float(temperature):g})"
    label = base if json_mode == "none" else f"{base}+json_{json_mode}"
    return f"{label}+prompt_cache" if prompt_cache else label


def prompted_meta(system: str, strategy: str | Strategy, *, base_model: str, n_params: int, k: int, retrieval: str,
                  engine: str, decoding: str, model_sha256: str | None = None,
                  train_corpus: str = "synthetic") -> SystemMeta:
    """The :class:`SystemMeta` of a prompted system (``retrieval`` is the arm's mode; strategies
    that retrieve nothing get ``none``, and ``k`` is the number of examples a prompt shows)."""
    s = get_strategy(strategy)
    return SystemMeta(system=system, arm="prompted", base_model=str(base_model), n_params=int(n_params),
                      adapter=None, strategy=s.name, k=s.examples_in_prompt(k), retrieval=s.retrieval(retrieval),
                      engine=engine, decoding=decoding, model_sha256=model_sha256, train_corpus=train_corpus)
