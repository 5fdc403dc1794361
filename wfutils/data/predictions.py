"""One predictions schema for both arms (fine-tuned SLM and prompted LLMs).

A run keeps one JSONL file per system under ``results/<run>/predictions/<system>.jsonl``.
Files are appended to record by record, so a killed run resumes: :class:`PredictionWriter`
knows which ids are already done and a rerun completes the file instead of overwriting it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Iterable

from wfutils.flows.parsing import PARSE_STATUSES, parse_flow


@dataclass
class Prediction:
    """One generated flow for one request."""

    id: str
    split: str
    system: str
    request: str
    reference: str
    output: str
    flow: dict[str, Any] | None
    parse_status: str
    latency_s: float
    prompt_tokens: int
    completion_tokens: int

    @classmethod
    def from_output(
        cls,
        *,
        id: str,
        split: str,
        system: str,
        request: str,
        reference: str,
        output: str,
        latency_s: float,
        prompt_tokens: int,
        completion_tokens: int,
    ) -> "Prediction":
        """Build a record from raw model text, parsing it with :func:`wfutils.flows.parsing.parse_flow`."""
        parsed = parse_flow(output)
        return cls(
            id=str(id), split=split, system=system, request=request, reference=reference,
            output=output, flow=parsed.flow, parse_status=parsed.status, latency_s=float(latency_s),
            prompt_tokens=int(prompt_tokens), completion_tokens=int(completion_tokens),
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)


PREDICTION_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Prediction))
_TYPES: dict[str, tuple[type, ...]] = {
    "id": (str,), "split": (str,), "system": (str,), "request": (str,), "reference": (str,),
    "output": (str,), "flow": (dict, type(None)), "parse_status": (str,),
    "latency_s": (int, float), "prompt_tokens": (int,), "completion_tokens": (int,),
}


def predictions_path(run_dir: str | os.PathLike[str], system: str) -> Path:
    """Where a system's predictions live inside a run directory."""
    return Path(run_dir) / "predictions" / f"{system}.jsonl"


def _record_from_dict(data: Any, where: str) -> Prediction:
    if not isinstance(data, dict):
        raise ValueError(f"{where}: a prediction must be a JSON object, got {type(data).__name__}")
    missing = [name for name in PREDICTION_FIELDS if name not in data]
    if missing:
        raise ValueError(f"{where}: missing field(s) {', '.join(missing)}")
    extra = sorted(set(data) - set(PREDICTION_FIELDS))
    if extra:
        raise ValueError(f"{where}: unknown field(s) {', '.join(extra)}")
    for name, types in _TYPES.items():
        value = data[name]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise ValueError(f"{where}: field {name!r} has type {type(value).__name__}")
    if data["parse_status"] not in PARSE_STATUSES:
        raise ValueError(f"{where}: parse_status {data['parse_status']!r} is not one of {PARSE_STATUSES}")
    return Prediction(**data)


def read_predictions(path: str | os.PathLike[str]) -> list[Prediction]:
    """Read a predictions file; a malformed record raises ValueError naming file and line.

    A last line without its newline (a write cut short by a kill) is ignored: the writer
    will redo that example.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"predictions file not found: {path}")
    records: list[Prediction] = []
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    complete = lines[:-1]  # the piece after the last newline is empty or an unfinished write
    for number, line in enumerate(complete, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}: not valid JSON ({exc.msg})") from None
        records.append(_record_from_dict(data, where))
    return records


class PredictionWriter:
    """Append predictions to a JSONL file, one flushed line per record; resumable.

    >>> with PredictionWriter(path) as writer:          # doctest: +SKIP
    ...     todo = [x for x in examples if x["id"] not in writer.done_ids]
    ...     for record in generate(todo):
    ...         writer.write(record)
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.done_ids: set[str] = set()
        if self.path.exists():
            records = read_predictions(self.path)
            self.done_ids = {r.id for r in records}
            self._truncate_unfinished_line()
        self._handle = None

    def _truncate_unfinished_line(self) -> None:
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            with open(self.path, "r+b") as handle:
                handle.truncate(cut)

    def __enter__(self) -> "PredictionWriter":
        self._handle = open(self.path, "a", encoding="utf-8")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def write(self, record: Prediction) -> None:
        """Append one record (skipped if its id is already in the file)."""
        if self._handle is None:
            raise RuntimeError("PredictionWriter must be used as a context manager")
        if record.id in self.done_ids:
            return
        self._handle.write(record.to_json() + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self.done_ids.add(record.id)

    def write_all(self, records: Iterable[Prediction]) -> None:
        for record in records:
            self.write(record)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
