"""What makes two fine-tunings seeds of one recipe: the same training settings but the seed, on as many pairs of
one corpus.

A digest of the recipe is kept in each fine-tuned system's metadata (:func:`record_recipe`), so every stage
(the headline's choice of fine-tuned system, the seed spread) recognises another seed of a training without
reading names.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

__all__ = ["NOT_RECIPE", "record_recipe", "record_seed", "training_recipe"]

#: Training settings that leave the trained adapter as it is (or that a seed spread varies): not part of a recipe.
NOT_RECIPE = ("seed", "keep_steps", "checkpoint_every", "num_threads")


def training_recipe(config: Mapping[str, Any], training_set: int, checkpoint_step: int | None = None, *,
                    train_corpus: str = "synthetic") -> str:
    """A digest of a fine-tuning's recipe without its seed: the training configuration (checkpoint selection
    included), the corpus and size of the training set and, for a learning-curve point, its checkpoint's step.
    Systems with equal recipes and different seeds are what a seed spread compares."""
    kept = {k: v for k, v in config.items() if k not in NOT_RECIPE}
    blob = json.dumps({"config": kept, "training_set": training_set, "checkpoint": checkpoint_step,
                       "train_corpus": train_corpus}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def record_recipe(record: Mapping[str, Any], checkpoint_step: int | None = None, *,
                  train_corpus: str = "synthetic") -> str | None:
    """:func:`training_recipe` of a training record (``wfutils.slm.training``'s ``training_record.json``) on
    ``train_corpus``; None when the record lacks its configuration or its number of training pairs."""
    config, n_examples = record.get("config"), record.get("n_examples")
    if not isinstance(config, Mapping) or not isinstance(n_examples, int) or isinstance(n_examples, bool):
        return None
    return training_recipe(config, n_examples, checkpoint_step, train_corpus=train_corpus)


def record_seed(record: Mapping[str, Any]) -> int | None:
    """The training seed a record names, or None."""
    seed = (record.get("config") or {}).get("seed")
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else None
