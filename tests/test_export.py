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
from wfutils.slm.export import GGUFLayout, UnsupportedAdapterError, export_gguf_lora
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
    prefix = "base_model.model.model.layers.3."
    a = peft[prefix + "self_attn.q_proj.lora_A.weight"]  # rank x in, as llama.cpp reads lora_a
    b = peft[prefix + "mlp.down_proj.lora_B.weight"]  # out x rank
    assert tensors["blk.3.attn_q.weight.lora_a"].shape == a.shape and a.shape[0] == 8
    np.testing.assert_array_equal(tensors["blk.3.attn_q.weight.lora_a"], a)
    np.testing.assert_array_equal(tensors["blk.3.ffn_down.weight.lora_b"], b)
    # q's B rows follow the base GGUF's interleaved q layout (test_the_layout_orders_rows_as_the_base_gguf_does)
    q_b = peft[prefix + "self_attn.q_proj.lora_B.weight"]
    layout = GGUFLayout.read(require(WEIGHTS[MODEL]))
    np.testing.assert_array_equal(tensors["blk.3.attn_q.weight.lora_b"], layout.rows("self_attn.q_proj", q_b))
    assert not np.array_equal(tensors["blk.3.attn_q.weight.lora_b"], q_b)


def test_llamacpp_applies_the_exported_adapter(trained, tmp_path):
    out = export_gguf_lora(trained.out_dir, tmp_path / "adapter.gguf", require(WEIGHTS[MODEL]))
    messages = training_messages(PAIRS[0]["request"])
    with llamacpp_server(MODEL, lora=out, lora_scale=1.0, log_path=tmp_path / "lora.log") as server:
        adapted = connect(server).chat(messages, max_tokens=24, use_cache=False).text
        server.set_lora_scale(0.0)
        plain = connect(server).chat(messages, max_tokens=24, use_cache=False).text
    assert adapted and plain and adapted != plain


@pytest.mark.parametrize("setting", [{"rank_pattern": {"q_proj": 4}}, {"alpha_pattern": {"q_proj": 4}},
                                     {"use_dora": True}, {"use_rslora": True}, {"modules_to_save": ["lm_head"]},
                                     {"bias": "lora_only"}])
def test_what_llamacpp_cannot_express_is_refused(trained, tmp_path, setting):
    copy = tmp_path / "adapter"
    shutil.copytree(trained.adapter_dir, copy)
    config = json.loads((copy / "adapter_config.json").read_text())
    (copy / "adapter_config.json").write_text(json.dumps({**config, **setting}))
    with pytest.raises(UnsupportedAdapterError, match=next(iter(setting))):
        export_gguf_lora(copy, tmp_path / "x.gguf", require(WEIGHTS[MODEL]))
    assert not (tmp_path / "x.gguf").exists()


def test_a_missing_adapter_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no LoRA adapter"):
        export_gguf_lora(tmp_path, tmp_path / "x.gguf", require(WEIGHTS[MODEL]))


def test_the_layout_orders_rows_as_the_base_gguf_does(base):
    """SmolLM2 is a llama-architecture GGUF: llama.cpp's converter interleaved the rows of q and k per head.
    The float model was dequantised from that file, so reordering its rows must give the file's tensors."""
    model, _ = base
    path = require(WEIGHTS[MODEL])
    layout = GGUFLayout.read(path)
    assert (layout.arch, layout.n_head, layout.n_head_kv) == ("llama", 9, 3)
    stored = {t.name: t for t in gguf.GGUFReader(str(path)).tensors}
    attention = model.model.layers[2].self_attn
    for module, name in (("q_proj", "attn_q"), ("k_proj", "attn_k"), ("v_proj", "attn_v")):
        hf = getattr(attention, module).weight.detach().float().numpy()
        tensor = stored[f"blk.2.{name}.weight"]
        gguf_rows = gguf.quants.dequantize(tensor.data, tensor.tensor_type).reshape(hf.shape)
        np.testing.assert_allclose(layout.rows(f"model.layers.2.self_attn.{module}", hf), gguf_rows, atol=1e-6)
        if module != "v_proj":  # the reordering matters: the Hugging Face order is not the file's
            assert not np.allclose(hf, gguf_rows, atol=1e-3)


def test_an_architecture_of_unknown_layout_is_refused(tmp_path):
    path = tmp_path / "other.gguf"
    writer = gguf.GGUFWriter(str(path), arch="gemma")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((4, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(UnsupportedAdapterError, match="architecture 'gemma'"):
        GGUFLayout.read(path)
