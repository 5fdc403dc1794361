"""Configurations as typed data (wfutils.config) and the notebooks' parameters declared by them."""

from __future__ import annotations

import ast
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import papermill
import pytest

from wfutils.config import ConfigError, check_values, config_from, field_problem, validate
from wfutils.data.config import DataConfig
from wfutils.evaluation.config import ErrorAnalysisConfig, EvaluationConfig, OnIncomplete
from wfutils.study.parameters import (NOTEBOOK_CONFIGS, ParameterError, check_parameters, declared_configs,
                                      declared_defaults, parameter_problems)

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


@dataclass
class Example:
    count: int = 1
    rate: float = 0.5
    flag: bool = False
    mode: Literal["fast", "slow"] = "fast"
    limit: int | None = None
    names: list[str] = field(default_factory=list)
    sizes: dict[str, float] | None = None
    extra: Any = None

    def __post_init__(self) -> None:
        validate(self)


def test_check_values_names_each_problem_with_the_expected_type_and_allowed_values() -> None:
    check_values(Example, {"count": 3, "rate": 2, "mode": "slow", "limit": None, "names": ("a", "b"),
                           "sizes": {"test": 10, "validation": 0.1}, "extra": object()})
    with pytest.raises(ConfigError) as error:
        check_values(Example, {"count": "3", "rate": "fast", "flag": 1, "mode": "medium", "limit": 2.5,
                               "names": "a", "sizes": {"test": "10"}, "colour": "red"}, where="the example")
    message = str(error.value)
    assert message.startswith("the example: ")
    assert "count must be int, got '3' (str)" in message
    assert "rate must be float, got 'fast' (str)" in message
    assert "flag must be bool, got 1 (int)" in message  # a bool is not an int, nor an int a bool
    assert "mode must be one of 'fast', 'slow', got 'medium' (str)" in message
    assert "limit must be int or None, got 2.5 (float)" in message
    assert "names must be a list of str, got 'a' (str)" in message
    assert "sizes must be a mapping of float or None" in message
    assert "unknown field 'colour' (known: count, extra, flag, limit, mode, names, rate, sizes)" in message
    assert field_problem(Example, "count", True) == "count must be int, got True (bool)"
    assert field_problem(Example, "count", 4) is None


def test_validate_and_config_from_refuse_before_building() -> None:
    with pytest.raises(ConfigError, match="Example: mode must be one of 'fast', 'slow', got 'medium'"):
        Example(mode="medium")
    with pytest.raises(ConfigError, match=r"unknown field 'colour' \(known: "):
        config_from(Example, {"colour": "red"})  # a ConfigError naming the field, not a TypeError
    assert config_from(Example, {"count": 2}).count == 2


def test_data_and_analysis_configs_check_types_and_ranges() -> None:
    assert DataConfig().corpora == ["n8n", "logic_apps"] and DataConfig().corpora is not DataConfig().corpora
    with pytest.raises(ConfigError, match="DataConfig: n_test must be >= 0, got -1"):
        DataConfig(n_test=-1)
    with pytest.raises(ConfigError, match="split_sizes must be a mapping of float or None"):
        DataConfig(split_sizes={"test": "half"})
    with pytest.raises(ConfigError, match="EvaluationConfig: n_bootstrap must be >= 1, got 0"):
        EvaluationConfig(n_bootstrap=0)
    with pytest.raises(ConfigError, match="on_incomplete must be one of 'error', 'exclude', 'intersect', 'keep'"):
        ErrorAnalysisConfig(on_incomplete="everything")
    with pytest.raises(ConfigError, match="n_worst must be >= 0"):
        ErrorAnalysisConfig(n_worst=-2)


def test_on_incomplete_choices_are_the_scorers() -> None:
    from typing import get_args

    from wfutils.evaluation.scoring import ON_INCOMPLETE

    assert get_args(OnIncomplete) == tuple(ON_INCOMPLETE)


def _as_data(value: Any) -> Any:
    """Tuples as lists, so a tuple default compares with the list a parameters cell writes."""
    if isinstance(value, (list, tuple)):
        return [_as_data(v) for v in value]
    return value


@pytest.mark.parametrize("notebook", sorted(NOTEBOOK_CONFIGS))
def test_every_notebook_parameter_is_declared_with_the_cells_default(notebook: str) -> None:
    """The parameters cell and the declaring dataclasses agree: same names (cell within the declarations), same defaults."""
    cell = papermill.inspect_notebook(str(NOTEBOOKS / f"{notebook}.ipynb"))
    defaults = declared_defaults(notebook)
    undeclared = sorted(set(cell) - set(defaults))
    assert not undeclared, f"{notebook}: parameters not declared by {NOTEBOOK_CONFIGS[notebook]}: {undeclared}"
    classes = declared_configs(notebook)
    for name, info in cell.items():
        value = ast.literal_eval(info["default"])
        for cls in classes:
            fields = {f.name: f for f in dataclasses.fields(cls)}
            if name in fields:
                f = fields[name]
                default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
                assert _as_data(default) == _as_data(value), \
                    f"{notebook}: {name} = {value!r} in the cell, {default!r} in {cls.__name__}"


def test_check_parameters_picks_declared_names_and_raises_the_pipelines_message() -> None:
    namespace = {"run_dir": "results/x", "n_bootstrap": "abc", "seed": 0, "np": object(), "__name__": "__main__"}
    with pytest.raises(ParameterError) as error:
        check_parameters("04_evaluation", namespace)
    assert str(error.value) == ("bad parameter value(s), nothing was run:\n"
                                "  notebook 04_evaluation: parameter n_bootstrap must be int, got 'abc' (str)")
    assert error.value.problems == parameter_problems("04_evaluation", {"n_bootstrap": "abc"})
    check_parameters("04_evaluation", {**namespace, "n_bootstrap": 10})  # the other globals are not parameters
    with pytest.raises(ConfigError, match="notebook '06_extra' has no declared parameters"):
        check_parameters("06_extra", namespace)


def test_parameter_problems_also_run_each_configs_own_checks() -> None:
    assert parameter_problems("01_data_exploration", {"n_train": -5}) == [
        "notebook 01_data_exploration: DataConfig: n_train must be >= 0, got -5"]
    assert parameter_problems("01_data_exploration", {"colour": "red"}) == [
        "notebook 01_data_exploration: parameter colour is not declared by DataConfig, RunParameters"]
    assert parameter_problems("99_not_a_study_notebook", {"anything": object()}) == []
