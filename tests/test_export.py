"""wfutils.slm.export: a real (tiny) SmolLM2 LoRA adapter as a GGUF LoRA, read back and served by llama.cpp."""

from __future__ import annotations

import json
import shutil

import gguf
import numpy as np
import pytest
from safetensors.numpy import load_file

from tests.test_slm import PAIRS, base, trained  # noqa: F401 - the tiny fine-tuned run
from wfutils.engines.llamacpp import llamacpp_server
from wfutils.llm.client import connect
from wfutils.slm.export import UnsupportedAdapterError, export_gguf_lora
from wfutils.slm.formatting import training_messages
from wfutils.weights import WEIGHTS, require

MODEL = "smollm2-135m"


def test_the_adapter_becomes_a_gguf_lora_with_peft_values(trained, tmp_path):
    out = export_gguf_lora(trained.out_dir, tmp_path / "adapter.gguf", require(WEIGHTS[MODEL]))
    reader = gguf.GGUFReader(str(out))
    assert reader.get_field("general.type").contents() == "adapter"
    assert reader.get_field("adapter.type").contents() == "lora"
    assert reader.get_field("adapter.lora.alpha").contents() == 16.0  # TINY's lora_alpha
    tensors = {t.name: np.array(t.data) for t in reader.tensors}
    peft = load_file(str(trained.adapter_dir / "adapter_model.safetensors"))
    assert len(tensors) == len(peft) == 30 * 7 * 2  # 30 layers, 7 projections, A and B
    a = peft["base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight"]
    b = peft["base_model.model.model.layers.3.mlp.down_proj.lora_B.weight"]
    np.testing.assert_array_equal(tensors["blk.3.attn_q.weight.lora_a"].reshape(a.shape), a)
    np.testing.assert_array_equal(tensors["blk.3.ffn_down.weight.lora_b"].reshape(b.shape), b)


def test_llamacpp_applies_the_exported_adapter(trained, tmp_path):
    out = export_gguf_lora(trained.out_dir, tmp_path / "adapter.gguf", require(WEIGHTS[MODEL]))
    messages = training_messages(PAIRS[0]["request"])
    with llamacpp_server(MODEL, lora=out, lora_scale=1.0, log_path=tmp_path / "lora.log") as server:
        adapted = connect(server).chat(messages, max_tokens=24, use_cache=False).text
        server.set_lora_scale(0.0)
        plain = connect(server).chat(messages, max_tokens=24, use_cache=False).text
    assert adapted and plain and adapted != plain


def test_what_llamacpp_cannot_express_is_refused(trained, tmp_path):
    copy = tmp_path / "adapter"
    shutil.copytree(trained.adapter_dir, copy)
    config = json.loads((copy / "adapter_config.json").read_text())
    (copy / "adapter_config.json").write_text(json.dumps({**config, "rank_pattern": {"q_proj": 4}}))
    with pytest.raises(UnsupportedAdapterError, match="rank_pattern"):
        export_gguf_lora(copy, tmp_path / "x.gguf", require(WEIGHTS[MODEL]))
    assert not (tmp_path / "x.gguf").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no LoRA adapter"):
        export_gguf_lora(tmp_path / "empty", tmp_path / "x.gguf", require(WEIGHTS[MODEL]))
