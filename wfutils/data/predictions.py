"""One predictions schema for both arms (fine-tuned SLM and prompted LLMs), and what each system is.

A run keeps one JSONL file per system under ``results/<run>/predictions/<system>.jsonl`` and,
beside it, ``<system>.meta.json``: the system's :class:`SystemMeta` (arm, base model, strategy,
retrieval, engine, decoding, ...) plus the code digest and the resume key it was produced with.
Evaluation reads the arm and the strategy from there, never from the name.

Files are appended to record by record, so a killed run resumes: :class:`PredictionWriter`
knows which ids are already done and a rerun completes the file instead of overwriting it, as
long as the resume key (the system's metadata, the code digest and whatever the caller adds,
e.g. the adapter's fingerprint) is unchanged; otherwise, or with ``force``, it starts afresh.

Reading (:func:`read_predictions`) never loses or trusts silently: a complete last record
without its newline is read; only an unfinished (unparsable) last line counts as a write cut
short, and it is reported (a :class:`DataWarning` naming ``file:line``) and redone by the
writer; any other unreadable line (bad JSON, invalid UTF-8, a missing field) is a ValueError
naming ``file:line``. ``flow`` and ``parse_status`` are recomputed from ``output`` on every read
(:func:`wfutils.flows.parsing.parse_flow`): the stored values are never used.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterable

from wfutils.flows.limits import value_problem
from wfutils.flows.parsing import parse_flow
from wfutils.provenance import code_digest
from wfutils.storage import atomic_write_json

#: The two arms of the study, the one spelling of each (compare ``meta.arm`` with these, never with a literal).
FINE_TUNED = "fine-tuned"
PROMPTED = "prompted"
ARMS = (FINE_TUNED, PROMPTED)
#: The strategy of a system that answers the bare request (the fine-tuned arm); prompt strategies are
#: registered in :data:`wfutils.llm.strategies.STRATEGIES`, their one home (this layer checks a name's shape only).
NO_STRATEGY = "none"
RETRIEVALS = ("none", "bm25", "oracle")
META_SUFFIX = ".meta.json"


def slug(text: str | os.PathLike[str]) -> str:
    """A short file-name-safe name: the last path component, lower case, runs of other characters than
    ``a-z``, ``0-9`` and ``.`` turned into one ``-`` (``Qwen/Qwen2.5-Coder_0.5B`` -> ``qwen2.5-coder-0.5b``)."""
    base = str(text).rstrip("/").split("/")[-1]
    return re.sub(r"[^a-z0-9.]+", "-", base.lower()).strip("-")


def system_name(arm: str, model: str | os.PathLike[str], variant: str, retrieval: str = "none") -> str:
    """The predictions-file name of a system: ``slm-<model>-<variant>`` for the fine-tuned arm (``variant``
    such as ``lora``), ``<model>-<strategy>`` (``-oracle`` for oracle retrieval) for the prompted arm.

    Only a file name: what a system is lives in its :class:`SystemMeta` sidecar, never parsed back from the name.
    """
    if arm == FINE_TUNED:
        return f"slm-{slug(model) or 'model'}-{slug(variant)}"
    if arm == PROMPTED:
        return slug(f"{slug(model)}-{variant}" + ("-oracle" if retrieval == "oracle" else "")) or "llm"
    raise ValueError(f"arm {arm!r} is not one of {ARMS}")


@dataclass(frozen=True)
class EngineInfo:
    """What generated a system's answers, as data (null where unknown): read by the book and the cost table.

    ``name``: the engine (``llama.cpp``, ``transformers serve``, ``transformers``, ``openai-compatible``);
    ``endpoint``: the public URL of a remote OpenAI-compatible endpoint (None for an engine wfbook ran);
    ``quantisation``: how the weights ran (``Q4_K_M`` GGUF as is, ``float32`` after dequantising, ...);
    ``adapter_format``: ``peft-lora`` / ``gguf-lora`` when an adapter was applied; ``settings``: the other
    settings that shape the numerics (parallel slots, flash attention, batch size, ...).
    """

    name: str
    version: str | None = None
    local: bool | None = None  # ran on this machine (None: unknown)
    endpoint: str | None = None
    quantisation: str | None = None
    threads: int | None = None
    prompt_cache: bool | None = None
    adapter_format: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"engine name {self.name!r} is not a non-empty string")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)):
            raise ValueError(f"engine threads {self.threads!r} is not an int or None")

    @property
    def label(self) -> str:
        """One line for a reader: name, version and the settings that are known."""
        parts = [f"{k}={v}" for k, v in (("threads", self.threads), ("quantisation", self.quantisation),
                                         ("prompt_cache", None if self.prompt_cache is None
                                          else ("on" if self.prompt_cache else "off")),
                                         ("adapter", self.adapter_format)) if v is not None]
        parts += [f"{k}={v}" for k, v in sorted(self.settings.items())]
        head = f"{self.name} {self.version}" if self.version else self.name
        head += f" ({self.endpoint})" if self.endpoint else ""
        return f"{head}; {', '.join(parts)}" if parts else head

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> "EngineInfo | None":
        """From a sidecar's ``engine``: a mapping, None, or (sidecars written before engines were data) a text
        kept whole as the name."""
        if data is None or data == "":
            return None
        if isinstance(data, str):
            return cls(name=data)
        if not isinstance(data, dict):
            raise ValueError(f"engine must be an object, got {type(data).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"engine: unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(names))})")
        return cls(**data)


class DataWarning(UserWarning):
    """Something in a run's files was skipped or repaired (a write cut short, an unusable value);
    the message names ``file:line``. Evaluation turns these into explicit notes."""


@dataclass(frozen=True)
class SystemMeta:
    """What a system is: the fields evaluation, statistics, claims and the book read."""

    system: str
    arm: str  # one of ARMS
    base_model: str
    n_params: int | None  # None: not published (a remote endpoint's model, an independently started server)
    adapter: str | None = None
    strategy: str = NO_STRATEGY  # a strategy name (NO_STRATEGY: the fine-tuned model answers the bare request)
    k: int = 0  # examples in the prompt
    retrieval: str = "none"  # one of RETRIEVALS
    engine: EngineInfo | None = None  # what generated it (None: not recorded)
    decoding: str = "greedy"  # "greedy", "constrained", ...
    model_sha256: str | None = None
    train_corpus: str = "synthetic"  # the data set it was fine-tuned on / draws examples and retrieval from
    # An earlier adapter of the run's training answering part of the paired requests: a point of the learning curve
    # (notebook 06), left out of the comparison of notebooks 04 and 05 and never the headline's fine-tuned system.
    learning_curve: bool = False
    # A fine-tuned system's training recipe without its seed (wfutils.slm.recipe) and that seed: systems of one
    # recipe are seeds of one training, weighed as a spread (notebook 06); the headline takes the first seed.
    recipe: str | None = None
    training_seed: int | None = None

    def __post_init__(self) -> None:
        problems = []
        if isinstance(self.engine, (dict, str)):  # as to_dict() writes it (a text: a sidecar of an older version)
            try:
                object.__setattr__(self, "engine", EngineInfo.from_dict(self.engine))
            except (TypeError, ValueError) as exc:
                problems.append(str(exc))
        if not self.system:
            problems.append("system is empty")
        if self.arm not in ARMS:
            problems.append(f"arm {self.arm!r} is not one of {ARMS}")
        if not isinstance(self.strategy, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", self.strategy):
            problems.append(f"strategy {self.strategy!r} is not a strategy name (lower case, digits, underscores)")
        if self.retrieval not in RETRIEVALS:
            problems.append(f"retrieval {self.retrieval!r} is not one of {RETRIEVALS}")
        if self.n_params is not None and (isinstance(self.n_params, bool) or not isinstance(self.n_params, int)
                                          or self.n_params < 0):
            problems.append(f"n_params {self.n_params!r} is not a non-negative int or None (not published)")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 0:
            problems.append(f"k {self.k!r} is not a non-negative int")
        if not isinstance(self.learning_curve, bool) or (self.learning_curve and self.arm != FINE_TUNED):
            problems.append(f"learning_curve {self.learning_curve!r}: only a fine-tuned system (True) is a curve point")
        if self.recipe is not None and (not isinstance(self.recipe, str) or not self.recipe
                                        or self.arm != FINE_TUNED):
            problems.append(f"recipe {self.recipe!r}: only a fine-tuned system has one (a non-empty text)")
        if self.training_seed is not None and (isinstance(self.training_seed, bool)
                                               or not isinstance(self.training_seed, int) or self.arm != FINE_TUNED):
            problems.append(f"training_seed {self.training_seed!r}: only a fine-tuned system has one (an int)")
        if self.engine is not None and not isinstance(self.engine, EngineInfo):
            problems.append(f"engine {self.engine!r} is not an EngineInfo or None")
        if problems:
            raise ValueError(f"system metadata for {self.system!r}: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, where: str = "system metadata") -> "SystemMeta":
        if not isinstance(data, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(data).__name__}")
        names = {f.name for f in fields(cls)}
        missing = [n for n in ("system", "arm", "base_model", "n_params") if n not in data]
        if missing:
            raise ValueError(f"{where}: missing field(s) {', '.join(missing)}")
        try:
            return cls(**{k: v for k, v in data.items() if k in names})
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: {exc}") from None


def meta_path(predictions_file: str | os.PathLike[str]) -> Path:
    """The sidecar of a predictions file: ``<system>.jsonl`` -> ``<system>.meta.json``."""
    path = Path(predictions_file)
    return path.with_name(path.name.removesuffix(".jsonl") + META_SUFFIX)


def read_sidecar(predictions_file: str | os.PathLike[str]) -> dict[str, Any]:
    """The whole sidecar (metadata, ``code_digest``, ``resume_key``); clear errors naming the file."""
    path = meta_path(predictions_file)
    if not path.is_file():
        raise FileNotFoundError(f"{predictions_file}: no system metadata beside it (expected {path}); "
                                "every predictions file needs its sidecar saying which arm, model and strategy produced it")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None


def read_system_meta(predictions_file: str | os.PathLike[str]) -> SystemMeta:
    """The :class:`SystemMeta` of a predictions file, validated (unknown arm, missing field: ValueError naming the file)."""
    data = read_sidecar(predictions_file)
    meta = SystemMeta.from_dict(data, where=str(meta_path(predictions_file)))
    expected = Path(predictions_file).name.removesuffix(".jsonl")
    if meta.system != expected:
        raise ValueError(f"{meta_path(predictions_file)}: names system {meta.system!r} but sits beside {expected}.jsonl")
    return meta


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
        """Build a record from raw model text, parsing it with :func:`wfutils.flows.parsing.parse_flow`.

        Never raises on the text: output beyond the caps of :mod:`wfutils.flows.limits` gets parse
        status ``too_large`` / ``too_deep`` and no flow. Output that is not text (None, bytes) is
        made text (``""``, UTF-8 with replacement characters), and lone surrogates (which no UTF-8
        file can hold) become U+FFFD, so that the record can always be written and read back.
        """
        output = _as_text(output)
        parsed = parse_flow(output)
        return cls(
            id=str(id), split=split, system=system, request=request, reference=reference,
            output=output, flow=parsed.flow, parse_status=parsed.status, latency_s=float(latency_s),
            prompt_tokens=int(prompt_tokens), completion_tokens=int(completion_tokens),
        )

    def to_json(self) -> str:
        """The record as one JSON line (without the newline); UTF-8-encodable.

        Never raises for a record built by :meth:`from_output`. Lone surrogates (only in a flow
        decoded from ``\\ud800``-style escapes, or in a record built by hand) are written escaped
        and read back as they were; a flow that cannot be serialised at all (a hand-built record)
        is written as null with the parse status naming why (``too_deep`` / ``too_large`` /
        ``invalid``).
        """
        record = {f.name: getattr(self, f.name) for f in fields(self)}  # shallow: asdict would recurse into the flow
        try:
            text = json.dumps(record, ensure_ascii=False)
        except (TypeError, ValueError, RecursionError):
            problem = value_problem(self.flow)
            record["flow"], record["parse_status"] = None, problem.status if problem is not None else "invalid"
            text = json.dumps(record, ensure_ascii=False)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = json.dumps(record)
        return text


_SURROGATE_RE = re.compile("[\ud800-\udfff]")


def _as_text(output: Any) -> str:
    """Model output as text that UTF-8 can hold (see :meth:`Prediction.from_output`)."""
    if output is None:
        return ""
    if isinstance(output, (bytes, bytearray)):
        return bytes(output).decode("utf-8", errors="replace")
    if not isinstance(output, str):
        output = str(output)
    try:
        output.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE_RE.sub("\ufffd", output)
    return output


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
    for name in ("latency_s", "prompt_tokens", "completion_tokens"):
        value = data[name]
        if not (value >= 0 and value != float("inf")):  # NaN fails the first test
            raise ValueError(f"{where}: field {name!r} is {value!r}, expected a finite non-negative number")
    # never trusted: what the output parses to is recomputed from the output itself
    parsed = parse_flow(data["output"])
    return Prediction(**{**data, "flow": parsed.flow, "parse_status": parsed.status})


def _tail_state(tail: bytes, is_record: Callable[[bytes], bool]) -> str | None:
    """What the bytes after a file's last newline are: None (nothing), ``blank``, ``complete`` or ``cut``."""
    if not tail:
        return None
    if not tail.strip():
        return "blank"
    return "complete" if is_record(tail) else "cut"


def _is_json_object(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line.decode("utf-8")), dict)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return False


def end_jsonl_cleanly(path: str | os.PathLike[str], *, is_record: Callable[[bytes], bool] = _is_json_object,
                      warn: bool = True) -> str | None:
    """Make a JSONL file end with a newline before anything is appended to it (so that a new record is
    never glued onto an old fragment). A last line without its newline is kept when ``is_record`` says
    it is complete (a newline is added) and removed when it is not (a write cut short; reported as a
    :class:`DataWarning` naming ``file:line`` when ``warn``). Returns ``"newline added"``,
    ``"cut line removed"`` or None (nothing to do, or no file)."""
    path = Path(path)
    if not path.is_file():
        return None
    data = path.read_bytes()
    cut = data.rfind(b"\n") + 1
    state = _tail_state(data[cut:], is_record)
    if state is None:
        return None
    if state == "complete":
        with open(path, "ab") as handle:
            handle.write(b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        return "newline added"
    if warn and state == "cut":
        line = data.count(b"\n", 0, cut) + 1
        warnings.warn(f"{path}:{line}: the last line is incomplete ({len(data) - cut} bytes, "
                      "a write cut short); removed before appending", DataWarning, stacklevel=2)
    with open(path, "r+b") as handle:
        handle.truncate(cut)
        handle.flush()
        os.fsync(handle.fileno())
    return "cut line removed"


def _scan(path: Path) -> tuple[list[Prediction], str | None]:
    """Records of a predictions file and the state of its last line (see :func:`_tail_state`)."""
    if not path.exists():
        raise FileNotFoundError(f"predictions file not found: {path}")
    data = path.read_bytes()
    lines = data.split(b"\n")
    records: list[Prediction] = []
    for number, raw in enumerate(lines[:-1], start=1):
        where = f"{path}:{number}"
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"{where}: not valid UTF-8 (byte {exc.start} of the line); the file is damaged") from None
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:  # JSONDecodeError, or an integer past Python's digit limit
            raise ValueError(f"{where}: not valid JSON ({getattr(exc, 'msg', exc)})") from None
        except RecursionError:
            raise ValueError(f"{where}: JSON nested too deeply to read") from None
        records.append(_record_from_dict(obj, where))
    tail = lines[-1]
    state = _tail_state(tail, _is_json_object)
    where = f"{path}:{len(lines)}"
    if state == "complete":  # a whole record whose newline was not written yet: it counts
        records.append(_record_from_dict(json.loads(tail.decode("utf-8")), where))
    elif state == "cut":
        warnings.warn(f"{where}: the last line is incomplete ({len(tail)} bytes, a write cut short); it is ignored "
                      "and the writer redoes that example", DataWarning, stacklevel=3)
    return records, state


def read_predictions(path: str | os.PathLike[str]) -> list[Prediction]:
    """Read a predictions file; ``flow`` and ``parse_status`` are recomputed from ``output``.

    A malformed or unreadable line (bad JSON, invalid UTF-8, a missing or mistyped field) raises
    ValueError naming file and line. The last line may lack its newline: a complete record there
    is read; an unfinished one (a write cut short by a kill) is ignored with a
    :class:`DataWarning` naming file and line, and the writer redoes that example. An empty
    file gives ``[]`` (evaluation refuses it: :func:`wfutils.evaluation.loading.load_system`).
    """
    return _scan(Path(path))[0]


class PredictionWriter:
    """Append predictions to a JSONL file, one flushed line per record; resumable; writes the sidecar.

    The sidecar holds ``meta``, the installed code digest and ``resume_key`` = digest of
    (meta, code digest, ``key``). Existing records are kept only when the stored resume key
    equals the new one and ``force`` is false; otherwise the file starts afresh (``restarted``
    says so, with the reason in ``restart_reason``).

    >>> with PredictionWriter(path, meta, key={"adapter": fp}) as writer:     # doctest: +SKIP
    ...     todo = [x for x in examples if x["id"] not in writer.done_ids]
    ...     for record in generate(todo):
    ...         writer.write(record)
    """

    def __init__(self, path: str | os.PathLike[str], meta: SystemMeta, *, key: Any = None,
                 force: bool = False) -> None:
        self.path = Path(path)
        if meta.system != self.path.name.removesuffix(".jsonl"):
            raise ValueError(f"{self.path}: metadata names system {meta.system!r}")
        self.meta = meta
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.resume_key = _resume_key(meta, key)
        self.done_ids: set[str] = set()
        self.restarted = False
        self.restart_reason: str | None = None
        self.repaired: str | None = None  # what end_jsonl_cleanly did to the last line on resuming
        if self.path.exists():
            stored = _stored_resume_key(self.path)
            if force:
                self.restart_reason = "force"
            elif stored != self.resume_key:
                self.restart_reason = ("no resume key stored" if stored is None
                                       else "code, metadata or inputs changed since these predictions were written")
            if self.restart_reason:
                self.path.unlink()
                self.restarted = True
            else:
                records, _ = _scan(self.path)  # warns about a cut last line
                self.done_ids = {r.id for r in records}
                # a complete last record gets its newline, a cut one is removed (and redone)
                self.repaired = end_jsonl_cleanly(self.path, warn=False)
        atomic_write_json(meta_path(self.path), {**meta.to_dict(), "code_digest": code_digest(),
                                                  "resume_key": self.resume_key})
        self._handle = None

    def __enter__(self) -> "PredictionWriter":
        self._handle = open(self.path, "a", encoding="utf-8")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def write(self, record: Prediction) -> None:
        """Append one record (skipped if its id is already in the file)."""
        if self._handle is None:
            raise RuntimeError("PredictionWriter must be used as a context manager")
        if record.system != self.meta.system:
            raise ValueError(f"{self.path}: record {record.id!r} names system {record.system!r}, the file holds "
                             f"{self.meta.system!r}")
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


def _resume_key(meta: SystemMeta, key: Any) -> str:
    payload = json.dumps({"meta": meta.to_dict(), "code_digest": code_digest(), "key": key}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _stored_resume_key(predictions_file: Path) -> str | None:
    try:
        value = json.loads(meta_path(predictions_file).read_text(encoding="utf-8")).get("resume_key")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None
