"""Engines that run a model for either arm, one module each, behind one interface (:mod:`wfutils.engines.base`).

* :mod:`~wfutils.engines.llamacpp` -- llama.cpp on a GGUF (the ``xllamacpp`` wheel), an OpenAI-compatible server;
* :mod:`~wfutils.engines.transformers_serve` -- ``transformers serve`` on a model directory;
* :mod:`~wfutils.engines.remote` -- a remote OpenAI-compatible endpoint (started by someone else);
* :mod:`~wfutils.engines.inprocess` -- batched ``model.generate`` in this process (the fine-tuned arm's adapter);
* :mod:`~wfutils.engines.processes` -- starting and stopping server processes (shared by the server engines).

Adding an engine is one new module here whose class is decorated with :func:`~wfutils.engines.base.register`:
this package imports all its modules, so :func:`get_engine` finds it by name.
"""

from __future__ import annotations

import importlib
import pkgutil

from wfutils.engines.base import ENGINES, Endpoint, Engine, EngineInfo, EngineStartError, UnknownEngineError

__all__ = ["ENGINES", "Endpoint", "Engine", "EngineInfo", "EngineStartError", "UnknownEngineError", "engine_names",
           "get_engine"]

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")


def engine_names() -> list[str]:
    """The registered engines' names, sorted."""
    return sorted(ENGINES)


def get_engine(name: str) -> type[Engine]:
    """The engine class registered as ``name``; an unknown name raises :class:`UnknownEngineError` listing the known."""
    try:
        return ENGINES[name]
    except (KeyError, TypeError):
        raise UnknownEngineError(f"unknown engine {name!r}; known engines: {', '.join(engine_names())}") from None
