"""A fine-tuned run's LoRA adapter as a llama.cpp LoRA (GGUF with ``adapter.type = lora``), so the llama.cpp
engine can serve the fine-tuned model on the very GGUF the prompted arm serves.

The tensors keep peft's values: ``lora_A`` (rank x in) and ``lora_B`` (out x rank) of each adapted projection,
named by the ``gguf`` package's own map from Hugging Face module names to GGUF ones for the base model's
architecture (read from the base GGUF), with ``adapter.lora.alpha`` so that llama.cpp scales them by alpha / rank
as peft does. Where llama.cpp's converter reorders the rows of the query and key projections (the ``llama``
architecture: SmolLM2, Mistral), ``lora_B`` of those projections is reordered the same way; an architecture
whose layout this module does not know is refused.

    python -m wfutils.slm.export results/default/slm --base qwen2.5-coder-0.5b --out adapter.gguf
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from wfutils.storage import atomic_write

__all__ = ["export_gguf_lora", "GGUFLayout", "UnsupportedAdapterError"]

_PEFT_PREFIX = "base_model.model."


class UnsupportedAdapterError(ValueError):
    """The adapter uses a peft feature llama.cpp's LoRA format cannot express."""


#: Architectures whose query/key rows llama.cpp's converter interleaves per head (``LlamaModel.permute``).
_QK_REORDERED = frozenset({"llama"})
#: Architectures whose projections keep the Hugging Face row order.
_AS_IS = frozenset({"qwen2"})


@dataclass(frozen=True)
class GGUFLayout:
    """How a base GGUF lays out the projections an adapter changes: architecture, blocks and attention heads."""

    path: Path
    arch: str
    blocks: int
    n_head: int
    n_head_kv: int

    @classmethod
    def read(cls, base_gguf: str | os.PathLike[str]) -> "GGUFLayout":
        """The layout of ``base_gguf``; an architecture this module cannot export for raises naming it."""
        import gguf

        path = Path(base_gguf)
        reader = gguf.GGUFReader(str(path))

        def field(key: str) -> Any:
            value = reader.get_field(key)
            if value is None:
                raise ValueError(f"{path}: the base GGUF has no {key!r}")
            return value.contents()

        arch = field("general.architecture")
        if arch not in _QK_REORDERED | _AS_IS:
            raise UnsupportedAdapterError(f"{path}: architecture {arch!r} - the GGUF LoRA export knows the layouts "
                                          f"of {sorted(_QK_REORDERED | _AS_IS)}")
        n_head = int(field(f"{arch}.attention.head_count"))
        kv_heads = reader.get_field(f"{arch}.attention.head_count_kv")
        n_head_kv = int(kv_heads.contents()) if kv_heads is not None else n_head
        return cls(path, arch, int(field(f"{arch}.block_count")), n_head, n_head_kv)

    def rows(self, module: str, matrix: Any) -> Any:
        """``matrix`` (output rows of the Hugging Face ``module``) in the row order of the GGUF's tensor."""
        if self.arch not in _QK_REORDERED or not module.endswith(("q_proj", "k_proj")):
            return matrix
        heads = self.n_head if module.endswith("q_proj") else self.n_head_kv
        return (matrix.reshape(heads, 2, matrix.shape[0] // heads // 2, *matrix.shape[1:])
                .swapaxes(1, 2).reshape(matrix.shape))

    def tensor_names(self) -> Any:
        import gguf

        arch = next(a for a, name in gguf.MODEL_ARCH_NAMES.items() if name == self.arch)
        return gguf.get_tensor_name_map(arch, self.blocks)


def _adapter_dir(path: Path) -> Path:
    return path / "adapter" if (path / "adapter" / "adapter_config.json").is_file() else path


def export_gguf_lora(adapter: str | os.PathLike[str], out_path: str | os.PathLike[str],
                     base_gguf: str | os.PathLike[str]) -> Path:
    """Write the peft LoRA adapter in ``adapter`` (a run's ``slm`` folder or an adapter folder) as a GGUF LoRA for
    the base model in ``base_gguf``; returns ``out_path``. Raises :class:`UnsupportedAdapterError` naming the
    feature (per-module ranks or alphas, rsLoRA, extra trained modules, DoRA, biases), the tensor without a GGUF
    name or the base architecture whose layout is unknown, before anything is written."""
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
                                          ("use_rslora (alpha / sqrt(rank))", bool(config.get("use_rslora"))),
                                          ("fan_in_fan_out", bool(config.get("fan_in_fan_out"))),
                                          ("bias", config.get("bias", "none") != "none")) if bad]
    if unsupported:
        raise UnsupportedAdapterError(f"{config_path}: llama.cpp LoRA cannot express {', '.join(unsupported)}")
    layout = GGUFLayout.read(base_gguf)
    names = layout.tensor_names()
    tensors = load_file(str(adapter / "adapter_model.safetensors"))
    lora = {}
    for key in sorted(tensors):
        module, _, part = key.removeprefix(_PEFT_PREFIX).rpartition(".lora_")
        if part not in ("A.weight", "B.weight"):
            raise UnsupportedAdapterError(f"{adapter}: tensor {key!r} is not a LoRA A or B matrix")
        target = names.get_name(module + ".weight", try_suffixes=(".weight",))
        if target is None:
            raise UnsupportedAdapterError(f"{adapter}: no GGUF name for module {module!r} of a {layout.arch} model")
        matrix = tensors[key].astype("float32")
        lora[f"{target}.lora_{part[0].lower()}"] = layout.rows(module, matrix) if part == "B.weight" else matrix

    def write(tmp: Path) -> None:
        writer = gguf.GGUFWriter(str(tmp), arch=layout.arch)
        try:
            writer.add_string("general.type", "adapter")
            writer.add_string("adapter.type", "lora")
            writer.add_float32("adapter.lora.alpha", float(config["lora_alpha"]))
            for name, matrix in lora.items():
                writer.add_tensor(name, matrix)
            writer.write_header_to_file()
            writer.write_kv_data_to_file()
            writer.write_tensors_to_file()
        finally:
            writer.close()

    out_path = Path(out_path)
    atomic_write(out_path, write)
    return out_path


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
