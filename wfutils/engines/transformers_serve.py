"""``transformers serve`` on 127.0.0.1: a local model directory behind an OpenAI-compatible endpoint.

>>> from wfutils.engines.transformers_serve import local_server            # doctest: +SKIP
>>> with local_server("smollm2-135m") as server:
...     client = connect(server.endpoint(), cache_dir="results/dev/llm/cache")

:func:`local_server` resolves the model with :func:`wfutils.models.resolve_model` (nothing
is downloaded; ``HF_HUB_OFFLINE=1``), starts ``transformers serve <model dir>`` on a free port
in its own process group (:mod:`wfutils.engines.processes`), polls ``/v1/models`` until the model
answers and, on leaving the ``with`` block (normally, on an exception or on KeyboardInterrupt),
terminates the whole process group. :class:`TransformersServeEngine` is the registry's face of it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from wfutils.data.predictions import slug
from wfutils.engines.base import Endpoint, EngineInfo, EngineStartError, ServerEngine, register
from wfutils.engines.processes import DEFAULT_HOST, find_free_port, log_tail, server_log, spawn_server, stop_server

__all__ = ["LocalServer", "ServerStartError", "TransformersServeEngine", "local_server", "wait_until_ready"]


ENGINE_NAME = "transformers"  # the registry name, recorded in every system it serves


class ServerStartError(EngineStartError):
    """The local server exited or did not become ready; the message carries its log tail."""


def _transformers_version() -> str:
    from wfutils.provenance import package_version

    return package_version("transformers")


@dataclass(frozen=True)
class LocalServer:
    """A running local server: where to reach it and which model id to request."""

    base_url: str  # e.g. http://127.0.0.1:41234/v1
    model: str  # the model id the server answers to (its model directory path)
    name: str  # short model name for system names, e.g. "smollm2-135m"
    pid: int
    log_path: Path
    startup_s: float

    context_window: int | None = None  # max_position_embeddings of the served model
    threads: int | None = None
    dtype: str | None = None  # the weights' dtype in the model directory's config, e.g. float32

    def info(self) -> EngineInfo:
        """What serves the model, for system metadata."""
        return EngineInfo(name=ENGINE_NAME, version=_transformers_version(), local=True,
                          quantisation=self.dtype, threads=self.threads, prompt_cache=False)

    @property
    def cache_id(self) -> str:
        """Endpoint identity for response caches: stable across ports and runs."""
        return f"local:{self.name}"

    def token_counter(self) -> Callable[[Sequence[dict[str, Any]]], int]:
        """A function counting the prompt tokens of chat messages with the served model's chat template."""
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(self.model, local_files_only=True)

        def count(messages: Sequence[dict[str, Any]]) -> int:
            ids = tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=True)
            if isinstance(ids, dict) or hasattr(ids, "keys"):
                ids = ids["input_ids"]
            return len(ids)

        return count

    def endpoint(self, *, cache_id: str | None = None, n_params: int | None = None,
                 model_sha256: str | None = None) -> Endpoint:
        """This server as an :class:`~wfutils.engines.base.Endpoint` (context-window check included)."""
        return Endpoint(base_url=self.base_url, model=self.model, name=self.name, info=self.info(),
                        cache_id=cache_id or self.cache_id, api_key=None, context_window=self.context_window,
                        count_tokens=self.token_counter() if self.context_window is not None else None,
                        n_params=n_params, model_sha256=model_sha256)


def _served_models(base_url: str, timeout: float = 2.0) -> list[str]:
    with urllib.request.urlopen(f"{base_url}/models", timeout=timeout) as response:  # noqa: S310 - local URL
        data = json.loads(response.read().decode("utf-8"))
    return [str(m.get("id")) for m in data.get("data", [])]


def wait_until_ready(base_url: str, *, process: subprocess.Popen | None = None, timeout: float = 300.0,
                     log_path: Path | None = None, interval: float = 0.5) -> list[str]:
    """Poll ``GET {base_url}/models`` until it answers; return the served model ids.

    Raises :class:`ServerStartError` when ``process`` exits first or ``timeout`` passes.
    """
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            tail = log_tail(log_path) if log_path else ""
            raise ServerStartError(
                f"local server exited with code {process.returncode} before it was ready "
                f"(log {log_path}):\n{tail}"
            )
        try:
            return _served_models(base_url)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            last_error = f"{type(exc).__name__}: {exc}"
        time.sleep(interval)
    tail = log_tail(log_path) if log_path else ""
    raise ServerStartError(f"local server at {base_url} not ready after {timeout:.0f} s ({last_error}); log tail:\n{tail}")


def _model_config(model_dir: Path) -> dict[str, Any]:
    """The model directory's ``config.json`` ({} when missing or unreadable)."""
    try:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return config if isinstance(config, dict) else {}


def _context_window(model_dir: Path) -> int | None:
    config = _model_config(model_dir)
    value = config.get("max_position_embeddings") or config.get("n_positions")
    return int(value) if isinstance(value, int) else None


def _dtype(model_dir: Path) -> str | None:
    config = _model_config(model_dir)
    value = config.get("dtype") or config.get("torch_dtype")
    return str(value) if value else None


def _serve_command(model_dir: Path, host: str, port: int, device: str, continuous_batching: bool,
                   extra_args: tuple[str, ...]) -> list[str]:
    return [
        sys.executable, "-c", "import sys; from transformers.cli.transformers import main; sys.exit(main())",
        "serve", str(model_dir), "--host", host, "--port", str(port), "--device", device,
        "--continuous-batching" if continuous_batching else "--no-continuous-batching",
        "--log-level", "info", *extra_args,
    ]


@contextmanager
def local_server(
    model: str | os.PathLike = "smollm2-135m",
    *,
    host: str = DEFAULT_HOST,
    port: int | None = None,
    device: str = "cpu",
    startup_timeout: float = 300.0,
    log_path: str | os.PathLike | None = None,
    threads: int | None = 1,
    continuous_batching: bool = False,
    extra_args: tuple[str, ...] = (),
) -> Iterator[LocalServer]:
    """Serve a local model over an OpenAI-compatible API for the duration of a ``with`` block.

    ``model`` is anything :func:`wfutils.models.resolve_model` accepts (a name of the weights registry
    such as ``smollm2-135m``, dequantised once into the cache, or a local Hugging Face model
    directory). The server never downloads: it runs with ``HF_HUB_OFFLINE=1``. Its output goes to ``log_path`` (default: a file in
    the system temp directory).

    ``threads`` sets the server's CPU threads (``OMP_NUM_THREADS``; None leaves torch's
    default). One thread is the default: ``transformers serve`` generates on a separate inference
    thread, where OpenMP's spinning workers fight the event loop and any other process
    (book/methods.md, "Engines").

    ``continuous_batching`` turns on the server's batching of concurrent requests; it is off by
    default because on CPU it did not pay for prompts the size of a few-shot prompt. Turn it on
    for a GPU-served model.
    """
    from wfutils.models import resolve_model

    model_dir = Path(resolve_model(model)).resolve()
    port = port or find_free_port(host)
    base_url = f"http://{host}:{port}/v1"
    log_path = server_log(log_path, prefix=f"wfbook-serve-{port}-")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1",
               TOKENIZERS_PARALLELISM="false")
    env.pop("OPENAI_API_KEY", None)  # the server never needs a key
    if threads is not None:
        env.update(OMP_NUM_THREADS=str(int(threads)), MKL_NUM_THREADS=str(int(threads)))
    t0 = time.perf_counter()
    process = spawn_server(_serve_command(model_dir, host, port, device, continuous_batching, tuple(extra_args)),
                           log_path, env=env)
    try:
        served = wait_until_ready(base_url, process=process, timeout=startup_timeout, log_path=log_path)
        model_id = str(model_dir) if str(model_dir) in served or not served else served[0]
        yield LocalServer(
            base_url=base_url, model=model_id, name=slug(model), pid=process.pid,
            log_path=log_path, startup_s=round(time.perf_counter() - t0, 2),
            context_window=_context_window(model_dir), threads=threads, dtype=_dtype(model_dir),
        )
    finally:
        stop_server(process)


@register
class TransformersServeEngine(ServerEngine):
    """``transformers serve`` on a local model directory (a weights registry name, a directory, a cached hub id)."""

    name = ENGINE_NAME

    def __init__(self, model: str, *, threads: int | None = None, prompt_cache: bool = False,
                 log_path: str | os.PathLike[str] | None = None) -> None:
        self.model, self.threads, self.log_path = model, threads, log_path
        self._stack: ExitStack | None = None
        self._endpoint: Endpoint | None = None

    def info(self) -> EngineInfo:
        if self._endpoint is not None:
            return self._endpoint.info
        return EngineInfo(name=ENGINE_NAME, version=_transformers_version(), local=True,
                          threads=self.threads or 1, prompt_cache=False)

    def __enter__(self) -> "TransformersServeEngine":
        from wfutils.models import local_model_facts

        self._stack = ExitStack()
        server = self._stack.enter_context(local_server(self.model, log_path=self.log_path,
                                                        threads=self.threads or 1))
        facts = local_model_facts(self.model)
        sha = facts["model_sha256"]
        self._endpoint = server.endpoint(cache_id=server.cache_id + (f"@{sha[:16]}" if sha else ""),
                                         n_params=facts["n_params"], model_sha256=sha)
        self._endpoint.facts.update(endpoint="local", engine=self._endpoint.info.label,
                                    server_startup_s=server.startup_s, **facts)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stack is not None:
            self._stack.close()
        self._stack = self._endpoint = None

    def endpoint(self) -> Endpoint:
        if self._endpoint is None:
            raise RuntimeError("the transformers serve engine is not running (use it in a with block)")
        return self._endpoint
