"""Predictions JSONL: one schema for both arms, resumable writes, system metadata beside every file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wfutils.data.predictions import (PREDICTION_FIELDS, Prediction, PredictionWriter, SystemMeta, meta_path,
                                      predictions_path, read_predictions, read_sidecar, read_system_meta)
from wfutils.provenance import code_digest

META = SystemMeta(system="toy", arm="prompted", base_model="smollm2-135m", n_params=134_515_008, strategy="few_shot",
                  k=3, retrieval="bm25", engine="test", decoding="greedy")


def record(i: int, output: str = '{"trigger": {"type": "daily"}, "components": []}') -> Prediction:
    return Prediction.from_output(id=f"ex-{i}", split="test", system="toy", request=f"request {i}",
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
    with PredictionWriter(path, META) as writer:
        assert writer.done_ids == {"ex-1"}
        for i in (1, 2, 3):
            writer.write(record(i))
    assert [r.id for r in read_predictions(path)] == ["ex-1", "ex-2", "ex-3"]


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
