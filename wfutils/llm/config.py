"""The prompted arm's configuration as typed data: :class:`PromptConfig` (notebook 03's parameters) and
:class:`Decoding` (how every request decodes), both checked before any model is loaded or any request sent.

>>> from wfutils.llm.arm import run_arm                                 # doctest: +SKIP
>>> run_arm("results/dev", PromptConfig(local_model="smollm2-135m", strategies=["few_shot"]))

Types and ``Literal`` choices are checked by :func:`wfutils.config.validate` (an unknown field or a value of
the wrong type names the field and what it accepts); ranges, the engine name (one of the registry's engines
that start a local model, :mod:`wfutils.engines`), the strategy names (:data:`wfutils.llm.strategies.STRATEGIES`)
and the endpoint URL (:func:`wfutils.llm.client.check_base_url`, never echoing a password) are checked here.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from wfutils.config import ConfigError, config_from, validate
from wfutils.engines import ENGINES, UnknownEngineError, engine_names
from wfutils.llm.client import check_base_url
from wfutils.llm.strategies import get_strategy

__all__ = ["Decoding", "PromptConfig", "local_engine_names"]

JsonMode = Literal["none", "object", "schema"]


def local_engine_names() -> list[str]:
    """Registered engines that start a local model by name (what ``local_engine`` accepts)."""
    return [name for name in engine_names() if ENGINES[name].kind == "server" and ENGINES[name].starts_locally]


@dataclass(frozen=True)
class Decoding:
    """How every request of the prompted arm decodes (part of each system's resume key)."""

    temperature: float = 0.0
    max_tokens: int = 512
    step_max_tokens: int = 128  # decomposed: per-part inputs call
    json_mode: JsonMode = "none"  # "object" / "schema": ask the endpoint for JSON (falls back when unsupported)

    def __post_init__(self) -> None:
        validate(self)
        problems = []
        if self.temperature < 0:
            problems.append(f"temperature must be >= 0, got {self.temperature!r}")
        for name in ("max_tokens", "step_max_tokens"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if problems:
            raise ConfigError("Decoding: " + "; ".join(problems))


@dataclass
class PromptConfig:
    """Notebook 03's parameters (all but ``run_dir``), with its defaults: what :func:`wfutils.llm.arm.run_arm` runs."""

    base_url: str | None = None  # None: $OPENAI_BASE_URL, else start a local engine for local_model
    models: list[str] | None = None  # model ids at a remote endpoint; ignored for a local engine
    local_model: str = "qwen2.5-coder-0.5b"  # a name of the weights registry, a .gguf path or a model directory
    local_engine: str = "llamacpp"  # a registered engine that starts a local model (local_engine_names())
    prompt_cache: bool = True  # llamacpp: each system's fixed prompt prefix read once and primed before every request
    engine_threads: int | None = None  # llamacpp: CPU threads (None: $WFBOOK_LLAMACPP_THREADS, else 1)
    strategies: list[str] = field(default_factory=lambda: ["zero_shot", "few_shot", "rag_few_shot", "decomposed"])
    retrieval: list[Literal["bm25", "oracle"]] = field(default_factory=lambda: ["bm25"])
    k: int = 3  # few-shot / retrieved examples per prompt
    train_corpus: str = "synthetic"  # the data set few-shot examples, retrieval pool and catalogue come from
    eval_splits: list[str] | None = None  # "<data set>/<split>" names; None: every test / ood split
    max_examples: int | None = 20  # per split; None: all
    concurrency: int = 4
    temperature: float = 0.0
    max_tokens: int = 512
    step_max_tokens: int = 128
    json_mode: JsonMode = "none"
    max_retries: int = 5  # the openai client's retries per call (429, 5xx, timeouts, connection errors)
    force: bool = False  # recompute every system (restart predictions files, skip cached responses)

    def __post_init__(self) -> None:
        validate(self)
        check_base_url(self.base_url)
        problems = []
        cores = os.cpu_count() or 1
        if self.engine_threads is not None and not 1 <= self.engine_threads <= cores:
            problems.append(f"engine_threads must be None or an int from 1 to this machine's {cores} cores, "
                            f"got {self.engine_threads!r}")
        for name, low in (("k", 0), ("concurrency", 1), ("max_retries", 0)):
            if getattr(self, name) < low:
                problems.append(f"{name} must be >= {low}, got {getattr(self, name)!r}")
        if self.max_examples is not None and self.max_examples < 1:
            problems.append(f"max_examples must be >= 1 or None, got {self.max_examples!r}")
        if not self.strategies:
            problems.append("strategies is empty")
        for name in self.strategies:
            try:
                get_strategy(name)
            except ValueError as exc:
                problems.append(str(exc))
        if self.models is not None and not all(self.models):
            problems.append(f"models must be non-empty model ids, got {self.models!r}")
        if problems:
            raise ConfigError("PromptConfig: " + "; ".join(problems))
        if self.local_engine not in local_engine_names():
            known = "not a registered engine" if self.local_engine not in ENGINES else "an engine that starts no local model"
            raise UnknownEngineError(f"PromptConfig: local_engine {self.local_engine!r} is {known}; it must be one "
                                     f"of {', '.join(map(repr, local_engine_names()))} (registered engines: "
                                     f"{', '.join(engine_names())})")
        self.decoding  # noqa: B018 - checks the decoding settings too

    @property
    def decoding(self) -> Decoding:
        """The decoding settings as one value."""
        return Decoding(temperature=self.temperature, max_tokens=self.max_tokens,
                        step_max_tokens=self.step_max_tokens, json_mode=self.json_mode)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_values(cls, values: dict[str, Any], where: str | None = None) -> "PromptConfig":
        """From a mapping (notebook parameters, a profile): an unknown field is named, not a TypeError."""
        return config_from(cls, values, where)
