"""Server processes of the engines: started in their own session, stopped with their whole process group.

A server runs in a child process group of its own, so stopping it frees every thread, port and byte at
once; an :mod:`atexit` hook stops servers a caller forgot, and a parent-death signal (Linux) stops the
child when the caller is killed, so no orphan keeps a port or CPU.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_HOST", "find_free_port", "log_tail", "spawn_server", "stop_server"]

DEFAULT_HOST = "127.0.0.1"
_LIVE: dict[int, subprocess.Popen] = {}
_LIVE_LOCK = threading.Lock()


def find_free_port(host: str = DEFAULT_HOST) -> int:
    """Ask the OS for a free TCP port on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def server_log(log_path: str | os.PathLike[str] | None, prefix: str) -> Path:
    """Where a server writes its log: ``log_path`` (its folder created), or a new temporary file named ``prefix*.log``."""
    if log_path is None:
        handle, log_path = tempfile.mkstemp(prefix=prefix, suffix=".log")
        os.close(handle)
    path = Path(log_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def log_tail(path: Path, n: int = 30) -> str:
    """The last ``n`` lines of a server log (for error messages)."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-n:])


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
