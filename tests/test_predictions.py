"""Predictions JSONL: one schema for both arms, resumable writes, system metadata beside every file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wfutils.data.predictions import (ARMS, FINE_TUNED, PREDICTION_FIELDS, PROMPTED, DataWarning, EngineInfo, Prediction,
                                      PredictionWriter, SystemMeta, end_jsonl_cleanly, meta_path, predictions_path,
                                      read_predictions, read_sidecar, read_system_meta, slug, system_name)
from wfutils.provenance import code_digest

META = SystemMeta(system="toy", arm="prompted", base_model="smollm2-135m", n_params=134_515_008, strategy="few_shot",
                  k=3, retrieval="bm25", decoding="greedy",
                  engine=EngineInfo(name="llamacpp", version="1", local=True, quantisation="Q4_K_M",
                                    threads=2, prompt_cache=True, settings={"parallel": 1}))


def record(i: int, output: str = '{"trigger": {"type": "daily"}, "components": []}', system: str = "toy") -> Prediction:
    return Prediction.from_output(id=f"ex-{i}", split="test", system=system, request=f"request {i}",
                                  reference='{"trigger":{"type":"daily"},"components":[]}', output=output,
                                  latency_s=0.5, prompt_tokens=10, completion_tokens=20)


def test_round_trip_and_schema(tmp_path: Path) -> None:
    path = predictions_path(tmp_path, "toy")
    with PredictionWriter(path, META) as writer:
        writer.write(record(1))
        writer.write(record(2, output="not json"))
    lines = path.read_text().splitlines()
    assert [sorted(json.loads(line)) for line in lines] == [sorted(PREDICTION_FIELDS)] * 2
    records = read_predictions(path)
    assert [r.parse_status for r in records] == ["ok", "invalid"]
    assert records[0].flow == {"trigger": {"type": "daily"}, "components": []}
    assert records[1].flow is None


def test_resume_completes_a_partial_file(tmp_path: Path) -> None:
    path = tmp_path / "predictions" / "toy.jsonl"
    with PredictionWriter(path, META) as writer:
        writer.write(record(1))
    with open(path, "a") as handle:  # a write cut short by a kill
        handle.write(record(2).to_json()[:25])
    with pytest.warns(DataWarning, match=r"toy.jsonl:2: the last line is incomplete"):
        assert [r.id for r in read_predictions(path)] == ["ex-1"]
    with pytest.warns(DataWarning, match=r"toy.jsonl:2: the last line is incomplete"):
        with PredictionWriter(path, META) as writer:
            assert writer.done_ids == {"ex-1"} and writer.repaired == "cut line removed"
            for i in (1, 2, 3):
                writer.write(record(i))
    assert [r.id for r in read_predictions(path)] == ["ex-1", "ex-2", "ex-3"]


def test_a_complete_last_record_without_its_newline_is_read_and_kept(tmp_path: Path) -> None:
    path = predictions_path(tmp_path, "toy")
    with PredictionWriter(path, META) as writer:
        writer.write(record(1))
        writer.write(record(2))
    path.write_bytes(path.read_bytes().rstrip(b"\n"))  # the kill came between the record and its newline
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to report: the record is whole
        assert [r.id for r in read_predictions(path)] == ["ex-1", "ex-2"]
        with PredictionWriter(path, META) as writer:
            assert writer.done_ids == {"ex-1", "ex-2"} and writer.repaired == "newline added"
            writer.write(record(2))  # already done: skipped
            writer.write(record(3))
    assert path.read_text().count("\n") == 3
    assert [r.id for r in read_predictions(path)] == ["ex-1", "ex-2", "ex-3"]


def test_unreadable_bytes_are_errors_naming_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    good = record(1).to_json().encode()
    path.write_bytes(good + b"\n" + good.replace(b"request 1", b"request \xff\xfe") + b"\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not valid UTF-8"):
        read_predictions(path)
    path.write_bytes(b"\xff" + good + b"\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:1: not valid UTF-8"):
        read_predictions(path)
    path.write_bytes(good + b"\n" + good[:-1] + b"\n")  # a broken line that has its newline is no cut write
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not valid JSON"):
        read_predictions(path)
    path.write_bytes(good + b"\n" + b'{"id": "x"}')  # a whole JSON object missing fields: malformed, not cut
    with pytest.raises(ValueError, match=r"bad.jsonl:2: missing field"):
        read_predictions(path)
    bad = json.loads(good)
    bad["latency_s"] = -1
    path.write_text(json.dumps(bad) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:1: field 'latency_s' is -1"):
        read_predictions(path)


def test_parse_status_and_flow_are_recomputed_from_the_output_never_trusted(tmp_path: Path) -> None:
    path = tmp_path / "toy.jsonl"
    lying = json.loads(record(1).to_json())
    lying.update(output="I cannot do that.")  # stored flow and parse_status still say "a valid flow"
    assert lying["parse_status"] == "ok" and lying["flow"]
    modest = json.loads(record(2).to_json())
    modest.update(flow=None, parse_status="invalid")  # a valid output stored as invalid
    other = json.loads(record(3).to_json())
    other.update(flow={"trigger": {"type": "weekly"}, "components": []}, parse_status="some-old-status")
    path.write_text("\n".join(json.dumps(r) for r in (lying, modest, other)) + "\n")
    got = read_predictions(path)
    assert (got[0].parse_status, got[0].flow) == ("invalid", None)
    assert (got[1].parse_status, got[1].flow) == ("ok", {"trigger": {"type": "daily"}, "components": []})
    assert (got[2].parse_status, got[2].flow) == ("ok", {"trigger": {"type": "daily"}, "components": []})


def test_end_jsonl_cleanly_keeps_whole_records_and_removes_fragments(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    assert end_jsonl_cleanly(path) is None  # no file
    path.write_text('{"id": "a"}\n{"id": "b"}')
    assert end_jsonl_cleanly(path) == "newline added" and path.read_text() == '{"id": "a"}\n{"id": "b"}\n'
    assert end_jsonl_cleanly(path) is None
    with open(path, "a") as handle:
        handle.write('{"id": "c", "cost_')
    with pytest.warns(DataWarning, match=r"trace.jsonl:3: the last line is incomplete"):
        assert end_jsonl_cleanly(path) == "cut line removed"
    assert path.read_text() == '{"id": "a"}\n{"id": "b"}\n'


def test_the_writer_refuses_a_record_of_another_system(tmp_path: Path) -> None:
    path = predictions_path(tmp_path, "toy")
    stranger = Prediction(**{**json.loads(record(1).to_json()), "system": "other"})
    with PredictionWriter(path, META) as writer:
        with pytest.raises(ValueError, match="names system 'other'"):
            writer.write(stranger)


def test_malformed_records_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    good = record(1).to_json()
    bad = json.loads(good)
    del bad["latency_s"]
    path.write_text(good + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:2: missing field\(s\) latency_s"):
        read_predictions(path)
    path.write_text(good + "\n{oops\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not valid JSON"):
        read_predictions(path)
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        read_predictions(tmp_path / "missing.jsonl")


def test_sidecar_carries_the_system_metadata_and_code_digest(tmp_path: Path) -> None:
    path = predictions_path(tmp_path, "toy")
    with PredictionWriter(path, META) as writer:
        writer.write(record(1))
    assert meta_path(path) == tmp_path / "predictions" / "toy.meta.json"
    assert read_system_meta(path) == META
    sidecar = read_sidecar(path)
    assert sidecar["arm"] == "prompted" and sidecar["code_digest"] == code_digest() and sidecar["resume_key"]


def test_changed_metadata_code_or_key_restarts_and_force_restarts(tmp_path: Path, monkeypatch) -> None:
    path = predictions_path(tmp_path, "toy")
    with PredictionWriter(path, META, key={"adapter": "a"}) as writer:
        writer.write(record(1))
    with PredictionWriter(path, META, key={"adapter": "a"}) as writer:
        assert writer.done_ids == {"ex-1"} and not writer.restarted
    with PredictionWriter(path, META, key={"adapter": "b"}) as writer:
        assert writer.done_ids == set() and writer.restarted
        writer.write(record(2))
    other = SystemMeta(**{**META.to_dict(), "k": 5})
    with PredictionWriter(path, other, key={"adapter": "b"}) as writer:
        assert writer.restarted and writer.done_ids == set()
        writer.write(record(3))
    import wfutils.data.predictions as predictions

    monkeypatch.setattr(predictions, "code_digest", lambda: "another-code")
    with PredictionWriter(path, other, key={"adapter": "b"}) as writer:
        assert writer.restarted and "code" in writer.restart_reason
        writer.write(record(4))
    with PredictionWriter(path, other, key={"adapter": "b"}, force=True) as writer:
        assert writer.restarted and writer.restart_reason == "force"
    assert read_predictions(path) == []


def test_missing_or_bad_sidecar_is_a_clear_error(tmp_path: Path) -> None:
    path = predictions_path(tmp_path, "toy")
    path.parent.mkdir(parents=True)
    path.write_text(record(1).to_json() + "\n")
    with pytest.raises(FileNotFoundError, match=r"toy.jsonl: no system metadata beside it .*toy.meta.json"):
        read_system_meta(path)
    meta_path(path).write_text(json.dumps({**META.to_dict(), "arm": "finetuned"}))
    with pytest.raises(ValueError, match=r"toy.meta.json: .*arm 'finetuned' is not one of"):
        read_system_meta(path)
    meta_path(path).write_text(json.dumps({**META.to_dict(), "system": "other"}))
    with pytest.raises(ValueError, match="names system 'other' but sits beside toy.jsonl"):
        read_system_meta(path)
    with pytest.raises(ValueError, match="n_params"):
        SystemMeta(system="x", arm="fine-tuned", base_model="m", n_params="135M")  # type: ignore[arg-type]


def test_engine_and_unknown_size_round_trip_through_the_sidecar(tmp_path: Path) -> None:
    remote = SystemMeta(system="gpt-4o-few-shot", arm=PROMPTED, base_model="gpt-4o", n_params=None, strategy="few_shot",
                        k=3, engine=EngineInfo(name="openai-compatible", local=False, endpoint="https://api.openai.com/v1"))
    path = predictions_path(tmp_path, remote.system)
    with PredictionWriter(path, remote) as writer:
        writer.write(record(1, system=remote.system))
    sidecar = read_sidecar(path)
    assert sidecar["n_params"] is None and sidecar["engine"]["endpoint"] == "https://api.openai.com/v1"
    assert sidecar["engine"]["quantisation"] is None and sidecar["engine"]["threads"] is None
    assert read_system_meta(path) == remote and SystemMeta.from_dict(META.to_dict()) == META
    assert META.engine.label == "llamacpp 1; threads=2, quantisation=Q4_K_M, prompt_cache=on, parallel=1"
    with pytest.raises(ValueError, match=r"engine: unknown field\(s\) cores"):
        SystemMeta.from_dict({**META.to_dict(), "engine": {"name": "x", "cores": 2}})
    with pytest.raises(ValueError, match="n_params -1 is not a non-negative int or None"):
        SystemMeta(system="x", arm=FINE_TUNED, base_model="m", n_params=-1)


def test_one_system_name_for_both_arms() -> None:
    assert ARMS == (FINE_TUNED, PROMPTED) == ("fine-tuned", "prompted")
    assert system_name(FINE_TUNED, "smollm2-135m", "lora") == "slm-smollm2-135m-lora"
    assert system_name(FINE_TUNED, "mistralai/Mistral-Nemo-Base-2407", "lora-constrained") == \
        "slm-mistral-nemo-base-2407-lora-constrained"
    assert system_name(PROMPTED, "gpt-4o", "rag_few_shot") == "gpt-4o-rag-few-shot"
    assert system_name(PROMPTED, "/root/.cache/models/SmolLM2-135M", "zero_shot") == "smollm2-135m-zero-shot"
    assert system_name(PROMPTED, "gemini-2.0-flash", "decomposed", "oracle") == "gemini-2.0-flash-decomposed-oracle"
    assert slug("Qwen/Qwen2.5-Coder_0.5B  Q4") == "qwen2.5-coder-0.5b-q4"
    with pytest.raises(ValueError, match="arm 'finetuned' is not one of"):
        system_name("finetuned", "m", "lora")
