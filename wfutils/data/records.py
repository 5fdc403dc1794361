"""The row schema every corpus shares (synthetic, converted public corpora, a user's own JSONL).

``id`` (str), ``request`` (str), ``flow`` (compact JSON string, :func:`wfutils.flows.vocabulary.flow_text`),
``features`` (list[str], see :data:`wfutils.flows.vocabulary.FEATURE_TAGS`), ``domain`` (str).
"""

from __future__ import annotations

from typing import Any

import datasets
from datasets import Dataset

COLUMNS = ("id", "request", "flow", "features", "domain")
FEATURES = datasets.Features({
    "id": datasets.Value("string"),
    "request": datasets.Value("string"),
    "flow": datasets.Value("string"),
    "features": datasets.Sequence(datasets.Value("string")),
    "domain": datasets.Value("string"),
})


def rows_to_dataset(rows: list[dict[str, Any]]) -> Dataset:
    """A Dataset with the standard columns (and types, even when ``rows`` is empty)."""
    return Dataset.from_dict({c: [r[c] for r in rows] for c in COLUMNS}, features=FEATURES)
