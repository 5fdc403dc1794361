"""What the notebooks need besides valid parameters, checked before the first one runs; and a prompted arm that ran.

:func:`resource_problems` looks at one notebook's effective parameter values (declared defaults, then
profile and overrides) and names, one line each, what would stop it later: a base model that does not
resolve to local weights, an engine that cannot start (missing wheel, weights not fetched or damaged),
a remote endpoint without an API key or without model ids, ``bf16`` without a CUDA GPU. Nothing is
downloaded, dequantised or loaded. :func:`require_prompted_systems` stops a run whose prompted arm had
no system that could answer, with each model's reason.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

__all__ = ["NoPromptedSystemError", "model_problem", "require_prompted_systems", "resource_problems"]


class NoPromptedSystemError(RuntimeError):
    """The prompted arm ran no system: every model failed before answering (the message lists why)."""


def model_problem(name: str) -> str | None:
    """Why ``name`` (a weights registry name, a model directory or a cached hub id) does not resolve to
    local weights, or None.

    A registry name needs its float copy in the cache or its GGUF present and verified (the first
    use dequantises it; nothing is dequantised here); other names follow
    :func:`wfutils.models.resolve_model`, which for them only looks on disk.
    """
    from wfutils import weights
    from wfutils.models import ModelNotFoundError, dequantised_copy, resolve_model

    try:
        if name in weights.WEIGHTS:
            if dequantised_copy(name) is None:
                weights.require(name)
        else:
            resolve_model(name)
    except (ModelNotFoundError, weights.WeightsError) as exc:
        return str(exc)
    return None


def _gpu_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _engine_problem(engine_name: str, model: str) -> str | None:
    """Why the local engine ``engine_name`` could not serve ``model`` (its own check, then the model), or None."""
    from wfutils.engines import UnknownEngineError, get_engine
    from wfutils.engines.base import Engine

    try:
        engine_class = get_engine(engine_name)
    except UnknownEngineError as exc:
        return str(exc)
    if not engine_class.starts_locally:
        return None
    if engine_class.check is Engine.check:  # an engine without its own check serves a model directory
        return model_problem(model)
    try:
        engine_class(model).check()
    except (OSError, RuntimeError, ValueError) as exc:  # missing wheel, weights not fetched or damaged
        return str(exc)
    return None


def resource_problems(notebook: str, values: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> list[str]:
    """One line per resource ``notebook`` would miss with these parameter ``values``, naming the parameter and the fix."""
    from wfutils.llm.client import is_local_url, public_url

    environ = os.environ if environ is None else environ
    problems: list[str] = []

    def problem(parameter: str, text: str) -> None:
        problems.append(f"notebook {notebook}: parameter {parameter}: {text}")

    if isinstance(values.get("base_model"), str) and (reason := model_problem(values["base_model"])):
        problem("base_model", f"{reason}; fix: put the model in the local Hugging Face cache or pass a registry "
                              f"name or model directory with -p {notebook}.base_model=...")
    if values.get("bf16") is True and not _gpu_available():
        problem("bf16", f"bf16=true needs a CUDA GPU and torch sees none here; fix: run on a GPU machine "
                        f"or pass -p {notebook}.bf16=false")
    if "local_model" in values or "base_url" in values:
        base_url = values.get("base_url") or environ.get("OPENAI_BASE_URL")
        if base_url:
            where = "base_url" if values.get("base_url") else "base_url (from $OPENAI_BASE_URL)"
            if not is_local_url(base_url) and not environ.get("OPENAI_API_KEY"):
                problem(where, f"the remote endpoint {public_url(base_url)} needs an API key and $OPENAI_API_KEY "
                               "is not set; fix: export OPENAI_API_KEY=..., or unset $OPENAI_BASE_URL and pass "
                               f"-p {notebook}.base_url=null for the local engine")
            if "models" in values and not values.get("models"):
                problem("models", f"the endpoint {public_url(base_url)} needs model ids; fix: "
                                  f"-p '{notebook}.models=[gpt-4o]'")
        elif isinstance(values.get("local_model"), str):
            engine = values.get("local_engine", "llamacpp")
            if reason := _engine_problem(str(engine), values["local_model"]):
                problem("local_model", f"{reason}; fix: `make models` for registry weights, or choose another "
                                       f"-p {notebook}.local_model=... / local_engine=...")
    return problems


def require_prompted_systems(summary: Mapping[str, Any]) -> None:
    """Raise :class:`NoPromptedSystemError` when a prompted arm's summary (``llm/summary.json``) has no system
    whose model answered, naming each model's error; a run with at least one working system passes."""
    models = summary.get("models") or {}
    working = [name for name, info in models.items() if not (info or {}).get("error")]
    if summary.get("systems") and working:
        return
    reasons = [f"{name}: {(info or {}).get('error') or 'no system was run'}" for name, info in models.items()]
    raise NoPromptedSystemError("no prompted system could run, so there is nothing to evaluate:\n  "
                                + ("\n  ".join(reasons) if reasons else "no model was configured"))
