"""The prompted arm of a run: every model x strategy (x retrieval mode) on the run's evaluation splits.

:func:`run_arm` runs a :class:`~wfutils.llm.config.PromptConfig`: it loads the run's data, builds the
retriever and the fixed few-shot examples, starts the configured local engine (:mod:`wfutils.engines`:
llama.cpp on a GGUF by default, ``transformers serve`` as an option) or talks to a remote
OpenAI-compatible endpoint, describes every system with a :class:`~wfutils.data.predictions.SystemMeta`
(:func:`wfutils.llm.systems.prompted_meta`, the engine's :class:`~wfutils.data.predictions.EngineInfo`
included) and runs it with :func:`wfutils.llm.runner.run_system`. The response cache lives in
``<run_dir>/llm/cache``; ``<run_dir>/llm/summary.json`` (parameters, version record, per
system metadata, per split counts, tokens, cost, errors) is written atomically.

Everything that can be refused is refused before any work: the configuration (types, ranges, the engine
and strategy names), the endpoint URL (one carrying credentials is refused without repeating them) and a
local engine's wheel and weights. Temporary files an interrupted run left under ``<run_dir>/llm`` are
removed first (:func:`wfutils.storage.remove_leftovers`).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping, Sequence

from wfutils.data.predictions import PROMPTED, system_name
from wfutils.data.store import evaluation_splits, load_run_data, training_catalog, training_data
from wfutils.engines import EngineStartError, get_engine
from wfutils.engines.base import ServerEngine
from wfutils.engines.remote import RemoteEngine
from wfutils.llm.client import LLMConfigError, check_base_url, connect, is_local_url, public_url
from wfutils.llm.config import PromptConfig
from wfutils.llm.retrieval import Retriever
from wfutils.llm.runner import run_system
from wfutils.llm.strategies import build_messages, fixed_examples, get_strategy
from wfutils.llm.systems import decoding_label, prompted_meta
from wfutils.provenance import version_record
from wfutils.storage import atomic_write_json, remove_leftovers

__all__ = ["run_arm", "summary_path"]


def summary_path(run_dir: str | Path) -> Path:
    """Where :func:`run_arm` writes its summary."""
    return Path(run_dir) / "llm" / "summary.json"


class _Primer:
    """Before each request of a system on a llama.cpp server with prompt caching: the slot's cache set to the
    system's fixed prefix (:meth:`wfutils.engines.llamacpp.LlamaCppEngine.prime`), so every request reuses the
    same cached tokens, computed the same way, whatever ran before it (what a rerun reproduces: book/methods.md, "Engines").

    Single-call strategies: the prefix (the system message, plus the fixed examples of ``few_shot``) is
    computed from scratch before the system's first request and then primed from the cache before every
    request, the first included: a primed prefix that a request contains whole has its last token
    recomputed alone by llama.cpp, so the first request must see that state too. The decomposed pipeline:
    its outline prompt's system message is computed from scratch before each request (its calls alternate
    between two prompts, so consecutive requests share a few tokens only).
    """

    def __init__(self, server: Any, strategy: Any, shots: Sequence[Any]) -> None:
        self.server, self.single, self.started = server, strategy.pipeline == "single", False
        self.prefix = build_messages(strategy, "", examples=shots if strategy.uses_examples == "fixed" else ())[:-1]

    def __call__(self) -> None:
        if not self.single or not self.started:
            self.server.prime(self.prefix, fresh=True)
            self.started = True
        if self.single:
            self.server.prime(self.prefix, fresh=False)


def _server_log(run_dir: Path) -> Path:
    return run_dir / "llm" / "server.log"


def _engines(config: PromptConfig, base_url: str | None, run_dir: Path,
             n_params: Mapping[str, int] | None) -> list[ServerEngine]:
    """The engines the arm will run, checked before any work (a local engine's wheel and weights)."""
    if base_url is None:
        engine = get_engine(config.local_engine)(config.local_model, threads=config.engine_threads,
                                                 prompt_cache=config.prompt_cache, log_path=_server_log(run_dir))
        engine.check()
        return [engine]
    if not config.models:
        raise ValueError("models=[...] is required with a remote endpoint (base_url / $OPENAI_BASE_URL)")
    return [RemoteEngine(model, base_url=base_url, public_url=public_url(base_url), local=is_local_url(base_url),
                         n_params=(n_params or {}).get(model)) for model in config.models]


def _start_problem(engine: ServerEngine, exc: EngineStartError, log_path: Path) -> tuple[str, dict[str, Any]]:
    """A start failure as the summary reports it: the engine, the model (its file when known), the log's causes."""
    lines = str(exc).splitlines()
    causes = [ln.strip() for ln in lines[1:] if any(w in ln.lower() for w in ("error", "failed", "invalid"))][-3:]
    info, facts = engine.info(), engine.model_facts()
    what = f"the file {facts['model_path']}" if facts.get("model_path") else f"the model {engine.model}"
    version = f" ({info.version})" if info.version else ""
    problem = (f"the {info.name} engine{version} could not load {what}: {lines[0] if lines else exc}"
               + (f" [{' | '.join(causes)}]" if causes else ""))
    return problem, {"endpoint": "local", "engine": info.label, **facts, "server_log": str(log_path)}


def run_arm(
    run_dir: str | Path,
    config: PromptConfig | None = None,
    *,
    n_params: Mapping[str, int] | None = None,
    timeout_s: float = 600.0,
    retriever: Retriever | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run every model x strategy (x retrieval mode) of ``config`` on the evaluation splits of a run.

    ``config.base_url=None`` (and no ``$OPENAI_BASE_URL``) starts ``config.local_engine`` for
    ``config.local_model`` and stops it at the end; otherwise ``config.models`` are requested from the
    endpoint (key from ``$OPENAI_API_KEY``), with ``n_params`` giving their sizes when known (None: not
    published). A local engine's weights must be present and verified (``make models``), else a
    :class:`~wfutils.weights.WeightsError` names the fix before anything runs; a model its engine cannot
    load is reported in the summary with the file and the engine. ``prompt_cache`` (llama.cpp): each
    system's fixed prompt prefix is primed before every request (:class:`_Primer`), requests go one at a
    time, and the systems say so (``+prompt_cache`` in their ``decoding``, ``prompt_cache`` in their
    engine, a response cache of their own). Examples, the retrieval pool and the catalogue come from the
    train split of ``train_corpus``; ``eval_splits`` (None: every evaluation split) get that corpus's test
    split in front. Strategies that retrieve run once per ``retrieval`` mode; the others once. One
    predictions file per system holds all its splits. A model whose calls fail fatally (no key, wrong key,
    unknown model, server down) is reported in the summary; the others still run. ``force`` recomputes
    every system. Returns the summary written to ``llm/summary.json``.
    """
    config = config if config is not None else PromptConfig()
    if not isinstance(config, PromptConfig):
        raise TypeError(f"run_arm needs a PromptConfig, got {type(config).__name__}")
    base_url = check_base_url(config.base_url or os.environ.get("OPENAI_BASE_URL"))  # never echoes a password
    run_dir = Path(run_dir)
    engines = _engines(config, base_url, run_dir, n_params)  # weights checked before anything is read
    wanted_strategies = [get_strategy(name) for name in config.strategies]
    data = load_run_data(run_dir, include_train=True)
    train, _ = training_data(data, config.train_corpus)
    wanted = evaluation_splits(data, config.train_corpus, config.eval_splits)
    retriever = retriever if retriever is not None else Retriever(train, catalog=training_catalog(data, config.train_corpus))
    shots = fixed_examples(train, config.k)
    splits: dict[str, list[dict[str, Any]]] = {}
    for item in wanted:
        name, split = item.split("/", 1)
        rows = data[name][split].to_list()
        splits[item] = rows[:config.max_examples] if config.max_examples is not None else rows
    cache_dir = run_dir / "llm" / "cache"
    remove_leftovers(run_dir / "llm")  # temporary files of an interrupted run (cache entries, summary)
    decoding = config.decoding
    local = base_url is None
    caches = local and hasattr(engines[0], "prime")  # an engine whose prompt cache the arm can prime (llama.cpp)
    primes = caches and config.prompt_cache
    label = decoding_label(decoding.temperature, decoding.json_mode, prompt_cache=primes)
    t0 = time.perf_counter()
    parameters = config.to_dict()
    parameters.update(base_url=public_url(base_url) if base_url else "local", models=list(config.models or []),
                      local_engine=config.local_engine if local else None,
                      prompt_cache=config.prompt_cache if caches else None,
                      engine_threads=config.engine_threads if caches else None,
                      strategies=[s.name for s in wanted_strategies], eval_splits=wanted, timeout_s=timeout_s)
    summary: dict[str, Any] = {
        "parameters": parameters,
        "strategies": {s.name: asdict(s) for s in wanted_strategies},
        "fixed_examples": [e.id for e in shots],
        "versions": version_record(),
        "models": {}, "systems": {},
    }
    client_args = dict(cache_dir=cache_dir, max_retries=config.max_retries, timeout_s=timeout_s)
    for engine in engines:
        try:
            engine.__enter__()
        except EngineStartError as exc:
            problem, facts = _start_problem(engine, exc, _server_log(run_dir))
            summary["models"][engine.model_name()] = {**facts, "error": problem}
            continue
        try:
            endpoint = engine.endpoint()
            info = summary["models"].setdefault(endpoint.name, dict(endpoint.facts))
            try:
                client = connect(endpoint, **client_args)
            except LLMConfigError as exc:
                info["error"] = str(exc)
                continue
            info.update(model=client.model, engine=endpoint.info.label, n_params=endpoint.n_params)
            for s in wanted_strategies:
                for mode in (config.retrieval if s.uses_examples == "retrieved" else ("none",)):
                    system = system_name(PROMPTED, endpoint.name, s.name, mode)
                    meta = prompted_meta(system, s, base_model=endpoint.name, n_params=endpoint.n_params, k=config.k,
                                         retrieval=mode, engine=endpoint.info, decoding=label,
                                         model_sha256=endpoint.model_sha256, train_corpus=config.train_corpus)
                    summary["systems"][system] = run_system(
                        client, meta, splits, run_dir=run_dir, retriever=retriever, few_shot=shots,
                        before_example=_Primer(engine, s, shots) if primes else None,
                        concurrency=1 if primes else config.concurrency, decoding=decoding, force=config.force,
                        progress=progress)
            info["client_stats"] = client.stats.as_dict()
            if client.fatal_error is not None:
                info["error"] = client.fatal_error
            client.close()
        finally:
            engine.__exit__(None, None, None)
    summary["wall_s"] = round(time.perf_counter() - t0, 2)
    atomic_write_json(summary_path(run_dir), summary, indent=1)
    return summary
