"""What produced a result: the digest of the installed ``wfutils`` code and the versions around it.

:func:`code_digest` hashes every source file and package-data file of the installed package, so
any reuse key that includes it (the pipeline's notebook fingerprints, adapter reuse, prediction
resume, the LLM response cache) changes when the code does. :func:`version_record` is the one
record of versions written beside every result.
"""

from __future__ import annotations

import hashlib
import platform
import resource
import subprocess
import sys
from functools import lru_cache
from importlib import metadata, resources
from importlib.abc import Traversable
from pathlib import Path
from typing import Any, Iterable, Iterator

TRACKED_PACKAGES = ("torch", "transformers", "peft", "trl", "accelerate", "datasets", "numpy", "numba", "pandas",
                    "openai", "bm25s", "papermill", "jupyter-book")
_SKIPPED_SUFFIXES = (".pyc", ".pyo")


def _package_files(root: Traversable, prefix: str = "") -> Iterator[tuple[str, Traversable]]:
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        name = f"{prefix}{entry.name}"
        if entry.is_dir():
            if entry.name != "__pycache__":
                yield from _package_files(entry, name + "/")
        elif not entry.name.endswith(_SKIPPED_SUFFIXES):
            yield name, entry


@lru_cache(maxsize=1)
def code_digest() -> str:
    """SHA-256 (first 16 hex digits) over the relative paths and bytes of the installed ``wfutils``."""
    digest = hashlib.sha256()
    for name, entry in _package_files(resources.files("wfutils")):
        digest.update(name.encode())
        digest.update(b"\0")
        digest.update(entry.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def git_commit() -> str | None:
    """The commit of the source tree ``wfutils`` runs from, ``-dirty`` appended when tracked files differ from it;
    None outside a git checkout (an installed wheel). With :func:`code_digest` it makes a result traceable."""
    root = Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def package_version(name: str) -> str | None:
    """The installed version of a distribution, None when it is not installed."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def version_record(packages: Iterable[str] = TRACKED_PACKAGES) -> dict[str, str | None]:
    """Python, platform, ``wfutils`` version and code digest, and the versions of ``packages``."""
    record: dict[str, str | None] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "wfutils": package_version("wfutils"),
        "code_digest": code_digest(),
    }
    for name in packages:
        record[name] = package_version(name)
    return record


def peak_rss_gib() -> float:
    """Peak resident memory of this process so far, in GiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**30 if sys.platform == "darwin" else 2**20), 2)  # bytes on macOS, KiB on Linux


def notebook_seconds(entry: dict[str, Any]) -> float:
    """A notebook's time in a manifest: every part of a resumed notebook (``total_s``), else its one run."""
    return float(entry.get("total_s") or entry.get("duration_s") or 0.0)
