"""Prices of hosted models (USD per 1M input / output tokens) and the cost of a call.

The table is the editable ``wfutils/llm/pricing.json``; local endpoints cost 0.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from importlib import resources
from pathlib import Path

#: The highest price per 1M tokens a table may state (a sanity bound: today's dearest models are below 1000).
MAX_PRICE_PER_1M = 100_000.0
#: The highest cost one example may have (USD); a trace saying more is damaged, not priced.
MAX_COST_PER_EXAMPLE_USD = 1000.0


@lru_cache(maxsize=8)
def load_prices(path: str | None = None) -> dict[str, dict[str, float]]:
    """Read the price table (USD per 1M input / output tokens) from ``path`` or the packaged file."""
    if path is None:
        text = resources.files("wfutils.llm").joinpath("pricing.json").read_text(encoding="utf-8")
        where = "wfutils/llm/pricing.json"
    else:
        text = Path(path).read_text(encoding="utf-8")
        where = str(path)
    try:
        models = json.loads(text)["models"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"price table {where} must be JSON with a 'models' object: {exc}") from None
    table: dict[str, dict[str, float]] = {}
    for name, entry in models.items():
        try:
            table[name] = {"input": float(entry["input"]), "output": float(entry["output"])}
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"price table {where}: model {name!r} needs numeric 'input' and 'output'") from None
        if not all(math.isfinite(v) and 0 <= v <= MAX_PRICE_PER_1M for v in table[name].values()):
            raise ValueError(f"price table {where}: model {name!r} has a price that is negative, not finite or above "
                             f"{MAX_PRICE_PER_1M:g} USD per 1M tokens: {table[name]}")
    return table


def prices_as_of(path: str | None = None) -> str | None:
    """When the price table's list prices were read (its ``as_of`` field), for quoting a cost with its date;
    None when the table does not say."""
    text = (resources.files("wfutils.llm").joinpath("pricing.json").read_text(encoding="utf-8") if path is None
            else Path(path).read_text(encoding="utf-8"))
    value = json.loads(text).get("as_of")
    return str(value) if value else None


def cost_usd(model: str, prompt_tokens: int, completion_tokens: int, *, local: bool = False,
             prices: str | None = None) -> float | None:
    """Cost of one call; 0 for local endpoints, None when the model is not in the price table.

    A model matches its exact entry, else the longest entry it starts with (dated model
    names such as ``gpt-4o-2024-08-06`` price as ``gpt-4o``; ``gpt-4o-mini`` as itself).
    """
    if local:
        return 0.0
    table = load_prices(prices)
    name = model.lower().split("/")[-1]
    entry = table.get(name)
    if entry is None:
        matches = [k for k in table if name.startswith(k)]
        entry = table[max(matches, key=len)] if matches else None
    if entry is None:
        return None
    return (prompt_tokens * entry["input"] + completion_tokens * entry["output"]) / 1e6
