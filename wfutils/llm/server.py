"""Start and stop a local OpenAI-compatible server (``transformers serve``) on 127.0.0.1.

The prompted-LLM arm talks to any OpenAI-compatible endpoint; offline, the project serves a
local model directory itself:

>>> from wfutils.llm.server import local_server                    # doctest: +SKIP
>>> with local_server("smollm2-135m") as server:
...     client = LLMClient(base_url=server.base_url, model=server.model, cache_id=server.cache_id)

:func:`local_server` resolves the model with :func:`wfutils.models.resolve_model` (nothing
is downloaded; ``HF_HUB_OFFLINE=1``), starts ``transformers serve <model dir>`` on a free port
in its own process group, polls ``/v1/models`` until the model answers and, on leaving the
``with`` block (normally, on an exception or on KeyboardInterrupt), terminates the whole
process group. An :mod:`atexit` hook and a parent-death signal (Linux) stop servers that a
crashed or killed caller leaves behind, so no orphan keeps a port or CPU.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

__all__ = ["LocalServer", "ServerStartError", "find_free_port", "local_server", "wait_until_ready"]

DEFAULT_HOST = "127.0.0.1"
_LIVE: dict[int, subprocess.Popen] = {}
_LIVE_LOCK = threading.Lock()


class ServerStartError(RuntimeError):
    """The local server exited or did not become ready; the message carries its log tail."""


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

    @property
    def engine(self) -> str:
        """What serves the model, for system metadata: ``transformers serve <version>``."""
        from wfutils.provenance import package_version

        return f"transformers serve {package_version('transformers')}"

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

    def client(self, **kwargs: Any):
        """An :class:`wfutils.llm.client.LLMClient` for this server (context-window check included)."""
        from wfutils.llm.client import LLMClient

        kwargs.setdefault("cache_id", self.cache_id)
        kwargs.setdefault("context_window", self.context_window)
        if kwargs["context_window"] is not None:
            kwargs.setdefault("count_tokens", self.token_counter())
        return LLMClient(self.model, base_url=self.base_url, **kwargs)


def find_free_port(host: str = DEFAULT_HOST) -> int:
    """Ask the OS for a free TCP port on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _served_models(base_url: str, timeout: float = 2.0) -> list[str]:
    with urllib.request.urlopen(f"{base_url}/models", timeout=timeout) as response:  # noqa: S310 - local URL
        data = json.loads(response.read().decode("utf-8"))
    return [str(m.get("id")) for m in data.get("data", [])]


def log_tail(path: Path, n: int = 30) -> str:
    """The last ``n`` lines of a server log (for error messages)."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-n:])


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


def _set_parent_death_signal() -> None:  # runs in the child between fork and exec
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG: die with the parent
    except Exception:  # noqa: BLE001 - not Linux: the atexit hook still applies
        pass


def spawn_server(command: list[str], log_path: Path, **popen_kwargs: Any) -> subprocess.Popen:
    """Start a server process in its own session, dying with this process, stopped at exit; output to ``log_path``."""
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=_set_parent_death_signal, **popen_kwargs,  # noqa: PLW1509
        )
    with _LIVE_LOCK:
        _LIVE[process.pid] = process
    return process


def stop_server(process: subprocess.Popen, grace: float = 10.0) -> None:
    """Terminate a server's whole process group: SIGTERM, then SIGKILL after ``grace`` s."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            process.wait(timeout=grace)
    else:  # the leader is gone; make sure nothing else of its group survives
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    with _LIVE_LOCK:
        _LIVE.pop(process.pid, None)


@atexit.register
def _stop_all() -> None:
    with _LIVE_LOCK:
        processes = list(_LIVE.values())
    for process in processes:
        stop_server(process, grace=5.0)


def _context_window(model_dir: Path) -> int | None:
    try:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    value = config.get("max_position_embeddings") or config.get("n_positions")
    return int(value) if isinstance(value, int) else None


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

    ``model`` is anything :func:`wfutils.models.resolve_model` accepts (a known name such as
    ``smollm2-135m`` or a local Hugging Face model directory). The server never downloads:
    it runs with ``HF_HUB_OFFLINE=1``. Its output goes to ``log_path`` (default: a file in
    the system temp directory).

    ``threads`` sets the server's CPU threads (``OMP_NUM_THREADS``; None leaves torch's
    default). One thread is the default because ``transformers serve`` generates on a
    separate inference thread, where OpenMP's spinning workers fight the event loop and any
    other process: on the 2-core reference machine a 1-token request took 0.24 s with one
    thread against 3.9 s with the default, and 30 tokens 2.5 s against 12 s.

    ``continuous_batching`` turns on the server's batching of concurrent requests. It is off
    by default because on CPU it does not pay for the study's prompts: on the 2-core machine,
    8 concurrent greedy requests gave 44.6 against 14.8 tokens/s with short prompts, but with
    prompts of 630 tokens (the size of a few-shot prompt) 16.4 against 17.8 tokens/s. Turn it
    on for a GPU-served model.
    """
    from wfutils.models import model_slug, resolve_model

    model_dir = Path(resolve_model(model)).resolve()
    port = port or find_free_port(host)
    base_url = f"http://{host}:{port}/v1"
    if log_path is None:
        handle, name = tempfile.mkstemp(prefix=f"wfbook-serve-{port}-", suffix=".log")
        os.close(handle)
        log_path = name
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
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
            base_url=base_url, model=model_id, name=model_slug(model), pid=process.pid,
            log_path=log_path, startup_s=round(time.perf_counter() - t0, 2),
            context_window=_context_window(model_dir),
        )
    finally:
        stop_server(process)
