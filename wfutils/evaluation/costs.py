"""What one prediction cost, in USD, decided from the system's metadata and the prompting arm's traces.

In order:

1. the cost the prompting arm recorded for that example in ``llm/traces/<system>.jsonl``
   (the client prices each call when it makes it; 0 for a local endpoint);
2. 0 when the system ran locally (:func:`runs_locally`);
3. the list price of the model named in ``meta.base_model``
   (:func:`wfutils.llm.pricing.cost_usd`, table ``wfutils/llm/pricing.json``) times the tokens;
4. NaN when none of these is known (never a guessed 0).

The system's *name* plays no part.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from urllib.parse import urlparse

from wfutils.data.predictions import SystemMeta
from wfutils.llm.pricing import cost_usd

#: Hosts of an endpoint on this machine (a call there costs nothing).
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "0.0.0.0"})
_URL_RE = re.compile(r"https?://[^\s)\]\"']+")


def runs_locally(meta: SystemMeta) -> bool | None:
    """Whether the system's model ran on this machine, from ``meta.engine``.

    * an engine naming an ``http(s)://`` endpoint: local when its host is this machine
      (:data:`LOCAL_HOSTS`), hosted otherwise;
    * an engine naming no endpoint (``transformers ...``, ``llama.cpp ...``): an in-process
      model, local;
    * no engine recorded: local for the fine-tuned arm (it runs its own model), unknown (None)
      for the prompted arm.
    """
    engine = (meta.engine or "").strip()
    match = _URL_RE.search(engine)
    if match:
        return (urlparse(match.group(0)).hostname or "") in LOCAL_HOSTS
    if engine:
        return True
    return True if meta.arm == "fine-tuned" else None


def trace_costs(run_dir: str | os.PathLike[str], system: str) -> dict[str, float]:
    """Per-example ``cost_usd`` the prompting arm recorded in ``llm/traces/<system>.jsonl`` (empty if none)."""
    path = Path(run_dir) / "llm" / "traces" / f"{system}.jsonl"
    costs: dict[str, float] = {}
    if not path.is_file():
        return costs
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a kill; the predictions file is the source of truth
        cost = record.get("cost_usd") if isinstance(record, dict) else None
        if isinstance(cost, (int, float)) and not isinstance(cost, bool) and record.get("written", True):
            costs[str(record.get("id"))] = float(cost)
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
