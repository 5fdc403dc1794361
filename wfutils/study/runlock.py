"""One pipeline per run folder: an OS lock held while a run writes there, and a record of who holds it.

The lock is ``fcntl.flock`` on ``<run>/pipeline.lock`` (through :mod:`filelock`), so the kernel releases it
when its process dies, however it dies. Beside it, ``pipeline.lock.json`` records the owner (pid, host,
start time, command) and what it is doing (the notebook it runs, then how it ended). A second pipeline on
a folder in use stops with :class:`RunFolderBusy`, naming the owner. A record still saying ``running``
when the lock is free was left by a pipeline that did not end cleanly (``kill -9``, out of memory, a
power cut): the new run takes over and :attr:`RunLock.previous` says what the old one was doing.
"""

from __future__ import annotations

import json
import os
import socket
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from wfutils.storage import atomic_write_json

__all__ = ["LOCK_FILE", "RECORD_FILE", "RunFolderBusy", "RunLock", "lock_run_folder"]

LOCK_FILE = "pipeline.lock"
RECORD_FILE = "pipeline.lock.json"


class RunFolderBusy(RuntimeError):
    """Another process holds the run folder's lock; the message names it."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _read_record(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return record if isinstance(record, dict) else {}


def _pid_alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError, TypeError, OverflowError):
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def _owner(record: dict[str, Any]) -> str:
    host = record.get("host") or "an unknown host"
    return (f"pid {record.get('pid', '?')} on {host}, started {record.get('started', '?')}, "
            f"command: {record.get('command') or '?'}")


def _ended_uncleanly(record: dict[str, Any]) -> str:
    """How a pipeline whose record still says ``running`` ended, as far as this machine can tell."""
    doing = f"while running notebook {record['notebook']}" if record.get("notebook") else "before its first notebook"
    if record.get("host") != socket.gethostname():
        fate = (f"it ran on another host ({record.get('host') or 'unknown'}), whose processes cannot be checked "
                "from here; the lock was free, so it no longer holds this folder")
    elif _pid_alive(record.get("pid")):
        fate = "that pid now belongs to another process"
    else:
        fate = "that process no longer exists (killed, out of memory, or the machine stopped)"
    return (f"the previous pipeline on this folder did not finish cleanly: {_owner(record)}; it stopped {doing}; "
            f"{fate}. Resuming: notebooks it finished are reused, the one it was running starts again.")


@dataclass
class RunLock:
    """The lock of a run folder, held by this process; :meth:`update` records what the run is doing."""

    run_dir: Path
    record: dict[str, Any]
    previous: str | None = None  # how the last pipeline ended when it did not finish cleanly

    def update(self, **fields: Any) -> None:
        """Record ``fields`` (``notebook=...``, ``status=...``) in the owner's record."""
        self.record.update(fields, updated=_now())
        atomic_write_json(self.run_dir / RECORD_FILE, self.record)


@contextmanager
def lock_run_folder(run_dir: Path, command: str) -> Iterator[RunLock]:
    """Hold ``run_dir``'s lock for the ``with`` block; :class:`RunFolderBusy` when another process holds it.

    The record ends with the status the block set (``held.update(status="interrupted")``), else ``ok``
    or, when an exception leaves the block, ``failed``; a process that dies inside the block leaves
    ``running``, which the next holder reports as :attr:`RunLock.previous`.
    """
    from filelock import FileLock, Timeout

    run_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(run_dir / LOCK_FILE), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        record = _read_record(run_dir / RECORD_FILE)
        owner = _owner(record) if record.get("status") == "running" else "a process that has not written its record yet"
        raise RunFolderBusy(f"run folder {run_dir} is in use by another pipeline ({owner}); two pipelines on one "
                            "folder would overwrite each other's checkpoints, predictions and caches. Wait for it "
                            "to finish, stop it, or choose another --run") from None
    try:
        old = _read_record(run_dir / RECORD_FILE)
        held = RunLock(run_dir, {"pid": os.getpid(), "host": socket.gethostname(), "started": _now(),
                                 "command": command, "status": "running", "notebook": None},
                       previous=_ended_uncleanly(old) if old.get("status") == "running" else None)
        held.update()
        try:
            yield held
        except BaseException:
            if held.record["status"] == "running":
                held.update(status="failed")
            raise
        if held.record["status"] == "running":
            held.update(status="ok")
    finally:
        lock.release()
