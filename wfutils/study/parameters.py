"""A notebook's parameters as declared data: the fields of its configuration dataclasses, checked before any work.

:data:`NOTEBOOK_CONFIGS` names, for each notebook of the study, the dataclasses whose fields are its
parameters; :class:`RunParameters` adds what the pipeline gives every notebook. Types and allowed values
are those dataclasses' annotations (checked by :mod:`wfutils.config`), so the pipeline (before the first
notebook runs) and each notebook (in the cell after its parameters cell, :func:`check_parameters`) refuse
a bad value with the same message.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from typing import Any, Mapping

from wfutils.config import ConfigError, field_problem

__all__ = ["NOTEBOOK_CONFIGS", "ParameterError", "RunParameters", "check_parameters", "declared_configs",
           "declared_defaults", "parameter_problems", "written_system"]

#: The dataclasses declaring each notebook's parameters, as ``module:Class`` (imported when needed, so a
#: notebook's check does not import another stage's libraries).
NOTEBOOK_CONFIGS: dict[str, tuple[str, ...]] = {
    "01_data_exploration": ("wfutils.data.config:DataConfig",),
    "02_slm_finetuning": ("wfutils.slm.training:TrainConfig", "wfutils.slm.generation:GenerationConfig"),
    "03_llm_prompting": ("wfutils.llm.config:PromptConfig",),
    "04_evaluation": ("wfutils.evaluation.config:EvaluationConfig",),
    "05_error_analysis": ("wfutils.evaluation.config:ErrorAnalysisConfig",),
    "06_decision": ("wfutils.evaluation.config:DecisionConfig",),
}


@dataclass
class RunParameters:
    """What the pipeline sets in every notebook that declares it."""

    run_dir: str = "results/dev"  # the run folder: results/<run>
    force: bool = False  # recompute instead of reusing adapters, predictions or cached responses (--force)


class ParameterError(ConfigError):
    """Parameter values that do not fit their declarations; one line per value, naming notebook and parameter."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("bad parameter value(s), nothing was run:\n  " + "\n  ".join(problems))
        self.problems = problems


def declared_configs(notebook: str) -> tuple[type, ...] | None:
    """The dataclasses declaring ``notebook``'s parameters, :class:`RunParameters` last; None for a notebook
    outside :data:`NOTEBOOK_CONFIGS` (its parameter names are checked, not their types)."""
    if notebook not in NOTEBOOK_CONFIGS:
        return None
    classes = []
    for spec in NOTEBOOK_CONFIGS[notebook]:
        module, _, name = spec.partition(":")
        try:
            classes.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"notebook {notebook} declares its parameters in {module}.{name}, which cannot be "
                              f"imported: {type(exc).__name__}: {exc}") from None
    return (*classes, RunParameters)


def _fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


def written_system(notebook: str, parameters: Mapping[str, Any]) -> str | None:
    """The system a run of ``notebook`` writes with these parameters (the declared defaults fill the rest): a
    declaring class's ``written_system(values)``; None for a notebook whose classes define none."""
    values = {**declared_defaults(notebook), **parameters}
    for cls in declared_configs(notebook) or ():
        if hasattr(cls, "written_system"):
            return cls.written_system(values)
    return None


def declared_defaults(notebook: str) -> dict[str, Any]:
    """Every declared parameter of ``notebook`` with its default (the first declaring class's)."""
    defaults: dict[str, Any] = {}
    for cls in declared_configs(notebook) or ():
        for name, f in _fields(cls).items():
            if name not in defaults and f.default is not dataclasses.MISSING:
                defaults[name] = f.default
            elif name not in defaults and f.default_factory is not dataclasses.MISSING:
                defaults[name] = f.default_factory()
    return defaults


def parameter_problems(notebook: str, values: Mapping[str, Any]) -> list[str]:
    """One line per value of ``values`` that its declarations refuse, each naming the notebook and the parameter.

    A value must fit the annotation of every class declaring it; when all do, each class is built
    from its own fields, so its own checks (ranges, combinations) speak too.
    """
    classes = declared_configs(notebook)
    if classes is None:
        return []
    problems = []
    for name, value in values.items():
        owners = [cls for cls in classes if name in _fields(cls)]
        if not owners:
            problems.append(f"notebook {notebook}: parameter {name} is not declared by "
                            f"{', '.join(cls.__name__ for cls in classes)}")
            continue
        reason = next((p for cls in owners if (p := field_problem(cls, name, value))), None)
        if reason:
            problems.append(f"notebook {notebook}: parameter {reason}")
    if problems:
        return problems
    for cls in classes:
        try:
            cls(**{name: value for name, value in values.items() if name in _fields(cls)})
        except (ValueError, TypeError) as exc:
            problems.append(f"notebook {notebook}: {exc}")
    return problems


def check_parameters(notebook: str, namespace: Mapping[str, Any]) -> None:
    """Refuse ``notebook``'s parameter values in ``namespace`` (its ``globals()``) that do not fit their
    declarations, with the message the pipeline gives (:class:`ParameterError`)."""
    classes = declared_configs(notebook)
    if classes is None:
        raise ConfigError(f"notebook {notebook!r} has no declared parameters; known: {', '.join(NOTEBOOK_CONFIGS)}")
    names = {name for cls in classes for name in _fields(cls)}
    problems = parameter_problems(notebook, {name: namespace[name] for name in names if name in namespace})
    if problems:
        raise ParameterError(problems)
