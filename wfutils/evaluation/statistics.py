"""Statistics for the evaluation: bootstrap CIs, paired tests, relative improvement.

Where SciPy does the job, SciPy does it: :func:`mean_ci` and :func:`paired_comparison` call
``scipy.stats.bootstrap`` (BCa intervals, which suit a bounded, skewed score like FlowSim better
than percentile intervals; paired resampling for two systems) and ``scipy.stats.permutation_test``
(sign flips of the paired differences). The statistics over several systems at once -- the
average relative improvement over the prompted systems, the subgroup gain (resampled within each
group) and the oracle-retrieval claims -- resample all systems jointly with count matrices
(:func:`bootstrap_means`): a replicate of n examples is a row of multinomial counts, so the means
of every replicate and every system are one matrix product ``counts @ values / n``, and their
intervals are percentile intervals (BCa needs the statistic on every replicate, and these skip
systems whose replicate mean is 0, or resample within strata, which ``scipy.stats.bootstrap`` does not).

Definitions used throughout (stated once here, referenced by the notebooks and the claims):

* Arms: which system is fine-tuned and which is prompted comes from the ``arm`` column the
  scores carry (each system's :class:`~wfutils.data.predictions.SystemMeta`), never from names.

* CI: two-sided ``1 - alpha`` (default 95%) from ``n_boot`` bootstrap replicates; BCa for one
  system or one pair. Where every replicate gives the same value (constant scores, one example)
  the interval is that value (zero width); where BCa is undefined otherwise (a replicate with
  mean 0 under a relative improvement) it is NaN. NaN scores are an error: callers drop what a
  system did not predict.
* Paired difference: per example ``a_i - b_i`` on the ids both systems predicted; p-values from
  a paired bootstrap (null-centred) and from a sign-flip permutation test (NaN for one example).
* Relative improvement of the fine-tuned model over prompting, as the paper states its "10% on
  average": for each prompted system L, ``100 * (mean_fine_tuned - mean_L) / mean_L`` on the examples
  both predicted; the headline is the plain mean of these percentages over the prompted
  systems (:func:`average_relative_improvement`), its CI from the same bootstrap replicates.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from wfutils.data.predictions import FINE_TUNED, PROMPTED
from wfutils.evaluation.result import has_meta, meta_of

DEFAULT_BOOT = 2000
_CHUNK_CELLS = 4_000_000  # float64 cells per count-matrix chunk (32 MB)


@dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap confidence interval."""

    estimate: float
    low: float
    high: float
    n: int

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def resample_counts(n: int, n_boot: int, seed: int | np.random.Generator | None = 0,
                    chunk: int | None = None) -> Iterator[np.ndarray]:
    """Yield (rows, n) float matrices of bootstrap counts (each row sums to n), ``n_boot`` rows in all."""
    if n < 1:
        raise ValueError("cannot resample an empty sample")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    rng = _rng(seed)
    chunk = chunk or max(1, min(n_boot, _CHUNK_CELLS // n))
    done = 0
    while done < n_boot:
        rows = min(chunk, n_boot - done)
        idx = rng.integers(0, n, size=(rows, n))
        idx += (np.arange(rows) * n)[:, None]
        yield np.bincount(idx.ravel(), minlength=rows * n).reshape(rows, n).astype(np.float64)
        done += rows


_COUNTS_CACHE: dict[tuple[int, int, int], np.ndarray] = {}
_CACHE_LIMIT = 6  # count matrices kept (each at most _CHUNK_CELLS cells)


def _cached_counts(n: int, n_boot: int, seed: int | np.random.Generator | None) -> list[np.ndarray]:
    """Count matrices for (n, n_boot, seed); small ones are cached, so every system of a subset
    resampled with the same integer seed gets the same replicates (paired) without regenerating them."""
    if not isinstance(seed, (int, np.integer)) or n * n_boot > _CHUNK_CELLS:
        return list(resample_counts(n, n_boot, seed))
    key = (n, n_boot, int(seed))
    found = _COUNTS_CACHE.get(key)
    if found is None:
        if len(_COUNTS_CACHE) >= _CACHE_LIMIT:
            _COUNTS_CACHE.pop(next(iter(_COUNTS_CACHE)))
        found = _COUNTS_CACHE[key] = next(resample_counts(n, n_boot, seed, chunk=n_boot))
    return [found]


def bootstrap_means(values: np.ndarray, n_boot: int = DEFAULT_BOOT, seed: int | np.random.Generator | None = 0
                    ) -> np.ndarray:
    """Bootstrap replicate means: ``values`` (n,) -> (n_boot,); (n, k) -> (n_boot, k), paired across columns.

    With an integer ``seed`` the replicates depend only on (n, n_boot, seed): two calls on
    aligned samples of the same size resample the same examples.
    """
    values = np.asarray(values, dtype=np.float64)
    one = values.ndim == 1
    matrix = values[:, None] if one else values
    n = matrix.shape[0]
    out = np.concatenate([counts @ matrix for counts in _cached_counts(n, n_boot, seed)]) / n
    return out[:, 0] if one else out


def percentile_interval(samples: np.ndarray, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided percentile interval along axis 0."""
    low, high = np.quantile(samples, [alpha / 2, 1 - alpha / 2], axis=0)
    return low, high


def _finite_sample(values: Sequence[float] | np.ndarray, name: str = "values") -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if np.isnan(array).any():
        raise ValueError(f"{name} contain {int(np.isnan(array).sum())} NaN of {array.size}: drop the examples a "
                         "system did not predict before computing its statistics")
    return array


@dataclass(frozen=True)
class _Bootstrap:
    """What :func:`_bca` returns: the statistic, its BCa interval and the replicates, one entry per output."""

    estimate: np.ndarray
    low: np.ndarray
    high: np.ndarray
    replicates: np.ndarray  # (outputs, n_boot); empty for a single example


def _bca(samples: tuple[np.ndarray, ...], statistic: Callable[..., np.ndarray], n_boot: int, seed: int,
         alpha: float) -> _Bootstrap:
    """``scipy.stats.bootstrap`` (paired, BCa) of a vectorised statistic with one or more outputs.

    Outputs whose replicates are all equal (constant data, one example) get a zero-width interval
    at the estimate, where SciPy returns NaN with a warning; other undefined intervals stay NaN.
    """
    estimate = np.atleast_1d(np.asarray(statistic(*samples, axis=-1), dtype=np.float64))
    if samples[0].size < 2:
        return _Bootstrap(estimate, estimate.copy(), estimate.copy(), np.empty((estimate.size, 0)))
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", scipy_stats.DegenerateDataWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        result = scipy_stats.bootstrap(samples, statistic, n_resamples=n_boot, paired=True, vectorized=True,
                                       confidence_level=1 - alpha, method="BCa", rng=seed)
    replicates = np.atleast_2d(result.bootstrap_distribution)
    low = np.atleast_1d(np.asarray(result.confidence_interval.low, dtype=np.float64)).copy()
    high = np.atleast_1d(np.asarray(result.confidence_interval.high, dtype=np.float64)).copy()
    with np.errstate(invalid="ignore"):
        spread = np.ptp(replicates, axis=-1)
    constant = np.isfinite(estimate) & (spread <= 1e-12 * np.maximum(1.0, np.abs(estimate)))
    low[constant] = high[constant] = estimate[constant]
    return _Bootstrap(estimate, low, high, replicates)


def _mean(values: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(values, axis=axis)


def mean_ci(values: Sequence[float] | np.ndarray, n_boot: int = DEFAULT_BOOT, seed: int = 0,
            alpha: float = 0.05) -> Interval:
    """Mean with its BCa bootstrap CI (``scipy.stats.bootstrap``; degenerate cases as the module says).

    With the same ``seed`` two samples of the same size are resampled at the same positions.
    """
    values = _finite_sample(values)
    if values.size == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0)
    boot = _bca((values,), _mean, n_boot, seed, alpha)
    return Interval(float(boot.estimate[0]), float(boot.low[0]), float(boot.high[0]), int(values.size))


def bootstrap_p_value(differences_boot: np.ndarray, observed: float) -> float:
    """Two-sided p-value of a zero mean from bootstrap replicates of the mean difference (null-centred)."""
    centred = differences_boot - differences_boot.mean()
    extreme = np.count_nonzero(np.abs(centred) >= abs(observed) - 1e-12)
    return float((extreme + 1) / (differences_boot.size + 1))


def sign_flip_p_value(differences: np.ndarray, n_perm: int = DEFAULT_BOOT, seed: int = 0) -> float:
    """Two-sided paired permutation test of a zero mean difference: ``scipy.stats.permutation_test``
    flipping the sign of each difference (exact when ``2**n <= n_perm``; NaN below two differences)."""
    d = _finite_sample(differences, "differences")
    if d.size < 2:
        return float("nan")
    result = scipy_stats.permutation_test((d,), _mean, permutation_type="samples", vectorized=True,
                                          n_resamples=n_perm, alternative="two-sided", rng=seed)
    return float(result.pvalue)


@dataclass(frozen=True)
class PairedResult:
    """Mean of a - b on paired examples, its CI and two p-values."""

    n: int
    mean_a: float
    mean_b: float
    diff: float
    diff_low: float
    diff_high: float
    p_bootstrap: float
    p_permutation: float
    rel_improvement_pct: float
    rel_low: float
    rel_high: float


def relative_improvement(mean_new: np.ndarray | float, mean_base: np.ndarray | float) -> np.ndarray | float:
    """``100 * (new - base) / base`` (NaN where base is 0)."""
    new = np.asarray(mean_new, dtype=np.float64)
    base = np.asarray(mean_base, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(base != 0, 100.0 * (new - base) / np.where(base != 0, base, 1.0), np.nan)
    return float(out) if out.ndim == 0 else out


def _difference_and_relative(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    """The paired statistics of :func:`paired_comparison`: mean(a - b) and the relative improvement (%)."""
    diff = np.mean(a - b, axis=axis)
    return np.stack([diff, relative_improvement(diff + np.mean(b, axis=axis), np.mean(b, axis=axis))])


def paired_comparison(a: np.ndarray, b: np.ndarray, n_boot: int = DEFAULT_BOOT, seed: int = 0,
                      alpha: float = 0.05) -> PairedResult:
    """Compare two systems scored on the same examples (aligned arrays): paired BCa intervals of the
    difference and of the relative improvement, a null-centred bootstrap p-value and a sign-flip p-value."""
    a = _finite_sample(a, "scores a")
    b = _finite_sample(b, "scores b")
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired samples must be aligned 1-d arrays, got shapes {a.shape} and {b.shape}")
    if a.size == 0:
        nan = float("nan")
        return PairedResult(0, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan)
    boot = _bca((a, b), _difference_and_relative, n_boot, seed, alpha)
    diff = float(a.mean() - b.mean())
    return PairedResult(
        n=int(a.size), mean_a=float(a.mean()), mean_b=float(b.mean()), diff=diff,
        diff_low=float(boot.low[0]), diff_high=float(boot.high[0]),
        p_bootstrap=bootstrap_p_value(boot.replicates[0], diff) if a.size > 1 else float("nan"),
        p_permutation=sign_flip_p_value(a - b, n_boot, seed + 1),
        rel_improvement_pct=float(relative_improvement(a.mean(), b.mean())),
        rel_low=float(boot.low[1]), rel_high=float(boot.high[1]),
    )


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (NaN stays NaN)."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    if ok.size == 0:
        return out
    order = ok[np.argsort(p[ok])]
    m = order.size
    adjusted = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out[order] = np.minimum(adjusted, 1.0)
    return out


# --------------------------------------------------------------------------- tidy-table helpers

def _metric_matrix(scores: pd.DataFrame, metric: str) -> pd.DataFrame:
    part = scores[scores["metric"] == metric]
    if part.empty:
        raise KeyError(f"metric {metric!r} is not in the scores")
    return part.pivot_table(index=["subset", "id"], columns="system", values="value", aggfunc="first",
                            observed=True)


def _meta(scores: pd.DataFrame) -> pd.DataFrame | None:
    """The systems' metadata columns when the scores carry them (index: system), else None."""
    return meta_of(scores) if has_meta(scores) else None


def _attach_meta(table: pd.DataFrame, meta: pd.DataFrame | None) -> pd.DataFrame:
    if meta is None:
        return table
    joined = meta.reindex(table["system"].astype(str).to_numpy())
    joined.index = table.index
    return pd.concat([table, joined], axis=1)


def system_summary(scores: pd.DataFrame, metric: str = "flowsim_with_inputs", *, n_boot: int = DEFAULT_BOOT,
                   seed: int = 0, alpha: float = 0.05, pooled: bool = True) -> pd.DataFrame:
    """Mean and bootstrap CI per system and subset (plus subset ``all`` when ``pooled``).

    ``all`` pools only the subsets every system ran (at least partly), so pooled means compare like with like.
    When the scores carry the systems' metadata columns (arm, base_model, n_params, strategy, k,
    retrieval), so does the summary.
    """
    matrix = _metric_matrix(scores, metric)
    rows = []
    groups = [(subset, frame.droplevel(0)) for subset, frame in matrix.groupby(level=0, observed=True)]
    if pooled and len(groups) > 1:
        full = [s for s, f in groups if f.notna().any().all()]
        if full:
            rows_all = matrix.loc[matrix.index.get_level_values(0).isin(full)]
            groups.append(("all", rows_all.droplevel(0)))
    for subset, frame in groups:
        for system in frame.columns:
            values = frame[system].dropna().to_numpy()
            if values.size == 0:
                continue
            ci = mean_ci(values, n_boot, seed, alpha)
            rows.append({"system": str(system), "subset": str(subset), "metric": metric, "n": ci.n,
                         "mean": ci.estimate, "ci_low": ci.low, "ci_high": ci.high})
    table = pd.DataFrame(rows, columns=["system", "subset", "metric", "n", "mean", "ci_low", "ci_high"])
    return _attach_meta(table, _meta(scores))


def summary_all_metrics(scores: pd.DataFrame, metrics: Sequence[str], *, n_boot: int = DEFAULT_BOOT, seed: int = 0
                        ) -> pd.DataFrame:
    """:func:`system_summary` for several metrics, stacked."""
    return pd.concat([system_summary(scores, m, n_boot=n_boot, seed=seed) for m in metrics], ignore_index=True)


PAIRED_COLUMNS = ("fine_tuned", "prompted", "subset", "metric", "n", "mean_fine_tuned", "mean_prompted", "diff",
                  "diff_low", "diff_high", "p_bootstrap", "p_permutation", "rel_improvement_pct", "rel_low",
                  "rel_high", "p_holm")


def paired_comparisons(scores: pd.DataFrame, metric: str = "flowsim_with_inputs", *, n_boot: int = DEFAULT_BOOT,
                       seed: int = 0, alpha: float = 0.05, fine_tuned: Sequence[str] | None = None,
                       prompted: Sequence[str] | None = None) -> pd.DataFrame:
    """Every fine-tuned system minus every prompted system, per subset, on the ids both predicted.

    The arms come from the scores' ``arm`` column (the systems' metadata) unless ``fine_tuned`` /
    ``prompted`` name the systems. Columns (:data:`PAIRED_COLUMNS`): fine_tuned, prompted, subset,
    n (paired examples), the two means, diff with CI, p-values (bootstrap, permutation,
    Holm-adjusted permutation over the table), relative improvement (%) with CI.
    """
    matrix = _metric_matrix(scores, metric)
    if fine_tuned is None or prompted is None:
        meta = _meta(scores)
        if meta is None:
            raise ValueError("the scores carry no 'arm' column: pass fine_tuned= and prompted=, or score the run "
                             "with wfutils.evaluation.scoring.evaluate_run")
        fine_tuned = list(meta.index[meta["arm"] == FINE_TUNED]) if fine_tuned is None else fine_tuned
        prompted = list(meta.index[meta["arm"] == PROMPTED]) if prompted is None else prompted
    rows = []
    for subset, frame in matrix.groupby(level=0, observed=True):
        for a in fine_tuned:
            for b in prompted:
                if a not in frame or b not in frame:
                    continue
                pair = frame[[a, b]].dropna()
                if pair.empty:
                    continue
                r = paired_comparison(pair[a].to_numpy(), pair[b].to_numpy(), n_boot, seed, alpha)
                rows.append({"fine_tuned": a, "prompted": b, "subset": str(subset), "metric": metric, "n": r.n,
                             "mean_fine_tuned": r.mean_a, "mean_prompted": r.mean_b, "diff": r.diff,
                             "diff_low": r.diff_low, "diff_high": r.diff_high, "p_bootstrap": r.p_bootstrap,
                             "p_permutation": r.p_permutation, "rel_improvement_pct": r.rel_improvement_pct,
                             "rel_low": r.rel_low, "rel_high": r.rel_high})
    out = pd.DataFrame(rows, columns=list(PAIRED_COLUMNS[:-1]))
    out["p_holm"] = holm(out["p_permutation"].to_numpy()) if len(out) else []
    return out


def average_relative_improvement(values: pd.DataFrame, fine_tuned: str, prompted: Sequence[str], *,
                                 n_boot: int = DEFAULT_BOOT, seed: int = 0, alpha: float = 0.05) -> dict[str, object]:
    """The paper's "X% on average": mean over ``prompted`` systems L of ``100 (mean_ft - mean_L) / mean_L``.

    ``values``: rows = examples, columns = systems (one metric, one subset or pooled). Only the
    examples every listed system predicted are used (``n`` says how many); the CI comes from
    bootstrap replicates shared by all systems. Returns estimate, low, high, n, fine_tuned,
    prompted and ``per_prompted`` (the percentage per prompted system).
    """
    columns = [fine_tuned, *prompted]
    frame = values[columns].dropna()
    n = len(frame)
    if n == 0 or not prompted:
        return {"estimate": float("nan"), "low": float("nan"), "high": float("nan"), "n": n, "fine_tuned": fine_tuned,
                "prompted": list(prompted), "per_prompted": {}}
    matrix = frame.to_numpy(dtype=np.float64)
    means = matrix.mean(axis=0)
    per_prompted = relative_improvement(np.full(len(prompted), means[0]), means[1:])
    boot = bootstrap_means(matrix, n_boot, seed)
    rel = relative_improvement(boot[:, :1], boot[:, 1:])
    counted = np.isfinite(rel).sum(axis=1)
    rel_boot = np.where(counted > 0, np.nansum(rel, axis=1) / np.maximum(counted, 1), np.nan)
    finite = rel_boot[np.isfinite(rel_boot)]
    low, high = (np.quantile(finite, [alpha / 2, 1 - alpha / 2]) if finite.size else (np.nan, np.nan))
    return {"estimate": float(np.nanmean(per_prompted)) if np.isfinite(per_prompted).any() else float("nan"),
            "low": float(low), "high": float(high), "n": n, "fine_tuned": fine_tuned, "prompted": list(prompted),
            "per_prompted": {name: float(v) for name, v in zip(prompted, per_prompted)}}


def feature_summary(scores: pd.DataFrame, features: pd.DataFrame, metric: str = "flowsim_with_inputs", *,
                    n_boot: int = DEFAULT_BOOT, seed: int = 0) -> pd.DataFrame:
    """Mean and CI per system and feature tag (``features``: id, feature rows; all subsets pooled).

    Carries the systems' metadata columns when the scores do.
    """
    matrix = _metric_matrix(scores, metric).droplevel(0)
    rows = []
    for feature, ids in features.groupby("feature")["id"]:
        frame = matrix.loc[matrix.index.intersection(pd.Index(ids.unique()))]
        for system in frame.columns:
            values = frame[system].dropna().to_numpy()
            if values.size:
                ci = mean_ci(values, n_boot, seed)
                rows.append({"system": str(system), "feature": feature, "metric": metric, "n": ci.n,
                             "mean": ci.estimate, "ci_low": ci.low, "ci_high": ci.high})
    table = pd.DataFrame(rows, columns=["system", "feature", "metric", "n", "mean", "ci_low", "ci_high"])
    return _attach_meta(table, _meta(scores))


def subgroup_gain(values: pd.DataFrame, fine_tuned: str, prompted: Sequence[str], in_group: np.ndarray, *,
                  n_boot: int = DEFAULT_BOOT, seed: int = 0, alpha: float = 0.05) -> dict[str, float]:
    """Does the fine-tuned model gain more inside a subgroup than outside it?

    gain = mean over ``prompted`` systems L of (mean_ft - mean_L), in FlowSim points, on the examples every
    system predicted; returns gain inside, gain outside, their difference (inside - outside)
    with a bootstrap CI (stratified: examples resampled within each group), and the counts.
    """
    columns = [fine_tuned, *prompted]
    mask = pd.Series(np.asarray(in_group, dtype=bool), index=values.index)
    frame = values[columns].dropna()
    mask = mask.loc[frame.index].to_numpy()
    inside, outside = frame.to_numpy()[mask], frame.to_numpy()[~mask]
    result = {"n_in": int(inside.shape[0]), "n_out": int(outside.shape[0]), "gain_in": float("nan"),
              "gain_out": float("nan"), "diff": float("nan"), "low": float("nan"), "high": float("nan")}
    if inside.shape[0] == 0 or outside.shape[0] == 0 or not prompted:
        return result

    def gain(m: np.ndarray) -> np.ndarray:
        return (m[..., :1] - m[..., 1:]).mean(axis=-1)

    g_in, g_out = float(gain(inside.mean(axis=0))), float(gain(outside.mean(axis=0)))
    rng = np.random.default_rng(seed)
    boot_in = gain(bootstrap_means(inside, n_boot, rng))
    boot_out = gain(bootstrap_means(outside, n_boot, rng))
    low, high = percentile_interval(boot_in - boot_out, alpha)
    result.update(gain_in=g_in, gain_out=g_out, diff=g_in - g_out, low=float(low), high=float(high))
    return result
