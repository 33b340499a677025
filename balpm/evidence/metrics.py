"""Evaluation metrics: preference log-likelihood, accuracy, calibration; learning-curve summaries.

* :func:`preference_metrics` scores an ensemble on held-out comparisons from ``probs_N_K`` (each
  member's P(chosen > rejected)); the ensemble prediction is the average of the members'
  probabilities (docs/method.md section 2), not of their logits.
* :func:`smooth`, :func:`aulc`, :func:`label_efficiency`: learning-curve summaries, including the
  paper's "X% fewer labels" figure both exactly and as the paper computed it (docs/method.md section 7
  and flaw 6).
* :func:`bootstrap_ci`, :func:`label_efficiency_ci`, :func:`mean_sem`: uncertainty over seeds.

Whether a policy is better than another is decided in :mod:`balpm.evidence.stats` (paired Student-t intervals
over seeds, A/A check, ceiling), never from these bootstrap intervals alone.

Every random draw goes through a ``numpy.random.Generator`` built from an explicit seed.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from balpm.errors import ConfigError, DataError, FeatureError

__all__ = [
    "EVAL_SPLITS",
    "METRIC_LABELS",
    "METRIC_SPECS",
    "PREFERENCE_METRICS",
    "QUALITY_DIRECTIONS",
    "MetricSpec",
    "evaluation_columns",
    "EfficiencyCI",
    "Interval",
    "LabelEfficiency",
    "aulc",
    "bootstrap_ci",
    "ece",
    "label_efficiency",
    "label_efficiency_ci",
    "mean_sem",
    "preference_metrics",
    "smooth",
]



@dataclass(frozen=True)
class MetricSpec:
    """One per-comparison quality metric: its name in ``preference_metrics``, its display label, its direction."""

    name: str
    label: str
    higher_is_better: bool


#: THE list of quality metrics (one source): the loop evaluates these on every evaluation split, the
#: statistics, the report and the dashboard read names, labels and directions from here
METRIC_SPECS: tuple[MetricSpec, ...] = (
    MetricSpec("log_likelihood", "log-likelihood", True),
    MetricSpec("accuracy", "accuracy", True),
    MetricSpec("brier", "Brier", False),
    MetricSpec("ece", "ECE", False),
)
#: evaluation split -> its label; a rounds.parquet column is ``<split>_<metric>`` (``test_log_likelihood``)
EVAL_SPLITS: dict[str, str] = {"test": "test", "ood": "OOD"}
PREFERENCE_METRICS: tuple[str, ...] = tuple(m.name for m in METRIC_SPECS)
#: rounds.parquet metric column -> direction (+1: higher is better, -1: lower is better); higher-is-better
#: metrics first, test before OOD (the order reports and pages list them in)
QUALITY_DIRECTIONS: dict[str, int] = {
    f"{split}_{m.name}": 1 if m.higher_is_better else -1
    for first in (True, False) for split in EVAL_SPLITS for m in METRIC_SPECS if m.higher_is_better == first
}
#: rounds.parquet metric column -> display label (``test_ece`` -> ``test ECE``)
METRIC_LABELS: dict[str, str] = {
    f"{split}_{m.name}": f"{label} {m.label}" for split, label in EVAL_SPLITS.items() for m in METRIC_SPECS
}
METRIC_LABELS = {k: METRIC_LABELS[k] for k in QUALITY_DIRECTIONS}  # in the same order


def evaluation_columns(split: str) -> tuple[str, ...]:
    """The rounds.parquet columns of one evaluation split: ``test_log_likelihood``, ``test_accuracy``, ..."""
    return tuple(f"{split}_{m.name}" for m in METRIC_SPECS)

LOG_EPS = 1e-12  # p_bar is clipped to [LOG_EPS, 1] before the log: a certain mistake costs log(1e-12) = -27.6


# ---- per-comparison metrics ---------------------------------------------------------------------
def _mean_probs(probs_N_K: np.ndarray) -> np.ndarray:
    probs = np.asarray(probs_N_K, dtype=np.float64)
    if probs.ndim == 1:
        probs = probs[:, None]
    if probs.ndim != 2:
        raise FeatureError(f"probabilities must have shape (N, K); got {probs.shape}")
    if probs.size and (not np.isfinite(probs).all() or probs.min() < 0 or probs.max() > 1):
        raise FeatureError("probabilities must be finite and within [0, 1]; check the model's predictions")
    if probs.shape[1] == 0:
        raise FeatureError("probabilities have no ensemble members (K = 0)")
    return probs.mean(axis=1)


def _correct(p_bar_N: np.ndarray) -> np.ndarray:
    """1 where the ensemble prefers the chosen answer, 0 where the rejected one, 0.5 on a tie."""
    return np.where(p_bar_N > 0.5, 1.0, np.where(p_bar_N < 0.5, 0.0, 0.5))


def ece(p_bar_N: np.ndarray, n_bins: int = 10) -> float:
    """Expected calibration error of binary preference predictions (standard definition).

    The predicted answer is the one with probability > 0.5; its confidence is ``max(p, 1 - p)``.
    Confidences fall into ``n_bins`` equal-width bins over [0, 1], bin b = ``(b/M, (b+1)/M]`` (the first
    also holds 0). ``ECE = sum_b |B_b|/N * |acc(B_b) - conf(B_b)|`` with acc the fraction correct (a tie
    at p = 0.5 counts as half correct). NaN for an empty input.
    """
    p = np.asarray(p_bar_N, dtype=np.float64)
    if p.size == 0:
        return float("nan")
    conf = np.maximum(p, 1.0 - p)
    correct = _correct(p)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.searchsorted(edges[1:-1], conf, side="left")
    count_M = np.bincount(bins, minlength=n_bins).astype(np.float64)
    conf_M = np.bincount(bins, weights=conf, minlength=n_bins)
    acc_M = np.bincount(bins, weights=correct, minlength=n_bins)
    used = count_M > 0
    gap = np.abs(acc_M[used] - conf_M[used]) / count_M[used]
    return float(np.sum(count_M[used] / p.size * gap))


def preference_metrics(probs_N_K: np.ndarray) -> dict[str, float]:
    """Ensemble metrics on comparisons from ``probs_N_K`` = each member's P(chosen > rejected).

    With ``p_bar`` the mean over members: ``log_likelihood`` = mean of ``log(clip(p_bar, 1e-12, 1))``
    (natural log; higher is better), ``accuracy`` = fraction with ``p_bar > 0.5`` (ties count half),
    ``brier`` = mean ``(1 - p_bar)^2``, ``ece`` = :func:`ece` with 10 bins. All NaN when N = 0.
    """
    p_bar = _mean_probs(probs_N_K)
    if p_bar.size == 0:
        return {k: float("nan") for k in PREFERENCE_METRICS}
    return {
        "log_likelihood": float(np.mean(np.log(np.clip(p_bar, LOG_EPS, 1.0)))),
        "accuracy": float(np.mean(_correct(p_bar))),
        "brier": float(np.mean((1.0 - p_bar) ** 2)),
        "ece": ece(p_bar),
    }


# ---- learning curves ----------------------------------------------------------------------------
def smooth(y: np.ndarray, window: int = 3) -> np.ndarray:
    """Trailing moving average over the last axis (``min_periods=1``), as in the paper's curves.

    ``out[t] = mean(y[max(0, t - window + 1) : t + 1])``; ``window=1`` returns a float copy.
    """
    if int(window) < 1:
        raise ConfigError(f"smoothing window must be >= 1 (got {window})")
    arr = np.asarray(y, dtype=np.float64)
    if arr.shape[-1] == 0 or window == 1:
        return arr.copy()
    csum = np.cumsum(arr, axis=-1)
    t = np.arange(arr.shape[-1])
    lo = t - int(window)
    prev = np.where(lo >= 0, np.take(csum, np.clip(lo, 0, None), axis=-1), 0.0)
    return (csum - prev) / np.minimum(t + 1, int(window))


def _curve(x: np.ndarray, *ys: np.ndarray) -> tuple[np.ndarray, ...]:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise DataError(f"labelled-set sizes must be a non-empty 1-D sequence (got shape {x.shape})")
    if x.size > 1 and not np.all(np.diff(x) > 0):
        raise DataError("labelled-set sizes must be strictly increasing (one point per round)")
    out = [x]
    for y in ys:
        y = np.asarray(y, dtype=np.float64)
        if y.shape != x.shape:
            raise DataError(f"curve has {y.shape} points but there are {x.shape} labelled-set sizes; pass one value per round")
        out.append(y)
    return tuple(out)


def aulc(x: np.ndarray, y: np.ndarray) -> float:
    """Normalised area under the learning curve: trapezoid area over ``x`` divided by the x-range.

    It is the curve's mean height in the units of ``y`` (a single point returns that point).
    """
    x, y = _curve(x, y)
    if x.size == 1:
        return float(y[0])
    area = float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2.0)
    return area / float(x[-1] - x[0])


@dataclass(frozen=True)
class LabelEfficiency:
    """How many fewer labels the policy needs to reach the baseline's final value.

    ``saving``: the fraction ``1 - x_reached / x_final`` (NaN when never reached; may be 0 when only
    reached at the end); ``reached``; ``x_reached``: labelled-set size (exact: interpolated;
    paper: ``x[i]`` of the first round reaching the target); ``x_final``: the baseline's final size;
    ``target``: the baseline's final value; ``round_index``: first round at or above the target (-1 if
    never); ``method``: ``exact`` or ``paper``. ``float(eff)`` is ``saving``.
    """

    saving: float
    reached: bool
    x_reached: float
    x_final: float
    target: float
    round_index: int
    method: str

    def __float__(self) -> float:
        """The saving as a plain float (NaN when never reached)."""
        return float(self.saving)


def label_efficiency(x_labels: np.ndarray, baseline_y: np.ndarray, policy_y: np.ndarray, paper: bool = False,
                     *, higher_is_better: bool = True) -> LabelEfficiency:
    """The "X% fewer labels than the baseline" figure of the paper, exact or as the paper computed it.

    ``x_labels[t]`` is the labelled-set size the round-t models were trained on; ``baseline_y`` and
    ``policy_y`` are the curves at those sizes (already averaged over seeds / smoothed by the caller,
    e.g. with :func:`smooth`). The target is the baseline's final value ``baseline_y[-1]``; "reaching"
    it means ``policy >= target`` (``<=`` with ``higher_is_better=False``, e.g. for Brier or ECE).

    * exact (``paper=False``): the policy curve is linearly interpolated in the labelled-set size; x*
      is the smallest size at which it reaches the target (``x_labels[0]`` if it starts there);
      ``saving = 1 - x* / x_labels[-1]``.
    * paper (``paper=True``): i = the first ROUND index (counted from 0) whose value reaches the
      target, T - 1 the baseline's final round index, ``saving = 1 - i / (T - 1)``. This is the
      paper's computation with its off-by-one (docs/method.md flaw 6): it treats round i as trained on
      i * B labels, while with ``initial = B`` the round-i model saw (i + 1) * B, so the exact figure on
      those same rounds is ``1 - (i + 1) / T``. No interpolation. A single-round curve gives
      saving 0 when reached.

    Returns a :class:`LabelEfficiency` whose ``saving`` is NaN and ``reached`` False when the policy
    never reaches the target.
    """
    x, base, pol = _curve(x_labels, baseline_y, policy_y)
    if not (np.isfinite(base[-1]) and np.isfinite(pol).all()):
        raise DataError("learning curves contain NaN or infinite values; drop unfinished rounds first")
    sign = 1.0 if higher_is_better else -1.0
    target = float(base[-1])
    gap = sign * (pol - target)  # >= 0 where the policy has reached the target
    hit = np.flatnonzero(gap >= 0)
    method = "paper" if paper else "exact"
    if hit.size == 0:
        return LabelEfficiency(float("nan"), False, float("nan"), float(x[-1]), target, -1, method)
    i = int(hit[0])
    if paper:
        last = x.size - 1
        saving = 1.0 - i / last if last > 0 else 0.0
        return LabelEfficiency(float(saving), True, float(x[i]), float(x[-1]), target, i, method)
    if i == 0:
        x_star = float(x[0])
    else:  # the segment (i-1, i) crosses the target: gap[i-1] < 0 <= gap[i]
        frac = -gap[i - 1] / (gap[i] - gap[i - 1])
        x_star = float(x[i - 1] + frac * (x[i] - x[i - 1]))
    return LabelEfficiency(1.0 - x_star / float(x[-1]), True, x_star, float(x[-1]), target, i, method)


# ---- uncertainty over seeds ---------------------------------------------------------------------
class Interval(NamedTuple):
    """A point estimate with a two-sided confidence interval."""

    estimate: float
    low: float
    high: float


def _check_boot(n_boot: int, level: float) -> None:
    if int(n_boot) < 1:
        raise ConfigError(f"n_boot must be >= 1 (got {n_boot})")
    if not (0.0 < level < 1.0):
        raise ConfigError(f"confidence level must be in (0, 1) (got {level})")


def bootstrap_ci(values_S: np.ndarray, stat: Callable[..., float] = np.mean, n_boot: int = 2000, seed: int = 0,
                 level: float = 0.95) -> Interval:
    """Percentile bootstrap CI of ``stat`` over the values (e.g. one per seed), resampled with replacement.

    ``estimate = stat(values)``; ``low``/``high`` are the ``(1 -/+ level)/2`` quantiles of ``stat`` over
    ``n_boot`` resamples drawn from ``numpy.random.default_rng(seed)`` (deterministic under ``seed``).
    """
    _check_boot(n_boot, level)
    vals = np.asarray(values_S, dtype=np.float64).ravel()
    if vals.size == 0:
        return Interval(float("nan"), float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    idx_R_S = rng.integers(0, vals.size, size=(int(n_boot), vals.size))
    try:
        draws = np.asarray(stat(vals[idx_R_S], axis=1), dtype=np.float64)
        if draws.shape != (int(n_boot),):
            raise TypeError
    except TypeError:
        draws = np.array([stat(vals[row]) for row in idx_R_S], dtype=np.float64)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(draws, [alpha, 1.0 - alpha])
    return Interval(float(stat(vals)), float(low), float(high))


@dataclass(frozen=True)
class EfficiencyCI:
    """Label efficiency of the seed-mean curves with a bootstrap CI over seeds.

    ``estimate``: :func:`label_efficiency` on the mean curves (NaN if never reached); ``low``/``high``:
    percentile bounds over resamples, where a resample whose policy never reaches the target counts as
    ``-inf`` (worse than any saving), so ``low = -inf`` says that in more than ``(1-level)/2`` of the
    resamples the target was not reached; ``reached_fraction``: share of resamples that reached it.
    """

    estimate: float
    low: float
    high: float
    reached_fraction: float
    method: str
    n_seeds: int


def label_efficiency_ci(curves_by_seed_baseline: np.ndarray, curves_by_seed_policy: np.ndarray, x: np.ndarray,
                        *, paper: bool = False, window: int = 1, higher_is_better: bool = True,
                        n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> EfficiencyCI:
    """Bootstrap CI of the label-efficiency figure by resampling seeds.

    Inputs are ``(S, T)`` curves (one row per seed, one column per round at sizes ``x``). Each resample
    draws S seed rows with replacement; when both policies have the same S the rows are PAIRED (the
    same seed indices for baseline and policy: same initial set and split), else drawn independently.
    Per resample: mean over seeds, then :func:`smooth` with ``window`` (3 for the paper's curves),
    then :func:`label_efficiency` (``paper`` selects the computation).
    """
    _check_boot(n_boot, level)
    base = np.atleast_2d(np.asarray(curves_by_seed_baseline, dtype=np.float64))
    pol = np.atleast_2d(np.asarray(curves_by_seed_policy, dtype=np.float64))
    x = np.asarray(x, dtype=np.float64)
    if base.shape[1] != x.size or pol.shape[1] != x.size:
        raise DataError(f"curves have {base.shape[1]} and {pol.shape[1]} rounds but x has {x.size}; pass (seeds, rounds) arrays")
    if base.shape[0] == 0 or pol.shape[0] == 0:
        raise DataError("label_efficiency_ci needs at least one seed per policy")

    if not (np.isfinite(base).all() and np.isfinite(pol).all()):
        raise DataError("learning curves contain NaN or infinite values; drop unfinished rounds first")

    def figure(b_S_T: np.ndarray, p_S_T: np.ndarray) -> float:
        eff = label_efficiency(x, smooth(b_S_T.mean(axis=0), window), smooth(p_S_T.mean(axis=0), window),
                               paper=paper, higher_is_better=higher_is_better)
        return eff.saving if eff.reached else -np.inf

    est = figure(base, pol)
    rng = np.random.default_rng(seed)
    paired = base.shape[0] == pol.shape[0]
    ib_R_S = np.empty((int(n_boot), base.shape[0]), dtype=np.int64)
    ip_R_S = np.empty((int(n_boot), pol.shape[0]), dtype=np.int64)
    for r in range(int(n_boot)):  # the draws in the same order as one resample at a time
        ib_R_S[r] = rng.integers(0, base.shape[0], size=base.shape[0])
        ip_R_S[r] = ib_R_S[r] if paired else rng.integers(0, pol.shape[0], size=pol.shape[0])
    draws = _savings(x, smooth(base[ib_R_S].mean(axis=1), window), smooth(pol[ip_R_S].mean(axis=1), window),
                     paper=paper, higher_is_better=higher_is_better)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(draws, [alpha, 1.0 - alpha], method="inverted_cdf")
    return EfficiencyCI(
        estimate=float(est) if np.isfinite(est) else float("nan"), low=float(low), high=float(high),
        reached_fraction=float(np.mean(np.isfinite(draws))), method="paper" if paper else "exact",
        n_seeds=int(base.shape[0]))


def _savings(x: np.ndarray, base_R_T: np.ndarray, pol_R_T: np.ndarray, *, paper: bool,
             higher_is_better: bool) -> np.ndarray:
    """:func:`label_efficiency` for many curve pairs at once (rows); -inf where the target is never reached."""
    sign = 1.0 if higher_is_better else -1.0
    gap = sign * (pol_R_T - base_R_T[:, -1:])
    ok = gap >= 0
    reached = ok.any(axis=1)
    i = ok.argmax(axis=1)
    rows = np.arange(gap.shape[0])
    if paper:
        last = x.size - 1
        sav = 1.0 - i / last if last > 0 else np.zeros(gap.shape[0])
    else:
        im1 = np.maximum(i - 1, 0)
        g0, g1 = gap[rows, im1], gap[rows, i]
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = np.where(i == 0, 0.0, -g0 / np.where(i == 0, 1.0, g1 - g0))
        x_star = np.where(i == 0, x[0], x[im1] + frac * (x[i] - x[im1]))
        sav = 1.0 - x_star / float(x[-1])
    return np.where(reached, sav, -np.inf).astype(np.float64)


def mean_sem(values_S_T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error of the mean over seeds (axis 0), ignoring NaN.

    SEM = sample std (ddof=1) / sqrt(count); NaN where fewer than two finite values. A 1-D input
    (one value per seed) gives two floats.
    """
    vals = np.asarray(values_S_T, dtype=np.float64)
    if vals.ndim == 1:
        m, s = mean_sem(vals[:, None])
        return float(m[0]), float(s[0])
    finite = np.isfinite(vals)
    count = finite.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, np.nansum(vals, axis=0) / np.maximum(count, 1), np.nan)
        dev2 = np.where(finite, (vals - mean) ** 2, 0.0).sum(axis=0)
        sem = np.where(count > 1, np.sqrt(dev2 / np.maximum(count - 1, 1)) / np.sqrt(np.maximum(count, 1)), np.nan)
    return mean, sem
