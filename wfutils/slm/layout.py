"""Where a fine-tuning lives in a run folder: one home for the folder names notebook 02 and its readers share."""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["ADAPTER_DIR", "CHECKPOINT_DIR", "CURVE_DIR", "FINETUNING_DIR", "finetuning_dir"]

FINETUNING_DIR = "slm"
ADAPTER_DIR = "adapter"
CHECKPOINT_DIR = "checkpoints"
CURVE_DIR = "curve"  # learning-curve adapters kept from a run's checkpoints: curve/step-<N>/
_SYSTEM_FOLDER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def finetuning_dir(run_dir: str | os.PathLike[str], system: str | None = None) -> Path:
    """Where notebook 02 keeps a fine-tuning of the run: ``<run>/slm`` for the default system (``system``
    None), ``<run>/slm/<system>`` for a system named in the parameter ``system`` (another seed of the same
    recipe, say), so that two trainings in one run never share an adapter or a checkpoint."""
    if system is None:
        return Path(run_dir) / FINETUNING_DIR
    if not isinstance(system, str) or not _SYSTEM_FOLDER.match(system) or system in (ADAPTER_DIR, CHECKPOINT_DIR,
                                                                                      CURVE_DIR):
        raise ValueError(f"system {system!r} cannot name a folder under {FINETUNING_DIR}/: use letters, digits, "
                         f"'.', '_' and '-' (not {ADAPTER_DIR!r}, {CHECKPOINT_DIR!r} or {CURVE_DIR!r})")
    return Path(run_dir) / FINETUNING_DIR / system
