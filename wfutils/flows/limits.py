"""Caps that bound what any model output can cost: no output crashes or stalls a run (issue 13).

Model text is untrusted. Every entry point of :mod:`wfutils.flows` (and the prediction, scoring
and taxonomy code built on it) checks these caps before doing work whose cost could grow faster
than the text itself (recursion, tree construction, the tree edit distance). A flow beyond a cap
is not analysed further and is scored the way the published metric scores a failure:

* :func:`wfutils.flows.parsing.parse_flow`: no flow, parse status ``too_large`` or ``too_deep``
  (the message names the cap);
* :mod:`wfutils.flows.flowsim`: FlowSim 0 and an empty edit script, the tree being a
  :class:`~wfutils.flows.flowsim.TreeError` whose ``reason`` is ``too_large`` / ``too_deep``;
  ``trigger_match`` False and ``component_match`` as for output that is not a flow;
* :func:`wfutils.flows.schema.validate_flow`: one error naming the cap.

Below the caps nothing changes: FlowSim equals the plain Zhang-Shasha reference
(:func:`wfutils.flows.flowsim.reference_flow_similarity`) exactly. The reference itself stays
uncapped (it is the faithful replica of the published code, for cross-checks only).

The values leave a wide margin over the data. The largest reference flow of the corpora (n8n)
has 25 KB of JSON, 5 levels of JSON nesting, 107 components, integers of 4 digits, and a FlowSim
tree (with inputs) of 461 nodes, depth 12 and Zhang-Shasha work 2,485; synthetic flows are
under 2 KB and 62 nodes. A completion of 16k tokens is about 64 KB of text.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

#: Characters of a flow's JSON text: raw model text as given (before a fenced block is cut out),
#: a flow given as a dict by its compact JSON form. 8x the largest reference flow; parsing and
#: repairing text is linear in it.
MAX_FLOW_CHARS = 200_000
#: JSON nesting depth (containers: ``{"a": [1]}`` has depth 2; flows have 5). Measured on the text
#: before it is decoded, so that no decoder, encoder or ``repr`` ever recurses deeper.
MAX_JSON_DEPTH = 64
#: Digits of a JSON integer: Python's default int/str conversion limit, fixed here so that the
#: result never depends on the interpreter's setting.
MAX_INT_DIGITS = 4_300
#: Components of one flow (about 10x the largest reference flow). Bounds schema validation and the
#: tree construction where orders are not all numbers (each distinct order scans every component).
MAX_COMPONENTS = 1_000
#: Nodes of a flow's FlowSim tree. Repeated ``order`` numbers under ``block`` chains duplicate
#: subtrees (the tree of ``k`` levels of two components each has ``2**k`` nodes); construction stops
#: as soon as the count passes the cap. The distance's memory is quadratic in it.
MAX_TREE_NODES = 2_500
#: Depth of a FlowSim tree (nodes on the longest root-to-leaf path; flows have at most 12). Bounds
#: recursion: component nesting (``block`` chains) and the operator chains of long encoded queries.
MAX_TREE_DEPTH = 100
#: Zhang-Shasha work of one tree: the summed sizes of its keyroot subtrees. Computing the distance
#: (or the edit script) of two trees costs the product of their works, whatever their shapes: at
#: most 1e8 cells below the caps, about a second (the largest reference flow has work 2,485).
MAX_TREE_WORK = 10_000

#: Statuses that name a cap (parse statuses and :class:`LimitExceeded.status`).
LIMIT_STATUSES = ("too_large", "too_deep")

_INT_BOUND = 10 ** MAX_INT_DIGITS
# A JSON string token (or an unterminated one, which runs to the end of the text): always matches
# from a quote, so the scan stays linear.
_STRING_RE = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKET_RE = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


class LimitExceeded(ValueError):
    """A value is beyond one of the caps; ``status`` is ``too_large`` or ``too_deep``, ``cap`` the constant's name."""

    def __init__(self, status: str, cap: str, detail: str) -> None:
        super().__init__(f"{status}: {detail} ({cap})")
        self.status = status
        self.cap = cap


def _too_large(cap: str, detail: str) -> LimitExceeded:
    return LimitExceeded("too_large", cap, detail)


def _too_deep(cap: str, detail: str) -> LimitExceeded:
    return LimitExceeded("too_deep", cap, detail)


# --------------------------------------------------------------------------- text

def check_text(text: str) -> None:
    """Raise :class:`LimitExceeded` when raw text is longer than :data:`MAX_FLOW_CHARS`."""
    if len(text) > MAX_FLOW_CHARS:
        raise _too_large("MAX_FLOW_CHARS", f"the output has {len(text):,} characters, more than {MAX_FLOW_CHARS:,}")


def json_text_depth(text: str) -> int:
    """Deepest bracket nesting of ``text`` outside JSON strings (an upper bound of what a decoder recurses into)."""
    if text.count("[") + text.count("{") == 0:
        return 0
    brackets = _NOT_BRACKET_RE.sub("", _STRING_RE.sub("", text))
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def _check_text_depth(text: str) -> None:
    if text.count("[") + text.count("{") > MAX_JSON_DEPTH:
        depth = json_text_depth(text)
        if depth > MAX_JSON_DEPTH:
            raise _too_deep("MAX_JSON_DEPTH", f"the JSON is nested {depth} levels deep, more than {MAX_JSON_DEPTH}")


def _parse_int(digits: str) -> int:
    if len(digits) - digits.startswith("-") > MAX_INT_DIGITS:
        raise _too_large("MAX_INT_DIGITS", f"an integer has {len(digits):,} digits, more than {MAX_INT_DIGITS:,}")
    try:
        return int(digits)
    except ValueError:  # the interpreter's own limit is lower than ours
        raise _too_large("MAX_INT_DIGITS", f"an integer has {len(digits):,} digits, more than this "
                                           "interpreter converts") from None


_DECODER = json.JSONDecoder(parse_int=_parse_int)


def loads(text: str) -> Any:
    """``json.loads(text)`` within the caps: the same value or the same JSONDecodeError, else :class:`LimitExceeded`.

    The text's length is not checked here (see :func:`check_text`); its nesting and integers are.
    """
    _check_text_depth(text)
    if text.startswith("\ufeff"):  # as json.loads does
        raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    try:
        return _DECODER.decode(text)
    except RecursionError:  # only when called near the interpreter's recursion limit
        raise _too_deep("MAX_JSON_DEPTH", "the JSON is nested too deeply to decode") from None


def raw_decode(text: str) -> tuple[Any, int]:
    """``json.JSONDecoder().raw_decode(text)`` within the caps (see :func:`loads`)."""
    _check_text_depth(text)
    try:
        return _DECODER.raw_decode(text)
    except RecursionError:
        raise _too_deep("MAX_JSON_DEPTH", "the JSON is nested too deeply to decode") from None


# --------------------------------------------------------------------------- decoded values

_CONTAINERS = (dict, list, tuple)
_PLAIN = frozenset({str, float, bool, type(None)})


def _children(container: Any) -> Any:
    return container.values() if isinstance(container, dict) else container


def _big_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and (value >= _INT_BOUND or value <= -_INT_BOUND)


def _structure_problem(value: Any) -> LimitExceeded | None:
    """Depth (cycles count as too deep) and integer size of a decoded value; iterative, each container once."""
    if not isinstance(value, _CONTAINERS):
        return _too_large("MAX_INT_DIGITS", f"an integer has more than {MAX_INT_DIGITS:,} digits") if _big_int(value) else None
    heights: dict[int, int] = {}
    on_path = {id(value)}
    stack: list[list[Any]] = [[value, iter(_children(value)), 0]]
    while stack:
        frame = stack[-1]
        for child in frame[1]:
            if type(child) in _PLAIN:
                continue
            if isinstance(child, _CONTAINERS):
                height = heights.get(id(child))
                if height is not None:  # shared (only in values built in Python)
                    if len(stack) + height > MAX_JSON_DEPTH:
                        break
                    frame[2] = max(frame[2], height)
                    continue
                if id(child) in on_path or len(stack) >= MAX_JSON_DEPTH:
                    break
                on_path.add(id(child))
                stack.append([child, iter(_children(child)), 0])
                break
            if _big_int(child):
                return _too_large("MAX_INT_DIGITS", f"an integer has more than {MAX_INT_DIGITS:,} digits")
        else:
            stack.pop()
            on_path.discard(id(frame[0]))
            heights[id(frame[0])] = frame[2] + 1
            if stack:
                stack[-1][2] = max(stack[-1][2], frame[2] + 1)
            continue
        if stack[-1] is frame:  # left the loop on a depth problem
            return _too_deep("MAX_JSON_DEPTH", f"the flow is nested more than {MAX_JSON_DEPTH} levels deep "
                                               "(or contains itself)")
    return None


def json_size(value: Any) -> int | None:
    """Characters of the compact JSON form of a value whose structure is within the caps (None if not JSON)."""
    try:
        return len(json.dumps(value, ensure_ascii=False, separators=(",", ":"), skipkeys=True,
                              default=lambda _: None))
    except (TypeError, ValueError, RecursionError):
        return None


def value_problem(value: Any, *, size: bool = True) -> LimitExceeded | None:
    """The cap a decoded value (a flow dict, say) is beyond, or None.

    Checks JSON depth (a value that contains itself counts as too deep), integer digits (of the
    values; keys of a Python dict are not inspected) and, with ``size``, the characters of its
    compact JSON form. Never raises; linear in the value.
    """
    problem = _structure_problem(value)
    if problem is None and size and isinstance(value, (dict, list, tuple)):
        chars = json_size(value)
        if chars is not None and chars > MAX_FLOW_CHARS:
            problem = _too_large("MAX_FLOW_CHARS", f"the flow's JSON has {chars:,} characters, more than "
                                                   f"{MAX_FLOW_CHARS:,}")
    return problem


def check_value(value: Any, *, size: bool = True) -> None:
    """Raise the :class:`LimitExceeded` of :func:`value_problem`, if any."""
    problem = value_problem(value, size=size)
    if problem is not None:
        raise problem


def within_limits(value: Any) -> bool:
    """True when :func:`value_problem` finds nothing."""
    return value_problem(value) is None
