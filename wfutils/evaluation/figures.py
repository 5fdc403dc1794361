"""The evaluation's figures, built from the tables of :mod:`wfutils.evaluation.statistics` and
:mod:`wfutils.evaluation.tables`.

Each function returns a matplotlib figure (None when its table is empty) drawn with pyplot, so a
notebook shows it inline and saves it with :func:`wfutils.evaluation.store.save_figure` under the
name the book uses (the function's name). Arms come from the tables' ``arm`` column, never from
system names.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from wfutils.data.predictions import FINE_TUNED
from wfutils.evaluation.tables import QUALITY

WITH_INPUTS, NO_INPUTS = QUALITY, "flowsim_no_inputs"
LABELS = {WITH_INPUTS: "FlowSim with inputs", NO_INPUTS: "FlowSim without inputs"}


def _plt():  # pyplot only when a figure is drawn: importing the package never picks a backend
    import matplotlib.pyplot as plt

    return plt


def _sns():
    import seaborn as sns

    return sns


def _unlabel(ax) -> None:
    ax.set_xlabel("")
    ax.set_ylabel("")


def flowsim_per_system(summary: pd.DataFrame) -> Figure | None:
    """Mean FlowSim with and without inputs per system and evaluation set, with 95% CIs (fine-tuned systems first).

    ``summary``: :func:`wfutils.evaluation.statistics.summary_all_metrics` (with the ``arm`` column).
    """
    fs = summary[summary.metric.isin([WITH_INPUTS, NO_INPUTS])].copy()
    if fs.empty:
        return None
    fs["err_low"] = fs["mean"] - fs["ci_low"]
    fs["err_high"] = fs["ci_high"] - fs["mean"]
    subsets = list(dict.fromkeys(fs["subset"]))
    arm_of = fs.drop_duplicates("system").set_index("system")["arm"]
    order = sorted(arm_of.index, key=lambda s: (arm_of[s] != FINE_TUNED, s))
    fig, axes = _plt().subplots(1, len(subsets), figsize=(4.5 * len(subsets) + 3, 0.45 * len(order) + 2.2),
                                sharey=True, squeeze=False)
    for ax, subset in zip(axes[0], subsets):
        part = fs[fs.subset == subset]
        for k, (metric, color) in enumerate(((WITH_INPUTS, "C0"), (NO_INPUTS, "C1"))):
            sub = part[part.metric == metric].set_index("system").reindex(order)
            y = np.arange(len(order)) + (k - 0.5) * 0.38
            ax.barh(y, sub["mean"], height=0.38, color=color, label=LABELS[metric],
                    xerr=[sub["err_low"], sub["err_high"]], error_kw={"elinewidth": 1, "capsize": 2})
        ax.set_yticks(np.arange(len(order)), [f"{s} ({arm_of[s]})" for s in order])
        ax.set_xlim(0, 1)
        ax.set_title(subset)
        ax.set_xlabel("mean FlowSim (95% CI)")
    axes[0][0].invert_yaxis()
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=2, bbox_to_anchor=(0.5, 1.06), fontsize="small")
    fig.tight_layout()
    return fig


def paired_differences(paired: pd.DataFrame) -> Figure | None:
    """Fine-tuned minus prompted per pair of systems and evaluation set, with 95% CIs.

    ``paired``: :func:`wfutils.evaluation.statistics.paired_comparisons`.
    """
    if paired.empty:
        return None
    plot = paired.reset_index(drop=True)
    fig, ax = _plt().subplots(figsize=(7, 0.35 * len(plot) + 1.5))
    for k, subset in enumerate(dict.fromkeys(plot["subset"])):
        part = plot[plot["subset"] == subset]
        ax.errorbar(part["diff"], part.index, xerr=[part["diff"] - part["diff_low"], part["diff_high"] - part["diff"]],
                    fmt="o", capsize=3, color=f"C{k}", label=subset)
    ax.set_yticks(np.arange(len(plot)), [f"{r.fine_tuned} - {r.prompted}" for r in plot.itertuples()],
                  fontsize="small")
    ax.invert_yaxis()
    ax.axvline(0, color="grey", lw=1)
    ax.set_xlabel("FlowSim with inputs, fine-tuned minus prompted (95% CI)")
    ax.legend(title="subset", fontsize="small", loc="best")
    fig.tight_layout()
    return fig


def flowsim_per_feature(by_feature: pd.DataFrame) -> Figure | None:
    """Heat map of mean FlowSim with inputs per system and feature tag (each tag with its number of examples).

    ``by_feature``: :func:`wfutils.evaluation.statistics.feature_summary`.
    """
    if by_feature.empty:
        return None
    grid = by_feature.pivot_table(index="system", columns="feature", values="mean", observed=True)
    counts = by_feature.groupby("feature")["n"].max()
    grid.columns = [f"{c}\n(n={counts[c]})" for c in grid.columns]
    fig, ax = _plt().subplots(figsize=(1.0 * grid.shape[1] + 3, 0.5 * grid.shape[0] + 2))
    _sns().heatmap(grid, annot=True, fmt=".2f", vmin=0, vmax=1, cmap="viridis", ax=ax,
                   cbar_kws={"label": "mean FlowSim with inputs"})
    _unlabel(ax)
    fig.tight_layout()
    return fig


def quality_cost_latency(costs: pd.DataFrame) -> Figure:
    """Mean FlowSim with inputs against seconds and dollars per flow, by arm, Pareto-front systems marked.

    ``costs``: :func:`wfutils.evaluation.tables.cost_table` with a ``pareto`` column.
    """
    fig, axes = _plt().subplots(1, 2, figsize=(11, 4))
    for ax, x, label in ((axes[0], "seconds_per_flow", "seconds per flow"),
                         (axes[1], "usd_per_1000_flows", "USD per 1,000 flows")):
        _sns().scatterplot(data=costs, x=x, y=WITH_INPUTS, hue="arm", style="pareto", s=90, ax=ax)
        for row in costs.itertuples():
            if np.isfinite(getattr(row, x)):
                ax.annotate(row.system, (getattr(row, x), getattr(row, WITH_INPUTS)), fontsize="x-small",
                            xytext=(4, 3), textcoords="offset points")
        ax.set_xlabel(label)
        ax.set_ylabel("mean FlowSim with inputs")
    fig.tight_layout()
    return fig


def error_rates(rates: pd.DataFrame, arms: Mapping[str, str]) -> Figure | None:
    """Heat map of the share of each system's examples per error tag (:func:`wfutils.evaluation.tables.error_rates`)."""
    if rates.empty:
        return None
    fig, ax = _plt().subplots(figsize=(0.8 * rates.shape[1] + 3, 0.5 * rates.shape[0] + 2))
    _sns().heatmap(rates.rename(index=lambda s: f"{s} ({arms[s]})"), annot=True, fmt=".2f", vmin=0, vmax=1,
                   cmap="rocket_r", ax=ax, cbar_kws={"label": "share of examples"})
    _unlabel(ax)
    fig.tight_layout()
    return fig


def error_rates_per_feature(by_feature: pd.DataFrame) -> Figure | None:
    """One heat map per arm: share of examples per feature tag and error tag
    (:func:`wfutils.evaluation.tables.error_rates_by_feature`)."""
    if by_feature.empty:
        return None
    arms = list(dict.fromkeys(by_feature.index.get_level_values(0)))
    fig, axes = _plt().subplots(1, len(arms), figsize=(8 * len(arms),
                                                       0.45 * by_feature.index.get_level_values(1).nunique() + 2.5),
                                squeeze=False)
    for ax, arm in zip(axes[0], arms):
        _sns().heatmap(by_feature.loc[arm], annot=True, fmt=".2f", vmin=0, vmax=1, cmap="rocket_r", ax=ax, cbar=False)
        ax.set_title(arm)
        _unlabel(ax)
    fig.tight_layout()
    return fig


def wins_losses(diff: pd.Series, first: str, second: str) -> Figure | None:
    """Histogram of the per-example difference ``first`` minus ``second`` (:func:`wfutils.evaluation.tables.head_to_head`)."""
    if diff.empty:
        return None
    fig, ax = _plt().subplots(figsize=(7, 3))
    _sns().histplot(diff, bins=min(40, max(5, len(diff) // 5)), ax=ax)
    ax.axvline(0, color="grey", lw=1)
    ax.set_xlabel(f"FlowSim with inputs, {first} - {second}")
    fig.tight_layout()
    return fig


def implicit_steps(implicit: pd.DataFrame) -> Figure | None:
    """Share of examples with a missing step per system, implicit-step examples against the others
    (:func:`wfutils.evaluation.tables.implicit_step_table`)."""
    if implicit.empty:
        return None
    fig, ax = _plt().subplots(figsize=(7, 0.5 * implicit.system.nunique() + 2))
    _sns().barplot(data=implicit, y="system", x="missing_step_rate", hue="examples", ax=ax)
    ax.set_xlabel("share of examples with a missing step")
    fig.tight_layout()
    return fig


def cumulative_cost(payback: pd.DataFrame) -> Figure | None:
    """Cumulative cost against requests served (log-log), each fine-tuned model's line starting at its one-off
    cost, one line per prompted system, the payback volumes marked; one panel per unit (CPU-seconds, USD).

    ``payback``: :func:`wfutils.evaluation.decision.payback_table`; None when no row was measurable.
    """
    known = payback[np.isfinite(payback["one_off"].astype(float))]
    if known.empty:
        return None
    units = list(dict.fromkeys(known["unit"]))
    finite = known["payback_requests"][np.isfinite(known["payback_requests"].astype(float))]
    top = max(1e6, 10 * float(finite.max())) if len(finite) else 1e6
    bottom = min(1.0, 0.5 * float(finite.min())) if len(finite) else 1.0
    requests = np.logspace(np.log10(max(bottom, 1e-3)), np.log10(top), 200)
    fig, axes = _plt().subplots(1, len(units), figsize=(6.5 * len(units), 4.2), squeeze=False)
    for ax, unit in zip(axes[0], units):
        part = known[known["unit"] == unit]
        tuned = part.drop_duplicates("fine_tuned")
        for k, row in enumerate(tuned.itertuples()):
            ax.plot(requests, row.one_off + requests * row.per_request_fine_tuned, color=f"C{k}", lw=2.5,
                    label=f"{row.fine_tuned} (fine-tuned, one-off included)")
        for k, row in enumerate(part.drop_duplicates("prompted").itertuples(), start=len(tuned)):
            ax.plot(requests, requests * row.per_request_prompted, color=f"C{k}", ls="--",
                    label=f"{row.prompted} (prompted)")
        for row in part.itertuples():
            if np.isfinite(row.payback_requests):
                ax.plot([row.payback_requests], [row.payback_requests * row.per_request_prompted], "ko", ms=5)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("requests served")
        ax.set_ylabel(f"cumulative cost ({unit})")
        ax.legend(fontsize="x-small", loc="upper left")
    fig.tight_layout()
    return fig


def validity_beside_quality(validity: pd.DataFrame) -> Figure | None:
    """Per system: FlowSim with inputs, JSON-parse rate and schema-valid rate with their 95% intervals
    (``validity``: :func:`wfutils.evaluation.decision.validity_table`)."""
    if validity.empty:
        return None
    labels = {WITH_INPUTS: "FlowSim with inputs", "json_valid": "valid JSON", "schema_valid": "valid schema"}
    order = sorted(validity.index, key=lambda s: (validity.loc[s, "arm"] != "fine-tuned", s))
    fig, ax = _plt().subplots(figsize=(8, 0.6 * len(order) + 1.8))
    y = np.arange(len(order))
    for k, metric in enumerate(labels):
        part = validity.reindex(order)
        ax.barh(y + (k - 1) * 0.27, part[metric], height=0.27, color=f"C{k}", label=labels[metric],
                xerr=[part[metric] - part[f"{metric}_low"], part[f"{metric}_high"] - part[metric]],
                error_kw={"elinewidth": 1, "capsize": 2})
    ax.set_yticks(y, [f"{s} ({validity.loc[s, 'arm']})" for s in order])
    ax.invert_yaxis()
    ax.set_xlim(0, 1.02)
    ax.set_xlabel("mean or share of answers (95% CI)")
    ax.legend(fontsize="small", loc="lower right")
    fig.tight_layout()
    return fig


def break_even(curve: pd.DataFrame, levels: pd.DataFrame) -> Figure | None:
    """The fine-tuned model's FlowSim with inputs against the labelled pairs it was trained on (95% intervals,
    one line per base model), the prompted systems' levels as bands (their 95% intervals).

    ``curve``: :func:`wfutils.evaluation.decision.learning_curve`; ``levels``:
    :func:`~wfutils.evaluation.decision.prompted_levels`.
    """
    if curve.empty:
        return None
    fig, ax = _plt().subplots(figsize=(8, 4.5))
    for k, row in enumerate(levels.itertuples(), start=len(curve["base_model"].unique())):
        ax.axhspan(row.ci_low, row.ci_high, color=f"C{k}", alpha=0.15)
        ax.axhline(row.mean, color=f"C{k}", lw=1, ls="--", label=f"{row.system} (prompted)")
    for k, (base, part) in enumerate(curve.groupby("base_model", sort=True)):
        part = part.sort_values("pairs")
        ax.errorbar(part["pairs"], part["mean"], yerr=[part["mean"] - part["ci_low"], part["ci_high"] - part["mean"]],
                    fmt="o-", capsize=3, color=f"C{k}", label=f"{base} fine-tuned")
    ax.set_xscale("log")
    pairs = sorted(curve["pairs"].unique())
    ax.set_xticks(pairs, [f"{p:,}" for p in pairs])
    ax.minorticks_off()
    ax.set_xlabel("labelled pairs the fine-tuning saw")
    ax.set_ylabel("mean FlowSim with inputs (95% CI)")
    ax.legend(fontsize="x-small", loc="best")
    fig.tight_layout()
    return fig


__all__ = ["break_even", "cumulative_cost", "error_rates", "error_rates_per_feature", "flowsim_per_feature",
           "flowsim_per_system", "implicit_steps", "paired_differences", "quality_cost_latency",
           "validity_beside_quality", "wins_losses"]
