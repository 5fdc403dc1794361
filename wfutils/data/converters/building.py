"""Helpers shared by the converters: building components, naming definitions, shortening values.

A converter builds a flow dict (SPEC section 2) and leaves checking it to the framework
(:func:`wfutils.data.corpora.load_corpus`), so these helpers only make building one easy:

>>> comps = Components()
>>> loop = comps.add("FOREACH", [("items", "{{1.records}}")], None, category="flowlogic")
>>> comps.add(snake("sendEmail"), [("to", "{{2.item.email}}")], loop)
2
>>> [c["definition"] for c in comps.items]
['FOREACH', 'send_email']
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["MAX_EXTRA_INPUTS", "MAX_VALUE_CHARS", "Components", "Skipped", "short", "snake"]

#: Input values longer than this are cut (``...``): templates embed whole scripts and prompts.
MAX_VALUE_CHARS = 120
#: How many further parameters of a step become inputs besides the ones a converter names.
MAX_EXTRA_INPUTS = 3
#: What a converter could not use: ``(path, reason)`` pairs, appended to as it goes.
Skipped = list[tuple[str, str]]


def snake(name: str) -> str:
    """``googleSheets`` -> ``google_sheets``, ``ParseDocument`` -> ``parse_document``."""
    name = re.sub(r"[^0-9A-Za-z]+", "_", name)
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    return re.sub(r"_+", "_", name).strip("_").lower() or "unknown"


def short(value: Any) -> str | int | float | bool | None:
    """An input value: scalars unchanged, anything else as compact one-line text of at most :data:`MAX_VALUE_CHARS`."""
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    text = " ".join(text.split())
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 3] + "..."


class Components:
    """The flat ``components`` list of a flow, built in order (``order`` = position, ``block`` = parent's order).

    The one component builder of the package: the converters use it, and so does the synthetic
    generator (:class:`wfutils.data.synthetic.FlowBuilder`, which checks each step against the
    catalogue first). ``shorten`` cuts input values with :func:`short` (converted corpora embed
    whole scripts); the synthetic generator writes its values as they are.
    """

    def __init__(self, *, shorten: bool = True) -> None:
        self.items: list[dict[str, Any]] = []
        self.shorten = shorten

    @property
    def next_order(self) -> int:
        return len(self.items) + 1

    def add(self, definition: str, inputs: list[tuple[str, Any]], block: int | None, *, category: str = "action",
            scope: str | None = "global") -> int:
        """Append a component and return its ``order`` (pass it as ``block`` to nest steps inside it)."""
        order = self.next_order
        comp: dict[str, Any] = {"order": order}
        if block is not None:
            comp["block"] = block
        comp["category"] = category
        comp["definition"] = definition
        if category != "flowlogic" and scope:
            comp["scope"] = scope
        comp["inputs"] = [{"name": n, "value": short(v) if self.shorten else v} for n, v in inputs]
        self.items.append(comp)
        return order


# the names the converters were first written with
_short = short
_Components = Components
