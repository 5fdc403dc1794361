"""What one prediction cost, in USD, decided from the system's metadata and the prompting arm's traces.

In order:

1. the cost the prompting arm recorded for that example in ``llm/traces/<system>.jsonl``
   (the client prices each call when it makes it; 0 for a local endpoint);
2. 0 when the system ran locally (:func:`runs_locally`);
3. the list price of the model named in ``meta.base_model``
   (:func:`wfutils.llm.pricing.cost_usd`, table ``wfutils/llm/pricing.json``) times the tokens;
4. NaN when none of these is known (never a guessed 0).

The system's *name* plays no part. A traced cost that is not a finite number between 0 and
:data:`MAX_TRACED_COST_USD` (NaN, -5, 1e308, infinity, a string) is *unknown* (NaN, never the
list price) with a :class:`~wfutils.data.predictions.DataWarning` naming ``file:line``; so is a
trace line that cannot be read (reported the same way; a record glued onto a fragment by an old
writer is read from where it starts).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path

from wfutils.data.predictions import FINE_TUNED, DataWarning, SystemMeta
from wfutils.llm.pricing import MAX_COST_PER_EXAMPLE_USD, cost_usd

#: The largest cost one example may have in a trace (USD); above it the value is damaged, not a price.
MAX_TRACED_COST_USD = MAX_COST_PER_EXAMPLE_USD
_RECORD_START = '{"id": '


def runs_locally(meta: SystemMeta) -> bool | None:
    """Whether the system's model ran on this machine, from ``meta.engine.local`` (an engine wfbook ran, or a
    remote endpoint on this machine's loopback address: local; a hosted endpoint: not; unknown: None).
    No engine recorded: local for the fine-tuned arm (it runs its own model), unknown (None) for the prompted arm.
    """
    if meta.engine is not None:
        return meta.engine.local
    return True if meta.arm == FINE_TUNED else None


def valid_cost(value: object) -> bool:
    """True for a usable cost: a finite number (not a bool) between 0 and :data:`MAX_TRACED_COST_USD`."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and 0 <= value <= MAX_TRACED_COST_USD)


def _trace_record(line: str, where: str) -> dict | None:
    """One trace line as a dict; a fragment glued before a record (an old writer) is dropped with a warning."""
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, RecursionError):
        start = line.rfind(_RECORD_START)
        record = None
        if start > 0:
            try:
                record = json.loads(line[start:])
            except (json.JSONDecodeError, RecursionError):
                record = None
        if isinstance(record, dict):
            warnings.warn(f"{where}: a fragment of a record cut short is glued before this record; the fragment is "
                          "ignored", DataWarning, stacklevel=3)
            return record
        warnings.warn(f"{where}: unreadable trace line (a write cut short?); ignored (the example is priced "
                      "by the other rules)", DataWarning, stacklevel=3)
        return None
    if not isinstance(record, dict):
        warnings.warn(f"{where}: a trace line must be a JSON object; ignored", DataWarning, stacklevel=3)
        return None
    return record


def trace_costs(run_dir: str | os.PathLike[str], system: str) -> dict[str, float]:
    """Per-example ``cost_usd`` the prompting arm recorded in ``llm/traces/<system>.jsonl`` (empty if none).

    Only records of written predictions count, the last one per id. A recorded cost that is not
    :func:`valid_cost` (NaN, negative, infinite, absurdly large, not a number) gives NaN (unknown)
    for that example, with a :class:`~wfutils.data.predictions.DataWarning` naming ``file:line``;
    a recorded ``null`` (the model's price is not known) leaves the example to the other rules.
    """
    path = Path(run_dir) / "llm" / "traces" / f"{system}.jsonl"
    costs: dict[str, float] = {}
    if not path.is_file():
        return costs
    for number, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
        if not raw.strip():
            continue
        where = f"{path}:{number}"
        record = _trace_record(raw.decode("utf-8", errors="replace"), where)
        if record is None or not record.get("written", True) or record.get("id") is None:
            continue
        ident, cost = str(record["id"]), record.get("cost_usd")
        if cost is None:
            costs.pop(ident, None)
        elif valid_cost(cost):
            costs[ident] = float(cost)
        else:
            warnings.warn(f"{where}: cost_usd {cost!r} of {ident!r} is not a cost (a finite number from 0 to "
                          f"{MAX_TRACED_COST_USD:g} USD); that example's cost is unknown (NaN)", DataWarning,
                          stacklevel=2)
            costs[ident] = math.nan
    return costs


def prediction_cost(meta: SystemMeta, prompt_tokens: int, completion_tokens: int, *,
                    traced: float | None = None) -> float:
    """USD for one prediction (see the module docstring for the order of the rules); NaN when unknown."""
    if traced is not None:
        return float(traced)
    local = runs_locally(meta)
    if local:
        return 0.0
    price = cost_usd(meta.base_model, prompt_tokens, completion_tokens)
    return math.nan if price is None else float(price)
