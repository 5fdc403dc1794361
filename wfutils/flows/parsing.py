"""Turn raw model text into a flow dict, repairing what can safely be repaired.

:func:`parse_flow` never raises on model text: it returns the flow (or None) with a status
and a message saying what was done or why nothing could be recovered.

Statuses:
    ``ok``        the text (or its fenced block) is a JSON object as it stands;
    ``repaired``  prose around the object was dropped and/or trailing commas removed;
    ``truncated`` the output stopped mid-object; the last incomplete element was dropped and
                  the open brackets closed;
    ``empty``     there is no text;
    ``invalid``   nothing usable (the message says why);
    ``too_large`` the output is beyond a size cap of :mod:`wfutils.flows.limits`: longer than
                  ``MAX_FLOW_CHARS`` characters, or an integer of more than ``MAX_INT_DIGITS`` digits;
    ``too_deep``  the JSON is nested more than ``MAX_JSON_DEPTH`` levels deep.

The last two are failures like ``invalid`` (no flow; see :data:`UNPARSED_STATUSES`): the caps
bound the cost of any output, so that parsing is linear in the text and never recurses deeply.

Note that the paper's FlowSim does *not* repair: :mod:`wfutils.flows.flowsim` scores raw text the
way ServiceNow's implementation does. Repairs here serve schema checks and error analysis.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from wfutils.flows import limits
from wfutils.flows.limits import LimitExceeded

PARSE_STATUSES = ("ok", "repaired", "truncated", "empty", "invalid") + limits.LIMIT_STATUSES
#: Statuses without a flow.
UNPARSED_STATUSES = ("empty", "invalid") + limits.LIMIT_STATUSES

_FENCE_RE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\r?\n?(.*?)(?:```|\Z)", re.DOTALL)
_MAX_TRUNCATION_ATTEMPTS = 64


@dataclass(frozen=True)
class ParsedFlow:
    """Result of :func:`parse_flow`."""

    flow: dict[str, Any] | None
    status: str
    message: str = ""

    @property
    def is_parsed(self) -> bool:
        return self.flow is not None


def dumps_flow(flow: Any) -> str:
    """Compact canonical JSON for a flow (the form used in data files and fine-tuning)."""
    return json.dumps(flow, ensure_ascii=False, separators=(",", ":"))


def _strip_fence(text: str) -> tuple[str, bool]:
    match = _FENCE_RE.search(text)
    if match is None:
        return text, False
    return match.group(1).strip(), True


# A string token (an unterminated one runs to the end of the text) or a comma before a closing bracket.
_TRAILING_COMMA_RE = re.compile(r'("[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z))|,(?=[ \t\r\n]*[}\]])', re.DOTALL)
_ANY_TRAILING_COMMA_RE = re.compile(r",[ \t\r\n]*[}\]]")


def _remove_trailing_commas(text: str) -> str:
    """Drop every comma (outside strings) whose next non-blank character closes an object or a list."""
    if _ANY_TRAILING_COMMA_RE.search(text) is None:
        return text
    return _TRAILING_COMMA_RE.sub(r"\1", text)


def _cut_points(text: str) -> list[tuple[int, str]]:
    """Positions right after a complete value inside the top-level object, with the closers needed there."""
    cuts: list[tuple[int, str]] = []
    stack: list[str] = []  # "{" or "["
    expecting_key: list[bool] = []  # per container: in an object, is the next string a key?
    in_string = escape = False
    string_is_key = False
    scalar_start: int | None = None

    def closers() -> str:
        return "".join("}" if c == "{" else "]" for c in reversed(stack))

    def end_scalar(pos: int) -> None:
        nonlocal scalar_start
        if scalar_start is not None:
            scalar_start = None
            if stack:
                cuts.append((pos, closers()))

    for i, ch in enumerate(text):
        if in_string:
            if escape:
                escape = False
            elif ch == "\\":
                escape = True
            elif ch == '"':
                in_string = False
                if not string_is_key and stack:
                    cuts.append((i + 1, closers()))
            continue
        if ch == '"':
            end_scalar(i)
            in_string = True
            string_is_key = bool(stack) and stack[-1] == "{" and expecting_key[-1]
        elif ch in "{[":
            end_scalar(i)
            stack.append(ch)
            expecting_key.append(ch == "{")
        elif ch in "}]":
            end_scalar(i)
            if not stack:
                break
            stack.pop()
            expecting_key.pop()
            if stack:
                cuts.append((i + 1, closers()))
            else:
                cuts.append((i + 1, ""))
                break
        elif ch == ":":
            end_scalar(i)
            if stack:
                expecting_key[-1] = False
        elif ch == ",":
            end_scalar(i)
            if stack and stack[-1] == "{":
                expecting_key[-1] = True
        elif ch in " \t\r\n":
            end_scalar(i)
        elif scalar_start is None:
            scalar_start = i
    return cuts


def _close_truncated(text: str) -> tuple[dict[str, Any] | None, str]:
    cuts = _cut_points(text)
    if not cuts:
        return None, "output is truncated before any complete value"
    for position, closing in reversed(cuts[-_MAX_TRUNCATION_ATTEMPTS:]):
        candidate = _remove_trailing_commas(text[:position].rstrip().rstrip(",") + closing)
        try:
            value = limits.loads(candidate)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            dropped = len(text) - position
            return value, f"output was truncated: dropped {dropped} trailing characters, closed {len(closing)} bracket(s)"
    return None, "output is truncated and no safe cut point gives valid JSON"


def _load_object(text: str) -> tuple[Any, str | None]:
    try:
        return limits.loads(text), None
    except json.JSONDecodeError as exc:
        return None, f"{exc.msg} at line {exc.lineno} column {exc.colno}"


def parse_flow(text: Any) -> ParsedFlow:
    """Parse raw model output into a flow dict (see the module docstring for statuses); never raises.

    A dict is taken as it stands (status ``ok``) unless it is beyond the caps of
    :mod:`wfutils.flows.limits` (``too_large`` / ``too_deep``).
    """
    if isinstance(text, dict):
        problem = limits.value_problem(text)
        if problem is not None:
            return ParsedFlow(None, problem.status, str(problem))
        return ParsedFlow(text, "ok", "")
    if not isinstance(text, str):
        return ParsedFlow(None, "invalid", f"model output must be text, got {type(text).__name__}")
    try:
        return _parse_text(text)
    except LimitExceeded as exc:
        return ParsedFlow(None, exc.status, str(exc))


def _parse_text(text: str) -> ParsedFlow:
    limits.check_text(text)
    if not text.strip():
        return ParsedFlow(None, "empty", "model output is empty")

    body, fenced = _strip_fence(text.strip())
    value, error = _load_object(body)
    if error is None:
        if isinstance(value, dict):
            return ParsedFlow(value, "ok", "fenced block" if fenced else "")
        return ParsedFlow(None, "invalid", f"top-level JSON is a {type(value).__name__}, not an object")

    start = body.find("{")
    if start < 0:
        return ParsedFlow(None, "invalid", f"no JSON object in output ({error})")
    repairs = []
    if start > 0:
        repairs.append("dropped leading prose")
    tail = _remove_trailing_commas(body[start:])
    if tail != body[start:]:
        repairs.append("removed trailing commas")
    try:
        value, end = limits.raw_decode(tail)
    except json.JSONDecodeError as exc:
        flow, message = _close_truncated(body[start:])
        if flow is not None:
            return ParsedFlow(flow, "truncated", message)
        return ParsedFlow(None, "invalid", f"{message}; JSON error: {exc.msg} at position {exc.pos}")
    if tail[end:].strip():
        repairs.append("dropped trailing prose")
    if not isinstance(value, dict):  # pragma: no cover - raw_decode from "{" always yields a dict
        return ParsedFlow(None, "invalid", "no JSON object in output")
    return ParsedFlow(value, "repaired", "; ".join(repairs))
