"""Predictions JSONL: one schema for both arms, resumable writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wfutils.data.predictions import PREDICTION_FIELDS, Prediction, PredictionWriter, predictions_path, read_predictions


def record(i: int, output: str = '{"trigger": {"type": "daily"}, "components": []}') -> Prediction:
    return Prediction.from_output(id=f"ex-{i}", split="test", system="toy", request=f"request {i}",
                                  reference='{"trigger":{"type":"daily"},"components":[]}', output=output,
                                  latency_s=0.5, prompt_tokens=10, completion_tokens=20)


def test_round_trip_and_schema(tmp_path: Path) -> None:
    path = predictions_path(tmp_path, "toy")
    with PredictionWriter(path) as writer:
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
    with PredictionWriter(path) as writer:
        writer.write(record(1))
    with open(path, "a") as handle:  # a write cut short by a kill
        handle.write(record(2).to_json()[:25])
    with PredictionWriter(path) as writer:
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
