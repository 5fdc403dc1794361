"""The analysis stages' parameters (notebooks 04, 05 and 06) as typed, validated dataclasses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from wfutils.config import ConfigError, validate

__all__ = ["DecisionConfig", "ErrorAnalysisConfig", "EvaluationConfig", "OnIncomplete"]

#: What scoring does with a system that answered only part of an evaluation set
#: (:func:`wfutils.evaluation.scoring.evaluate_run`).
OnIncomplete = Literal["error", "exclude", "intersect", "keep"]


def _at_least(config: object, minimum: int, *names: str) -> None:
    low = [f"{name} must be >= {minimum}, got {getattr(config, name)!r}" for name in names
           if getattr(config, name) < minimum]
    if low:
        raise ConfigError(f"{type(config).__name__}: " + "; ".join(low))


@dataclass
class EvaluationConfig:
    """Notebook 04: which systems are scored, and the resampling behind every interval and test."""

    systems: list[str] | None = None  # None: every predictions file of the run
    n_bootstrap: int = 2000  # bootstrap / permutation samples
    seed: int = 0
    on_incomplete: OnIncomplete = "intersect"

    def __post_init__(self) -> None:
        validate(self)
        _at_least(self, 1, "n_bootstrap")


@dataclass
class ErrorAnalysisConfig:
    """Notebook 05: which systems are analysed and how many of their worst answers are shown."""

    systems: list[str] | None = None  # None: every system
    n_worst: int = 3  # worst examples shown per system
    seed: int = 0
    on_incomplete: OnIncomplete = "intersect"  # used only when notebook 04 has not scored the run yet

    def __post_init__(self) -> None:
        validate(self)
        _at_least(self, 0, "n_worst")


@dataclass
class DecisionConfig:
    """Notebook 06: which systems the decision chapter weighs, the resampling behind its intervals, and the price
    of a CPU-hour that lets a hosted system's dollars be compared with the fine-tuned model's CPU-seconds."""

    systems: list[str] | None = None  # None: every system
    n_bootstrap: int = 2000  # bootstrap samples
    seed: int = 0
    usd_per_cpu_hour: float | None = None  # None: dollars and CPU-seconds are not compared
    on_incomplete: OnIncomplete = "intersect"  # used only when notebook 04 has not scored the run yet

    def __post_init__(self) -> None:
        validate(self)
        _at_least(self, 1, "n_bootstrap")
        if self.usd_per_cpu_hour is not None and not 0 <= self.usd_per_cpu_hour < float("inf"):
            raise ConfigError(f"DecisionConfig: usd_per_cpu_hour must be a finite price >= 0 or None, "
                              f"got {self.usd_per_cpu_hour!r}")
