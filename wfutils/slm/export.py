"""A fine-tuned run's LoRA adapter as a llama.cpp LoRA (GGUF with ``adapter.type = lora``), so the llama.cpp
engine can serve the fine-tuned model on the very GGUF the prompted arm serves.

The tensors keep peft's values: ``lora_A`` (rank x in) and ``lora_B`` (out x rank) of each adapted projection,
named by the ``gguf`` package's own map from Hugging Face module names to GGUF ones for the base model's
architecture (read from the base GGUF), with ``adapter.lora.alpha`` so that llama.cpp scales them by alpha / rank
as peft does.

    python -m wfutils.slm.export results/default/slm --base qwen2.5-coder-0.5b --out adapter.gguf
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Sequence

from wfutils.storage import atomic_write

__all__ = ["export_gguf_lora", "UnsupportedAdapterError"]

_PEFT_PREFIX = "base_model.model."


class UnsupportedAdapterError(ValueError):
    """The adapter uses a peft feature llama.cpp's LoRA format cannot express."""


def _adapter_dir(path: Path) -> Path:
    return path / "adapter" if (path / "adapter" / "adapter_config.json").is_file() else path


def export_gguf_lora(adapter: str | os.PathLike[str], out_path: str | os.PathLike[str],
                     base_gguf: str | os.PathLike[str]) -> Path:
    """Write the peft LoRA adapter in ``adapter`` (a run's ``slm`` folder or an adapter folder) as a GGUF LoRA for
    the base model in ``base_gguf``; returns ``out_path``. Raises :class:`UnsupportedAdapterError` naming the
    feature (per-module ranks or alphas, extra trained modules, DoRA, biases) or the tensor without a GGUF name."""
    import gguf
    from safetensors.numpy import load_file

    adapter = _adapter_dir(Path(adapter))
    config_path = adapter / "adapter_config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"no LoRA adapter (adapter_config.json) in {adapter}")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    unsupported = [name for name, bad in (("peft_type other than LORA", config.get("peft_type") != "LORA"),
                                          ("rank_pattern", bool(config.get("rank_pattern"))),
                                          ("alpha_pattern", bool(config.get("alpha_pattern"))),
                                          ("modules_to_save", bool(config.get("modules_to_save"))),
                                          ("use_dora", bool(config.get("use_dora"))),
                                          ("bias", config.get("bias", "none") != "none")) if bad]
    if unsupported:
        raise UnsupportedAdapterError(f"{config_path}: llama.cpp LoRA cannot express {', '.join(unsupported)}")
    reader = gguf.GGUFReader(str(base_gguf))
    arch = _field(reader, "general.architecture")
    blocks = int(_field(reader, f"{arch}.block_count"))
    names = gguf.get_tensor_name_map(next(a for a, n in gguf.MODEL_ARCH_NAMES.items() if n == arch), blocks)
    tensors = load_file(str(adapter / "adapter_model.safetensors"))
    def write(tmp: Path) -> None:
        writer = gguf.GGUFWriter(str(tmp), arch=arch)
        writer.add_string("general.type", "adapter")
        writer.add_string("adapter.type", "lora")
        writer.add_float32("adapter.lora.alpha", float(config["lora_alpha"]))
        for key in sorted(tensors):
            module, _, part = key.removeprefix(_PEFT_PREFIX).rpartition(".lora_")
            if part not in ("A.weight", "B.weight"):
                raise UnsupportedAdapterError(f"{adapter}: tensor {key!r} is not a LoRA A or B matrix")
            target = names.get_name(module + ".weight", try_suffixes=(".weight",))
            if target is None:
                raise UnsupportedAdapterError(f"{adapter}: no GGUF name for module {module!r} of a {arch} model")
            writer.add_tensor(f"{target}.lora_{part[0].lower()}", tensors[key].astype("float32"))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()

    out_path = Path(out_path)
    atomic_write(out_path, write)
    return out_path


def _field(reader, key: str):
    field = reader.get_field(key)
    if field is None:
        raise ValueError(f"{reader.path}: the base GGUF has no {key!r}")
    return field.contents()


def main(argv: Sequence[str] | None = None) -> Path:
    """The command line: a run's adapter as a GGUF LoRA for a registry model (or a GGUF file)."""
    from wfutils.weights import WEIGHTS, require

    parser = argparse.ArgumentParser(prog="python -m wfutils.slm.export", description=__doc__.splitlines()[0])
    parser.add_argument("adapter", help="a run's slm folder or an adapter folder")
    parser.add_argument("--base", required=True, help=f"registry name ({', '.join(WEIGHTS)}) or a GGUF file")
    parser.add_argument("--out", required=True, help="the GGUF LoRA to write")
    args = parser.parse_args(argv)
    base = require(WEIGHTS[args.base]) if args.base in WEIGHTS else Path(args.base)
    path = export_gguf_lora(args.adapter, args.out, base)
    print(path)
    return path


if __name__ == "__main__":
    main()
