"""The data stage's parameters (notebook 01) as a typed, validated dataclass."""

from __future__ import annotations

from dataclasses import dataclass, field

from wfutils.config import ConfigError, validate

__all__ = ["DataConfig"]


@dataclass
class DataConfig:
    """What notebook 01 builds: the synthetic corpus's sizes and seed, the other corpora and the training corpus.

    The defaults are notebook 01's; :func:`wfutils.data.store.build_all` takes these values.
    """

    seed: int = 0
    n_train: int = 2000
    n_validation: int = 100  # picks checkpoints and the best fine-tuned system; never reported as a result
    n_test: int = 300
    n_ood: int = 200
    corpora: list[str] = field(default_factory=lambda: ["n8n", "logic_apps"])  # converter names and/or .jsonl paths
    train_corpus: str = "synthetic"  # the corpus notebooks 02-03 train on
    split_sizes: dict[str, float] | None = None  # validation / test shares (0.1) or counts (50) of seed-split corpora
    max_flow_chars: int | None = None  # drop the corpora's pairs with longer flows (compact JSON), every split alike
    shared_data: str | None = None  # None: $WFBOOK_SHARED_DATA or <repo>/../shared/data

    def __post_init__(self) -> None:
        validate(self)
        negative = [f"{name} must be >= 0, got {getattr(self, name)!r}"
                    for name in ("n_train", "n_validation", "n_test", "n_ood") if getattr(self, name) < 0]
        if negative:
            raise ConfigError("DataConfig: " + "; ".join(negative))
        if self.max_flow_chars is not None and self.max_flow_chars < 1:
            raise ConfigError(f"DataConfig: max_flow_chars must be >= 1 or None, got {self.max_flow_chars!r}")
