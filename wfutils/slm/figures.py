"""The fine-tuned arm's figure: the training loss curve and, when measured, the validation curves."""

from __future__ import annotations

from typing import Any, Mapping

__all__ = ["training_figure"]


def training_figure(record: Mapping[str, Any], title: str) -> Any:
    """Loss per optimizer step (and its mean of 10), the validation loss, and beside it the greedy FlowSim and
    parse rate of the validation requests with the kept checkpoint, from a training record."""
    import matplotlib.pyplot as plt
    import pandas as pd

    curve = pd.DataFrame(record["loss_curve"])
    validation = pd.DataFrame(record.get("validation_curve") or [], columns=["step", "loss", "flowsim", "parsed"])
    has_flowsim = bool(validation["flowsim"].notna().any())
    fig, axes = plt.subplots(1, 2 if has_flowsim else 1, figsize=(11 if has_flowsim else 7, 3.5), squeeze=False)
    ax = axes[0][0]
    ax.plot(curve["step"], curve["loss"], alpha=0.4, label="step")
    ax.plot(curve["step"], curve["loss"].rolling(10, min_periods=1).mean(), label="mean of 10")
    if validation["loss"].notna().any():
        ax.plot(validation["step"], validation["loss"], "o-", label=f"validation ({record['n_validation_examples']} pairs)")
    ax.set(xlabel="optimizer step", ylabel="loss (flow tokens)", title=title)
    ax.legend()
    if has_flowsim:
        ax = axes[0][1]
        ax.plot(validation["step"], validation["flowsim"], "o-", label="FlowSim")
        ax.plot(validation["step"], validation["parsed"], "s--", alpha=0.6, label="parsed")
        if record.get("best_step"):
            ax.axvline(record["best_step"], color="grey", linestyle=":", label=f"kept: step {record['best_step']}")
        ax.set(xlabel="optimizer step", ylim=(0, 1.02),
               title=f"Greedy answers to {record['n_flowsim_requests']} validation requests")
        ax.legend()
    fig.tight_layout()
    return fig
