"""The one small interface every engine implements, and the registry that finds them by name.

An engine is started and stopped as a context manager (``with engine as running: ...``), says what it is
(:meth:`Engine.info`, an :class:`~wfutils.data.predictions.EngineInfo`) and answers either over an
OpenAI-compatible endpoint (:class:`ServerEngine`: :meth:`ServerEngine.endpoint`, turned into a cached
client by :func:`wfutils.llm.client.connect`) or in-process (:class:`InProcessEngine`: ``generate``).
A module of :mod:`wfutils.engines` adds an engine by decorating its class with :func:`register`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from wfutils.data.predictions import EngineInfo, slug

__all__ = ["ENGINES", "Endpoint", "Engine", "EngineInfo", "EngineStartError", "InProcessEngine", "ServerEngine",
           "UnknownEngineError", "register"]


class EngineStartError(RuntimeError):
    """An engine could not start (its process exited, its weights did not load); the message says why."""


class UnknownEngineError(ValueError):
    """An engine name that no module of :mod:`wfutils.engines` registered; the message lists the known ones."""


@dataclass(frozen=True)
class Endpoint:
    """How to reach a running server engine and what it serves (what an OpenAI-compatible client needs)."""

    base_url: str
    model: str  # the model id the endpoint answers to
    name: str  # the short model name systems are named after
    info: EngineInfo
    cache_id: str | None = None  # endpoint identity for response caches (None: the client's default)
    api_key: str | None = field(default=None, repr=False)  # None: the client reads $OPENAI_API_KEY
    context_window: int | None = None
    count_tokens: Callable[[Sequence[dict[str, Any]]], int] | None = field(default=None, repr=False)
    n_params: int | None = None  # None: not published
    model_sha256: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)  # what the run summary records about the model


class Engine(ABC):
    """Start/stop as a context manager; :meth:`info` describes it."""

    #: The registry name (``get_engine(name)``).
    name: ClassVar[str]
    #: ``server`` (an OpenAI-compatible endpoint) or ``in-process`` (a generate call).
    kind: ClassVar[str]
    #: Whether wfbook starts it on this machine for a local model (the prompted arm's ``local_engine``).
    starts_locally: ClassVar[bool] = True
    #: The model as the caller named it (a server engine's model; in-process engines hold a loaded model).
    model: Any

    def check(self) -> None:  # noqa: B027 - optional: most engines have nothing to check before starting
        """Refuse, before any work, what would stop the engine from starting (missing wheel or weights)."""

    def model_name(self) -> str:
        """The short name systems are named after, known before the engine starts."""
        return slug(str(self.model))

    def model_facts(self) -> dict[str, Any]:
        """What is known about the model before the engine starts (file, SHA-256, size), for a start failure's report."""
        return {}

    @abstractmethod
    def __enter__(self) -> "Engine":
        ...

    @abstractmethod
    def __exit__(self, *exc: object) -> None:
        ...

    @abstractmethod
    def info(self) -> EngineInfo:
        """What this engine is, with its settings (null where unknown)."""


class ServerEngine(Engine):
    """An engine reached over an OpenAI-compatible HTTP API."""

    kind = "server"

    @abstractmethod
    def endpoint(self) -> Endpoint:
        """Where the running engine answers (valid inside the ``with`` block)."""


class InProcessEngine(Engine):
    """An engine that generates in this process."""

    kind = "in-process"

    @abstractmethod
    def generate(self, prompts: Sequence[Sequence[int]], *, max_new_tokens: int, logits_processor: Any = None) -> list:
        """Greedy answers to tokenised prompts."""


#: Engine classes by registry name, filled by :func:`register` as :mod:`wfutils.engines` imports its modules.
ENGINES: dict[str, type[Engine]] = {}


def register(cls: type[Engine]) -> type[Engine]:
    """Class decorator: make an engine known under ``cls.name``."""
    if cls.name in ENGINES and ENGINES[cls.name] is not cls:
        raise ValueError(f"engine name {cls.name!r} is already registered by {ENGINES[cls.name].__module__}")
    ENGINES[cls.name] = cls
    return cls
