"""The prompted arm of a run: every model x strategy (x retrieval mode) on the run's evaluation splits.

:func:`run_arm` loads the run's data, builds the retriever and the fixed few-shot examples,
starts a local ``transformers serve`` (offline default) or talks to a remote
OpenAI-compatible endpoint, describes every system with a
:class:`~wfutils.data.predictions.SystemMeta` (:func:`wfutils.llm.systems.prompted_meta`)
and runs it with :func:`wfutils.llm.runner.run_system`. The response cache lives in
``<run_dir>/llm/cache``; ``<run_dir>/llm/summary.json`` (parameters, version record, per
system metadata, per split counts, tokens, cost, errors) is written atomically.

The endpoint URL is checked before anything else (:func:`wfutils.llm.client.check_base_url`):
one carrying credentials (``http://user:password@host/v1``) or a query string is refused with
an :class:`~wfutils.llm.client.LLMConfigError` that does not repeat them. Temporary files an
interrupted run left under ``<run_dir>/llm`` are removed first (:func:`wfutils.storage.remove_leftovers`).
"""

from __future__ import annotations

import os
import time
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping, Sequence

from wfutils.data.store import load_run_data, parse_eval_splits
from wfutils.llm.client import LLMClient, LLMConfigError, check_base_url, public_url
from wfutils.llm.retrieval import Retriever
from wfutils.llm.runner import run_system
from wfutils.llm.strategies import fixed_examples, get_strategy, system_name
from wfutils.llm.systems import decoding_label, local_model_facts, prompted_meta
from wfutils.provenance import version_record
from wfutils.storage import atomic_write_json, remove_leftovers

__all__ = ["run_arm", "summary_path"]


def summary_path(run_dir: str | Path) -> Path:
    """Where :func:`run_arm` writes its summary."""
    return Path(run_dir) / "llm" / "summary.json"


def run_arm(
    run_dir: str | Path,
    *,
    base_url: str | None = None,
    models: Sequence[str] | None = None,
    local_model: str = "smollm2-135m",
    strategies: Sequence[str] = ("zero_shot", "few_shot", "rag_few_shot", "decomposed"),
    retrieval: Sequence[str] = ("bm25",),
    k: int = 3,
    eval_splits: Sequence[str] = ("synthetic/test", "synthetic/ood", "n8n/test", "logic_apps/test"),
    max_examples: int | None = None,
    concurrency: int = 4,
    temperature: float = 0.0,
    max_tokens: int = 512,
    step_max_tokens: int = 128,
    json_mode: str = "none",
    max_retries: int = 5,
    timeout_s: float = 600.0,
    n_params: Mapping[str, int] | None = None,
    retriever: Retriever | None = None,
    force: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Run every model x strategy (x retrieval mode) on the evaluation splits of a run.

    ``base_url=None`` (and no ``$OPENAI_BASE_URL``) starts a local ``transformers serve`` for
    ``local_model`` and stops it at the end; otherwise ``models`` are requested from the
    endpoint (key from ``$OPENAI_API_KEY``), with ``n_params`` giving their sizes when known
    (0 = unknown otherwise). Strategies that retrieve run once per ``retrieval`` mode; the
    others once. One predictions file per system holds all its splits. A model whose calls
    fail fatally (no key, wrong key, unknown model, server down) is reported in the summary;
    the others still run. ``force`` recomputes every system: predictions files restart and
    response-cache reads are skipped. Returns the summary written to ``llm/summary.json``.
    """
    base_url = check_base_url(base_url or os.environ.get("OPENAI_BASE_URL"))  # before any work; never echoes a password
    wanted_strategies = [get_strategy(name) for name in strategies]
    for mode in retrieval:
        if mode not in ("bm25", "oracle"):
            raise ValueError(f"retrieval modes are 'bm25' and 'oracle', got {mode!r}")
    run_dir = Path(run_dir)
    data = load_run_data(run_dir, include_train=True)
    wanted = parse_eval_splits(eval_splits)
    missing = [f"{n}/{s}" for n, s in wanted if n not in data or s not in data[n]]
    if missing:
        have = [f"{n}/{s}" for n, dd in data.items() for s in dd if s != "train"]
        raise ValueError(f"evaluation split(s) {missing} not found under {run_dir / 'data'}; available: {have}")
    if "synthetic" not in data or "train" not in data["synthetic"]:
        raise ValueError(f"{run_dir / 'data'} has no synthetic train split (needed for examples and retrieval)")
    retriever = retriever if retriever is not None else Retriever(data["synthetic"]["train"])
    shots = fixed_examples(data["synthetic"]["train"], k)
    splits: dict[str, list[dict[str, Any]]] = {}
    for name, split in wanted:
        rows = data[name][split].to_list()
        splits[f"{name}/{split}"] = rows[:max_examples] if max_examples is not None else rows
    cache_dir = run_dir / "llm" / "cache"
    remove_leftovers(run_dir / "llm")  # temporary files of an interrupted run (cache entries, summary)
    decoding = decoding_label(temperature, json_mode)
    t0 = time.perf_counter()
    summary: dict[str, Any] = {
        "parameters": {"base_url": public_url(base_url) if base_url else "local", "models": list(models or []),
                       "local_model": local_model, "strategies": [s.name for s in wanted_strategies],
                       "retrieval": list(retrieval), "k": k, "eval_splits": list(eval_splits),
                       "max_examples": max_examples, "concurrency": concurrency, "temperature": temperature,
                       "max_tokens": max_tokens, "step_max_tokens": step_max_tokens, "json_mode": json_mode,
                       "max_retries": max_retries, "timeout_s": timeout_s, "force": force},
        "strategies": {s.name: asdict(s) for s in wanted_strategies},
        "fixed_examples": [e.id for e in shots],
        "versions": version_record(),
        "models": {}, "systems": {},
    }
    client_args = dict(cache_dir=cache_dir, max_retries=max_retries, timeout_s=timeout_s)
    with ExitStack() as stack:
        # (display name, client or None, problem, engine, n_params, model_sha256)
        endpoints: list[tuple[str, LLMClient | None, str | None, str, int, str | None]] = []
        if base_url is None:
            from wfutils.llm.server import local_server

            server = stack.enter_context(local_server(local_model, log_path=run_dir / "llm" / "server.log"))
            facts = local_model_facts(local_model)
            cache_id = server.cache_id + (f"@{facts['model_sha256'][:16]}" if facts["model_sha256"] else "")
            summary["models"][server.name] = {"endpoint": "local", "engine": server.engine,
                                              "server_startup_s": server.startup_s, **facts}
            endpoints.append((server.name, server.client(cache_id=cache_id, **client_args), None, server.engine,
                              facts["n_params"], facts["model_sha256"]))
        else:
            if not models:
                raise ValueError("models=[...] is required with a remote endpoint (base_url / $OPENAI_BASE_URL)")
            engine = f"openai-compatible: {public_url(base_url)}"
            for model in models:
                size = int((n_params or {}).get(model, 0))
                try:
                    client = LLMClient(model, base_url=base_url, **client_args)
                    endpoints.append((model, client, None, engine, size, None))
                except LLMConfigError as exc:
                    endpoints.append((model, None, str(exc), engine, size, None))
        for display, client, problem, engine, size, sha in endpoints:
            info = summary["models"].setdefault(display, {})
            if client is None:
                info["error"] = problem
                continue
            info.update(model=client.model, engine=engine, n_params=size)
            for s in wanted_strategies:
                for mode in (retrieval if s.uses_examples == "retrieved" else ("none",)):
                    system = system_name(display, s.name, mode)
                    meta = prompted_meta(system, s, base_model=display, n_params=size, k=k, retrieval=mode,
                                         engine=engine, decoding=decoding, model_sha256=sha)
                    summary["systems"][system] = run_system(
                        client, meta, splits, run_dir=run_dir, retriever=retriever, few_shot=shots,
                        concurrency=concurrency, temperature=temperature, max_tokens=max_tokens,
                        step_max_tokens=step_max_tokens, json_mode=json_mode, force=force, progress=progress)
            info["client_stats"] = client.stats.as_dict()
            if client.fatal_error is not None:
                info["error"] = client.fatal_error
            client.close()
    summary["wall_s"] = round(time.perf_counter() - t0, 2)
    atomic_write_json(summary_path(run_dir), summary, indent=1)
    return summary
