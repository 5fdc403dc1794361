"""PromptConfig / Decoding (wfutils.llm.config): notebook 03's parameters as a validated dataclass, like TrainConfig."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import papermill
import pytest

from wfutils.config import ConfigError, config_from
from wfutils.engines import UnknownEngineError
from wfutils.llm.client import LLMConfigError
from wfutils.llm.config import Decoding, PromptConfig, local_engine_names

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "03_llm_prompting.ipynb"


def _notebook_defaults() -> dict:
    parameters = papermill.inspect_notebook(str(NOTEBOOK))
    return {name: eval(p["default"]) for name, p in parameters.items()}  # noqa: S307 - the notebook's own literals


def test_fields_and_defaults_are_notebook_03s_parameters():
    values = _notebook_defaults()
    fields = {f.name for f in dataclasses.fields(PromptConfig)}
    assert set(values) - fields == {"run_dir"} and fields <= set(values)
    values.pop("run_dir")
    assert PromptConfig(**values) == PromptConfig()
    for name, value in values.items():
        assert getattr(PromptConfig(), name) == value, name


def test_decoding_is_carried_as_one_value():
    config = PromptConfig(temperature=0.5, max_tokens=64, step_max_tokens=16, json_mode="schema")
    assert config.decoding == Decoding(temperature=0.5, max_tokens=64, step_max_tokens=16, json_mode="schema")
    with pytest.raises(ConfigError, match=r"json_mode must be one of 'none', 'object', 'schema', got 'yaml'"):
        PromptConfig(json_mode="yaml")
    with pytest.raises(ConfigError, match="max_tokens must be >= 1, got 0"):
        Decoding(max_tokens=0)
    with pytest.raises(ConfigError, match="temperature must be >= 0"):
        PromptConfig(temperature=-1.0)


def test_bad_values_unknown_fields_and_unknown_names_are_refused_with_the_field_named():
    with pytest.raises(ConfigError, match=r"k must be int, got '3' \(str\)"):
        PromptConfig(k="3")
    with pytest.raises(ConfigError, match=r"retrieval must be a list of one of 'bm25', 'oracle', got \['bm24'\]"):
        PromptConfig(retrieval=["bm24"])
    with pytest.raises(ConfigError, match=r"unknown field 'n_shots' \(known: base_url, concurrency, "):
        config_from(PromptConfig, {"n_shots": 3})
    with pytest.raises(ConfigError, match=r"unknown prompt strategy 'cot'; known: zero_shot, few_shot, rag_few_shot"):
        PromptConfig(strategies=["zero_shot", "cot"])
    with pytest.raises(UnknownEngineError, match=r"local_engine 'vllm' is not a registered engine; it must be one of "
                                                 r"'llamacpp', 'transformers'"):
        PromptConfig(local_engine="vllm")
    with pytest.raises(ConfigError, match="max_examples must be >= 1 or None, got 0"):
        PromptConfig(max_examples=0)
    with pytest.raises(LLMConfigError, match="carries credentials") as info:
        PromptConfig(base_url="http://me:s3cret@127.0.0.1:8000/v1")
    assert "s3cret" not in str(info.value)
    assert local_engine_names() == ["llamacpp", "transformers"]
