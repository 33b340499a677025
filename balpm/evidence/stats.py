"""Evidence from per-seed learning curves: the one place that says whether a policy is better.

``balpm report`` and the dashboard's Learning curves page both call :func:`evidence` with the same
defaults (:data:`LEVEL`, :data:`N_BOOT`, :data:`SEED`), so they cannot disagree. The rules
(``DESIGN.md``, "Statistics of a comparison"):

* **Unit of evidence: the seed.** Per run and per quality metric (:data:`QUALITY_METRICS`, an
  explicit list: timing and diagnostic columns of rounds.parquet are never metrics): the AULC
  (trapezoid of the *unsmoothed* metric over labelled-set size divided by its range,
  :func:`balpm.evidence.metrics.aulc`) and the final value. Smoothing is a display option and never enters here.
* **Pairing.** A policy is compared with the baseline by differences *policy minus baseline* over the
  seeds both have (same seed = same pool, initial set and round-0 model). Only when fewer than two
  seeds are shared (and each side has two or more) is the comparison unpaired (Welch), reported as
  ``paired: false``.
* **Verdict.** From the 95% Student-t interval of the mean paired difference (Welch's interval when
  unpaired): ``better`` when the interval lies entirely on the good side of zero (higher is better for
  log-likelihood and accuracy, lower for Brier and ECE), ``worse`` when entirely on the bad side,
  else ``no detectable difference`` (also with one seed: no interval). The percentile bootstrap CI is
  reported beside it (``boot_ci``) but never decides: at 4-10 seeds it is anti-conservative.
  The headline ``verdict`` is the AULC's; ``final_verdict`` applies the same rule to the final value.
* **Power** (:func:`mde`): every comparison states the smallest effect it could detect, the
  minimal detectable effect at 80% power of the two-sided test at the verdict's alpha = 1 - level and
  the interval's df: ``MDE = (t_{1-alpha/2, df} + t_{0.80, df}) * SE`` (SE of the mean paired
  difference, or Welch's SE). A ``no detectable difference`` therefore reads "no effect larger than
  the MDE" (at 80% power). When a ceiling is known the MDE is also given as a share of the
  **headroom** = ceiling minus the baseline's mean AULC, the ceiling being the Bayes-optimal value of
  ``truth.json`` (the exact test log-likelihood / accuracy of the planted truth, when the run folders
  have it) else the mean final value of the ``full`` runs.
* **Multiplicity** (:func:`holm`): a table of many verdicts controls the family-wise error rate with
  Holm's step-down procedure: sort the m p-values ``p_(1) <= ... <= p_(m)``, adjusted
  ``p~_(i) = max_{j <= i} min(1, (m - j + 1) p_(j))``; a comparison is called (better / worse by its
  sign) when ``p~ < alpha``. The p-value is the two-sided paired t-test's (Welch's when unpaired),
  the same test as the interval, so the raw verdict is ``p < alpha``. :func:`evidence` adjusts over
  every AULC comparison of its report (settings x policies x metrics) and keeps both: ``verdict`` /
  ``p_value`` (per comparison) and ``holm_verdict`` / ``p_holm`` (family-wise).
* **A/A check** (:func:`aa_check`): with >= :data:`AA_MIN_SEEDS` baseline seeds, the baseline's seeds
  are split into halves (every balanced split, at most :data:`AA_MAX_SPLITS`, drawn by a seeded
  ``numpy.random.Generator`` when there are more), the halves are paired by seed rank and the same
  rule is applied to their AULCs. The share of splits with a verdict other than ``no detectable
  difference`` is the rule's false-positive rate (it should be <= 0.10), given with its own spread: a
  95% Clopper-Pearson interval over the splits (``fp_ci``; the splits share seeds, so they are not
  independent and the interval understates the spread) and the number of distinct splits possible
  (``possible_splits``: 35 with 8 seeds, 6,435 with 16); ``noise`` = 1.96 x the standard deviation
  of the halves' AULC differences, the size of a difference that pure seed noise produces.
* **Ceiling**: runs of the policy :data:`CEILING_POLICY` (``full``: the same model trained once on the
  whole pool) give, per metric, the ceiling (mean over seeds), the headroom (ceiling minus the round-0
  value, counted in the better direction) and a warning when the headroom is below the A/A noise.
  ``full`` is never compared against the baseline.
* **"X% fewer labels"** (:func:`balpm.evidence.metrics.label_efficiency`, on 3-round trailing averages of the
  seed-mean curves as the paper computes it) is secondary: given only behind an AULC verdict
  ``better`` and when the policy reaches the baseline's final value, with a bootstrap CI only from two
  seeds on; never for ECE (a coin flip is perfectly calibrated, so reaching a final ECE saves nothing).
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd
from scipy import stats as sps

from balpm.errors import ConfigError
from balpm.evidence import metrics

__all__ = [
    "AA_MAX_SPLITS",
    "AA_MIN_SEEDS",
    "CEILING_POLICY",
    "HEADLINE_METRIC",
    "LEVEL",
    "METRIC_NAMES",
    "N_BOOT",
    "POWER",
    "QUALITY_METRICS",
    "SEED",
    "TRUTH_METRICS",
    "VERDICTS",
    "Interval",
    "aa_check",
    "aa_line",
    "aa_splits",
    "bootstrap_interval",
    "chance_level",
    "compare_values",
    "dedupe",
    "evidence",
    "fmt_interval",
    "fmt_mde",
    "fmt_saving",
    "fmt_value",
    "fp_interval",
    "holm",
    "holm_verdicts",
    "mde",
    "metric_direction",
    "p_value",
    "possible_splits",
    "quality_metrics",
    "seed_aulcs",
    "t_interval",
    "truth_ceiling",
    "verdict",
    "welch_interval",
]

# metric column of rounds.parquet -> direction (+1: higher is better, -1: lower is better). Only these
# are treated as quality metrics; timing (train_seconds, ...) and diagnostics (mean_uncertainty, spreads
# of U and beta*H, epochs, valid_loss, unique prompts, ...) never are.
QUALITY_METRICS: dict[str, int] = dict(metrics.QUALITY_DIRECTIONS)  # one source: balpm.evidence.metrics.METRIC_SPECS
HEADLINE_METRIC = "test_log_likelihood"
CEILING_POLICY = "full"
LEVEL = 0.95
N_BOOT = 1000
SEED = 0
AA_MIN_SEEDS = 6
AA_MAX_SPLITS = 400  # 35 exist with 8 seeds, 126 with 10, 6,435 with 16: a 400-split check has a ~+-2.5% interval
POWER = 0.80  # the power at which the minimal detectable effect (MDE) is stated
#: metrics whose exact ceiling truth.json carries (the Bayes-optimal value under the planted truth)
TRUTH_METRICS = ("test_log_likelihood", "ood_log_likelihood", "test_accuracy", "ood_accuracy")
EFFICIENCY_WINDOW = 3  # the paper's 3-round trailing average, part of the "fewer labels" definition
NOISE_Z = 1.96
VERDICTS = ("better", "worse", "no detectable difference")
_NO_DIFF = VERDICTS[2]
_TOL = 1e-12  # differences this small are rounding, not evidence (identical runs computed twice)
METRIC_NAMES: dict[str, str] = dict(metrics.METRIC_LABELS)  # display labels, one source: balpm.evidence.metrics.METRIC_SPECS


class RunLike(Protocol):
    """What :func:`evidence` reads of a run (e.g. :class:`balpm.evidence.report.LoadedRun`)."""

    run_id: str
    label: str
    policy: str
    seed: int
    setting: str
    rounds: pd.DataFrame
    # optional: ``truth`` (the run folder's truth.json as a dict, or None), read with getattr


# ---- metrics -----------------------------------------------------------------------------------
def metric_direction(metric: str) -> int:
    """+1 when higher is better (log-likelihood, accuracy), -1 when lower is (Brier, ECE)."""
    if metric in QUALITY_METRICS:
        return QUALITY_METRICS[metric]
    for spec in metrics.METRIC_SPECS:  # a column of another split (valid_ece): the metric's own direction
        if metric.endswith(spec.name):
            return 1 if spec.higher_is_better else -1
    raise ConfigError(f"{metric!r} is not a quality metric; use one of {', '.join(QUALITY_METRICS)}")


def quality_metrics(columns: Iterable[str]) -> list[str]:
    """The quality metrics among ``columns``, in :data:`QUALITY_METRICS` order."""
    cols = set(columns)
    return [m for m in QUALITY_METRICS if m in cols]


def chance_level(metric: str) -> float | None:
    """The value of a coin-flip predictor (p = 0.5 everywhere): -log 2, 0.5 accuracy, 0.25 Brier; None for ECE."""
    if metric.endswith("log_likelihood"):
        return -math.log(2.0)
    if metric.endswith("accuracy"):
        return 0.5
    if metric.endswith("brier"):
        return 0.25
    return None


# ---- intervals and the verdict -----------------------------------------------------------------
@dataclass(frozen=True)
class Interval:
    """A mean difference with a two-sided interval (``low``/``high`` NaN when there is none)."""

    mean: float
    low: float
    high: float
    n: int
    df: float
    method: str
    se: float = math.nan  # standard error of ``mean`` (NaN without an interval)

    def ci(self) -> list[float | None]:
        """``[low, high]`` with None for a missing bound (JSON-ready)."""
        return [_num(self.low), _num(self.high)]


def t_interval(d_S: Sequence[float], level: float = LEVEL) -> Interval:
    """Student-t interval of the mean of paired differences ``d_S`` (NaN bounds with fewer than 2)."""
    d = np.asarray(d_S, dtype=np.float64)
    n = int(d.size)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0, math.nan, "paired-t")
    mean = float(d.mean())
    if n < 2:
        return Interval(mean, math.nan, math.nan, n, math.nan, "paired-t")
    se = float(d.std(ddof=1)) / math.sqrt(n)
    half = float(sps.t.ppf(0.5 + level / 2.0, n - 1)) * se
    return Interval(mean, mean - half, mean + half, n, float(n - 1), "paired-t", se)


def welch_interval(pol_S: Sequence[float], base_S: Sequence[float], level: float = LEVEL) -> Interval:
    """Welch's interval of ``mean(pol) - mean(base)`` for unpaired seeds (Welch-Satterthwaite df)."""
    a = np.asarray(pol_S, dtype=np.float64)
    b = np.asarray(base_S, dtype=np.float64)
    n = int(min(a.size, b.size))
    if a.size == 0 or b.size == 0:
        return Interval(math.nan, math.nan, math.nan, 0, math.nan, "welch")
    mean = float(a.mean() - b.mean())
    if a.size < 2 or b.size < 2:
        return Interval(mean, math.nan, math.nan, n, math.nan, "welch")
    va, vb = float(a.var(ddof=1)) / a.size, float(b.var(ddof=1)) / b.size
    se = math.sqrt(va + vb)
    if se == 0.0:
        return Interval(mean, mean, mean, n, float(a.size + b.size - 2), "welch", 0.0)
    df = (va + vb) ** 2 / (va ** 2 / (a.size - 1) + vb ** 2 / (b.size - 1))
    half = float(sps.t.ppf(0.5 + level / 2.0, df)) * se
    return Interval(mean, mean - half, mean + half, n, float(df), "welch", se)


def mde(se: float | None, df: float | None, level: float = LEVEL, power: float = POWER) -> float | None:
    """Minimal detectable effect of the two-sided t-test: ``(t_{1-alpha/2, df} + t_{power, df}) * se``.

    ``alpha = 1 - level``. The true mean difference that the test calls with probability ``power``
    (the usual normal-shift approximation with t quantiles). None without an interval (df or se missing).
    """
    s, d = _num(se), _num(df)
    if s is None or d is None or d <= 0:
        return None
    alpha = 1.0 - level
    return float((sps.t.ppf(1.0 - alpha / 2.0, d) + sps.t.ppf(power, d)) * s)


def p_value(iv: Interval) -> float | None:
    """Two-sided p-value of the t-test behind ``iv`` (``mean / se`` on ``df``); None without an interval.

    Differences of :data:`_TOL` or less are rounding: p = 1. A zero SE with a real difference: p = 0.
    """
    mean, se, df = _num(iv.mean), _num(iv.se), _num(iv.df)
    if mean is None or se is None or df is None or df <= 0:
        return None
    if abs(mean) <= _TOL:
        return 1.0
    if se == 0.0:
        return 0.0
    return float(2.0 * sps.t.sf(abs(mean) / se, df))


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values (family-wise error control); None stays None and is not counted.

    With the m present p-values sorted ``p_(1) <= ... <= p_(m)``:
    ``p~_(i) = max_{j <= i} min(1, (m - j + 1) * p_(j))``. Reject where ``p~ < alpha``.
    """
    idx = [i for i, p in enumerate(p_values) if _num(p) is not None]
    out: list[float | None] = [None] * len(p_values)
    m = len(idx)
    running = 0.0
    for rank, i in enumerate(sorted(idx, key=lambda i: (float(p_values[i]), i))):
        running = max(running, min(1.0, (m - rank) * float(p_values[i])))
        out[i] = running
    return out


def holm_verdicts(means: Sequence[float | None], p_holm: Sequence[float | None], directions: Sequence[int],
                  level: float = LEVEL) -> list[str]:
    """``better`` / ``worse`` where the Holm-adjusted p-value is below ``1 - level`` (side from the mean's
    sign and the metric's direction), else ``no detectable difference``."""
    out = []
    for mean, p, d in zip(means, p_holm, directions):
        mu, pp = _num(mean), _num(p)
        if mu is None or pp is None or pp >= 1.0 - level or abs(mu) <= _TOL:
            out.append(_NO_DIFF)
        else:
            out.append("better" if mu * d > 0 else "worse")
    return out


def bootstrap_interval(pol_S: Sequence[float], base_S: Sequence[float] | None = None, *, paired: bool = True,
                       n_boot: int = N_BOOT, seed: int = SEED, level: float = LEVEL) -> Interval:
    """Percentile bootstrap CI of the mean difference (shown beside the t interval, never deciding).

    ``paired``: ``pol_S`` holds the paired differences (``base_S`` unused); else the two groups are
    resampled independently. NaN bounds with fewer than 2 values per group.
    """
    a = np.asarray(pol_S, dtype=np.float64)
    if paired:
        if a.size < 2:
            return Interval(float(a.mean()) if a.size else math.nan, math.nan, math.nan, int(a.size), math.nan, "bootstrap")
        iv = metrics.bootstrap_ci(a, np.mean, n_boot=n_boot, seed=seed, level=level)
        return Interval(iv.estimate, iv.low, iv.high, int(a.size), math.nan, "bootstrap")
    b = np.asarray(base_S, dtype=np.float64)
    mean = float(a.mean() - b.mean()) if a.size and b.size else math.nan
    if a.size < 2 or b.size < 2:
        return Interval(mean, math.nan, math.nan, int(min(a.size, b.size)), math.nan, "bootstrap")
    rng = np.random.default_rng(seed)
    da = a[rng.integers(0, a.size, size=(int(n_boot), a.size))].mean(axis=1)
    db = b[rng.integers(0, b.size, size=(int(n_boot), b.size))].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(da - db, [alpha, 1.0 - alpha])
    return Interval(mean, float(low), float(high), int(min(a.size, b.size)), math.nan, "bootstrap")


def verdict(low: float | None, high: float | None, direction: int = 1) -> str:
    """``better`` / ``worse`` / ``no detectable difference`` from an interval of *policy minus baseline*.

    ``direction`` +1: higher is better; -1: lower is better. A missing bound gives no detectable difference.
    """
    lo, hi = _num(low), _num(high)
    if lo is None or hi is None:
        return _NO_DIFF
    if direction < 0:
        lo, hi = -hi, -lo
    if lo > _TOL:
        return "better"
    if hi < -_TOL:
        return "worse"
    return _NO_DIFF


def compare_values(pol: Mapping[int, float], base: Mapping[int, float], direction: int = 1, *, level: float = LEVEL,
                   n_boot: int = N_BOOT, seed: int = SEED) -> dict[str, Any]:
    """Compare one per-seed quantity (e.g. AULC) of a policy with the baseline's: seed -> value each.

    Paired over the shared seeds when there are >= 2 of them, else Welch over all seeds. Returns
    ``{mean, ci, boot_ci, verdict, paired, paired_seeds, n, df, method, se, p_value, mde}`` (``ci`` from
    the t interval; ``p_value`` of the same t-test; ``mde``: :func:`mde` at this alpha and df).
    """
    shared = sorted(set(pol) & set(base))
    if len(shared) >= 2 or (len(shared) == 1 and (len(pol) < 2 or len(base) < 2)):
        d = np.array([pol[s] - base[s] for s in shared], dtype=np.float64)
        iv = t_interval(d, level)
        boot = bootstrap_interval(d, paired=True, n_boot=n_boot, seed=seed, level=level)
        paired, seeds = True, shared
    else:
        a = np.array([pol[s] for s in sorted(pol)], dtype=np.float64)
        b = np.array([base[s] for s in sorted(base)], dtype=np.float64)
        iv = welch_interval(a, b, level)
        boot = bootstrap_interval(a, b, paired=False, n_boot=n_boot, seed=seed, level=level)
        paired, seeds = False, []
    return {"mean": _num(iv.mean), "ci": iv.ci(), "boot_ci": boot.ci(), "verdict": verdict(iv.low, iv.high, direction),
            "paired": paired, "paired_seeds": seeds, "n": iv.n, "df": _num(iv.df), "method": iv.method,
            "se": _num(iv.se), "p_value": p_value(iv), "mde": mde(iv.se, iv.df, level)}


# ---- A/A ---------------------------------------------------------------------------------------
def possible_splits(n_seeds: int) -> int:
    """How many distinct balanced splits of ``n_seeds`` seeds into two halves exist (35 for 8, 6,435 for 16)."""
    n = int(n_seeds)
    if n < 2:
        return 0
    return math.comb(n, n // 2) // (2 if n % 2 == 0 else 1)


def fp_interval(calls: int, splits: int, level: float = LEVEL) -> list[float | None]:
    """Clopper-Pearson interval of a false-positive rate ``calls / splits`` (``[None, None]`` with no splits)."""
    if splits < 1:
        return [None, None]
    ci = sps.binomtest(int(calls), int(splits)).proportion_ci(confidence_level=level, method="exact")
    return [_num(ci.low), _num(ci.high)]


def aa_splits(seeds: Sequence[int], max_splits: int = AA_MAX_SPLITS, seed: int = SEED) -> list[tuple[list[int], list[int]]]:
    """Balanced splits of ``seeds`` into two halves (each unordered split once; sizes n//2 and n - n//2).

    All of them when there are at most ``max_splits``, else ``max_splits`` distinct ones drawn with
    ``numpy.random.default_rng(seed)``.
    """
    ss = sorted(int(s) for s in seeds)
    n = len(ss)
    h = n // 2
    if h < 1:
        return []
    total = possible_splits(n)
    rng = np.random.default_rng(seed)

    def canon(idx: Sequence[int]) -> tuple[int, ...]:
        a = tuple(sorted(idx))
        if n % 2 == 0 and 0 not in a:  # the half holding seed index 0 names an unordered split
            a = tuple(i for i in range(n) if i not in a)
        return a

    if total <= 200_000:
        combos = [c for c in itertools.combinations(range(n), h) if n % 2 or 0 in c]
        if len(combos) > max_splits:
            pick = np.sort(rng.choice(len(combos), size=max_splits, replace=False))
            combos = [combos[i] for i in pick]
    else:
        found: dict[tuple[int, ...], None] = {}
        while len(found) < max_splits:
            found.setdefault(canon(rng.permutation(n)[:h].tolist()), None)
        combos = sorted(found)
    out = []
    for c in combos:
        a = [ss[i] for i in c]
        out.append((a, [s for s in ss if s not in a]))
    return out


def aa_check(values: Mapping[str, Mapping[int, float]], *, max_splits: int = AA_MAX_SPLITS, level: float = LEVEL,
             n_boot: int = N_BOOT, seed: int = SEED, min_seeds: int = AA_MIN_SEEDS,
             headline: str = HEADLINE_METRIC) -> dict[str, Any]:
    """The verdict rule applied between halves of ONE policy's seeds (pure noise), per metric.

    ``values``: metric -> {seed: AULC}. Each half is paired with the other by seed rank (k-th smallest
    seed with k-th smallest) and :func:`compare_values` decides, exactly as for two policies. Returns
    ``{splits, possible_splits, halves, false_positive_rate, fp_ci, calls, boot_false_positive_rate, noise,
    metric, per_metric}`` where the top-level rates are the ``headline`` metric's (else the first
    metric's); ``fp_ci`` is the 95% Clopper-Pearson interval of the false-positive rate over the
    ``splits`` (the splits share seeds: read it as a lower bound on the rate's uncertainty);
    ``noise`` = 1.96 x std of the halves' mean AULC differences. ``splits`` is 0 (rates None) with
    fewer than ``min_seeds`` seeds.
    """
    mets = [m for m in values if len(values[m])]
    seeds = sorted(set().union(*(set(values[m]) for m in mets))) if mets else []
    out: dict[str, Any] = {"splits": 0, "possible_splits": possible_splits(len(seeds)), "halves": None,
                           "n_seeds": len(seeds), "false_positive_rate": None, "fp_ci": [None, None], "calls": None,
                           "boot_false_positive_rate": None, "noise": None, "metric": None, "per_metric": {}}
    if len(seeds) < max(min_seeds, 2):
        out["reason"] = f"needs >= {min_seeds} seeds of the baseline (has {len(seeds)})"
        return out
    splits = aa_splits(seeds, max_splits, seed)
    out["splits"] = len(splits)
    out["halves"] = [len(splits[0][0]), len(splits[0][1])]
    for m in mets:
        direction = metric_direction(m)
        v = values[m]
        calls, boot_calls, diffs = 0, 0, []
        for i, (a, b) in enumerate(splits):
            pa = {k: v[s] for k, s in enumerate(a) if s in v}
            pb = {k: v[s] for k, s in enumerate(b) if s in v}
            res = compare_values(pa, pb, direction, level=level, n_boot=n_boot, seed=seed + i)
            calls += res["verdict"] != _NO_DIFF
            boot_calls += verdict(*res["boot_ci"], direction) != _NO_DIFF
            diffs.append(np.mean(list(pa.values())) - np.mean(list(pb.values())))
        sd = float(np.std(diffs, ddof=1)) if len(diffs) > 1 else math.nan
        out["per_metric"][m] = {"false_positive_rate": calls / len(splits), "calls": int(calls),
                                "fp_ci": fp_interval(calls, len(splits), level),
                                "boot_false_positive_rate": boot_calls / len(splits),
                                "noise": _num(NOISE_Z * sd), "diff_sd": _num(sd)}
    top = headline if headline in out["per_metric"] else (mets[0] if mets else None)
    if top is not None:
        out["metric"] = top
        out.update({k: out["per_metric"][top][k]
                    for k in ("false_positive_rate", "calls", "fp_ci", "boot_false_positive_rate", "noise")})
    return out


# ---- runs --------------------------------------------------------------------------------------
def dedupe(runs: Sequence[RunLike]) -> tuple[list[RunLike], list[dict[str, Any]]]:
    """One run per (setting, label, seed): the same config under two run ids is one seed, not two.

    Keeps the run with the smallest run id; returns ``(kept, duplicates)`` with each duplicate as
    ``{run_id, same_as, label, seed}``.
    """
    kept: dict[tuple[str, str, int], RunLike] = {}
    dups: list[dict[str, Any]] = []
    for r in sorted(runs, key=lambda r: (str(r.setting), str(r.label), int(r.seed), str(r.run_id))):
        key = (str(r.setting), str(r.label), int(r.seed))
        if key in kept:
            dups.append({"run_id": r.run_id, "same_as": kept[key].run_id, "label": r.label, "seed": int(r.seed)})
        else:
            kept[key] = r
    return list(kept.values()), dups


def _matrix(group: Sequence[RunLike], metric: str) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Common labelled sizes ``x_R`` (those every run has), ``y_S_R`` and the seeds (rows sorted by seed)."""
    group = sorted(group, key=lambda r: int(r.seed))
    labs = [r.rounds["labelled"].to_numpy(dtype=np.float64) for r in group]
    x = labs[0] if labs else np.array([], dtype=np.float64)
    for lab in labs[1:]:
        x = np.intersect1d(x, lab)
    x = np.unique(x)
    rows = []
    for r, lab in zip(group, labs):
        if metric not in r.rounds.columns:
            rows.append(np.full(x.size, np.nan))
            continue
        ul, first = np.unique(lab, return_index=True)  # the first row of each labelled size
        rows.append(r.rounds[metric].to_numpy(dtype=np.float64)[first][np.searchsorted(ul, x)])
    y = np.vstack(rows) if rows else np.zeros((0, x.size))
    return x, y, [int(r.seed) for r in group]


def seed_aulcs(group: Sequence[RunLike], metric: str = HEADLINE_METRIC) -> tuple[np.ndarray, dict[int, float]]:
    """The labelled sizes every run of ``group`` has and each seed's AULC of ``metric`` over them (unsmoothed)."""
    x, y, seeds = _matrix(group, metric)
    return x, _per_seed(x, y, seeds)[0]


def _per_seed(x: np.ndarray, y_S_R: np.ndarray, seeds: list[int]) -> tuple[dict[int, float], dict[int, float]]:
    """AULC (unsmoothed) and final value per seed."""
    if x.size == 0:
        return {}, {}
    aulc = {s: metrics.aulc(x, y) for s, y in zip(seeds, y_S_R)}
    final = {s: float(y[-1]) for s, y in zip(seeds, y_S_R)}
    return aulc, final


def _ms(values: Iterable[float]) -> dict[str, float | None]:
    v = np.asarray(list(values), dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"mean": None, "sem": None, "n": 0}
    mean, sem = metrics.mean_sem(v)
    return {"mean": _num(mean), "sem": _num(sem), "n": int(v.size)}


def finite_or_none(v: Any) -> float | None:
    """``v`` as a float when it is a finite number, else None (how JSON and the reports show a missing value)."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


_num = finite_or_none


def _baseline_label(labels: Iterable[str], policies: Mapping[str, str], baseline: str) -> str:
    """``baseline`` itself when a label matches, else the only label of that policy (e.g. ``random k=5``)."""
    labels = set(labels)
    if baseline in labels:
        return baseline
    same = sorted(lab for lab in labels if policies.get(lab) == baseline)
    return same[0] if len(same) == 1 else baseline


def _finite_metrics(group: Sequence[RunLike]) -> list[str]:
    """Quality metrics every run of ``group`` has, finite in every round."""
    out = []
    for m in QUALITY_METRICS:
        if group and all(m in r.rounds.columns and len(r.rounds) and np.isfinite(r.rounds[m].to_numpy(np.float64)).all()
                         for r in group):
            out.append(m)
    return out


def _fewer_labels(base: Sequence[RunLike], pol: Sequence[RunLike], metric: str, paired_seeds: list[int],
                  *, level: float, n_boot: int, seed: int) -> tuple[dict[str, Any] | None, str]:
    """The secondary "X% fewer labels" figure (exact and paper) with its bootstrap CI, or (None, why not)."""
    if paired_seeds:
        base = [r for r in base if int(r.seed) in paired_seeds]
        pol = [r for r in pol if int(r.seed) in paired_seeds]
    xb, b, _ = _matrix(base, metric)
    xp, p, _ = _matrix(pol, metric)
    if not np.array_equal(xb, xp) or xb.size < 2:
        return None, "labelled sizes differ from the baseline's"
    higher = metric_direction(metric) > 0
    point = metrics.label_efficiency(xb, metrics.smooth(b.mean(0), EFFICIENCY_WINDOW),
                                     metrics.smooth(p.mean(0), EFFICIENCY_WINDOW), higher_is_better=higher)
    if not point.reached:
        return None, "does not reach the baseline's final value"
    out: dict[str, Any] = {"target": _num(point.target), "x_policy": _num(point.x_reached),
                           "x_baseline": _num(point.x_final), "n": int(min(len(b), len(p))), "window": EFFICIENCY_WINDOW}
    for paper in (False, True):
        est = metrics.label_efficiency(xb, metrics.smooth(b.mean(0), EFFICIENCY_WINDOW),
                                       metrics.smooth(p.mean(0), EFFICIENCY_WINDOW), paper=paper, higher_is_better=higher)
        item: dict[str, Any] = {"value": _num(est.saving), "ci": None, "reached_fraction": None}
        if min(len(b), len(p)) >= 2:
            ci = metrics.label_efficiency_ci(b, p, xb, paper=paper, window=EFFICIENCY_WINDOW, higher_is_better=higher,
                                             n_boot=n_boot, seed=seed, level=level)
            item["ci"] = [_num(ci.low), _num(ci.high)]  # low None: missed in more than 2.5% of resamples ("never")
            item["reached_fraction"] = _num(ci.reached_fraction)
        out["paper" if paper else "exact"] = item
    return out, "" if out["n"] >= 2 else "1 seed: no CI"


# ---- the whole comparison ----------------------------------------------------------------------
def evidence(runs: Sequence[RunLike], *, baseline: str = "random", level: float = LEVEL, n_boot: int = N_BOOT,
             seed: int = SEED) -> dict[str, Any]:
    """Every policy against the baseline, per setting and quality metric, with A/A check and ceiling.

    Returns a JSON-ready dict (None for every missing or non-finite number)::

        {"baseline", "level", "method": "student-t", "headline": "test_log_likelihood", "n_boot",
         "settings": [...], "duplicates": [{run_id, same_as, label, seed}],
         "policies": [{label, policy, setting, n_seeds, seeds, run_ids, is_baseline, labelled: [x...],
                       final: {labelled, <metric>: {mean, sem, n}}, initial: {<metric>: {mean, sem, n}},
                       aulc: {<metric>: {mean, sem, n}},
                       vs_baseline: None | {<metric>: {aulc_diff: {mean, ci, boot_ci}, final_diff: {mean, ci, boot_ci},
                                                      verdict, final_verdict, paired, paired_seeds, n, df, method,
                                                      direction, se, p_value, mde, headroom, mde_share, effect_share,
                                                      p_holm, holm_verdict, mde_family,
                                                      fewer_labels, fewer_labels_note}}}],
         "aa_check": {<setting>: {splits, possible_splits, halves, n_seeds, baseline, false_positive_rate, fp_ci,
                                  calls, boot_false_positive_rate, noise, metric, per_metric: {<metric>: {...}}}},
         "ceiling": {<setting>: None | {policy: "full", n_seeds, seeds, run_ids, labelled,
                                        metrics: {<metric>: {mean, sem, n, initial, headroom, noise, warning}}}},
         "headroom": {<setting>: {<metric>: {ceiling, source: "truth" | "full" | None, baseline_aulc, headroom}}},
         "power": 0.8, "multiplicity": {method: "holm", alpha, m, family, statement}}

    ``mde``: the minimal detectable effect at 80% power (:func:`mde`) at the verdict's alpha;
    ``mde_family``: the same at Bonferroni's alpha / m, the strictest threshold Holm applies;
    ``mde_share`` / ``effect_share``: ``mde`` / the AULC difference as a share of the headroom
    (ceiling minus the baseline's mean AULC; None when unknown or not positive).

    Runs of :data:`CEILING_POLICY` feed only ``ceiling``. Duplicated (setting, label, seed) count once.
    """
    if not (0.0 < level < 1.0):
        raise ConfigError(f"confidence level must be in (0, 1) (got {level})")
    if int(n_boot) < 1:
        raise ConfigError(f"n_boot must be >= 1 (got {n_boot})")
    kept, dups = dedupe(runs)
    settings = sorted({str(r.setting) for r in kept})
    out: dict[str, Any] = {"baseline": baseline, "level": level, "method": "student-t", "headline": HEADLINE_METRIC,
                           "n_boot": int(n_boot), "settings": settings, "duplicates": dups, "policies": [],
                           "aa_check": {}, "ceiling": {}, "headroom": {}, "power": POWER}
    for setting in settings:
        in_setting = [r for r in kept if str(r.setting) == setting]
        full = [r for r in in_setting if r.policy == CEILING_POLICY]
        rest = [r for r in in_setting if r.policy != CEILING_POLICY]
        groups: dict[str, list[RunLike]] = {}
        for r in sorted(rest, key=lambda r: (str(r.label), int(r.seed))):
            groups.setdefault(str(r.label), []).append(r)
        base_label = _baseline_label(groups, {lab: g[0].policy for lab, g in groups.items()}, baseline)
        base = groups.get(base_label, [])
        labels = sorted(groups, key=lambda lab: (lab != base_label, lab))
        mets = _finite_metrics(rest or full)
        per_label: dict[str, dict[str, tuple[dict[int, float], dict[int, float], np.ndarray]]] = {}
        for lab in labels:
            per_label[lab] = {}
            for m in mets:
                x, y, seeds = _matrix(groups[lab], m)
                aulc, final = _per_seed(x, y, seeds)
                per_label[lab][m] = (aulc, final, x)
        for lab in labels:
            out["policies"].append(_entry(lab, setting, groups[lab], mets, per_label, base_label, base,
                                          level=level, n_boot=n_boot, seed=seed))
        aa = aa_check({m: per_label[base_label][m][0] for m in mets} if base else {}, level=level, n_boot=n_boot,
                      seed=seed)
        aa["baseline"] = base_label if base else None
        if not base:
            aa["reason"] = f"no runs of the baseline {baseline!r} in this setting"
        out["aa_check"][setting] = aa
        out["ceiling"][setting] = _ceiling(full, base or rest, mets, aa)
        out["headroom"][setting] = _headroom(in_setting, base, out["ceiling"][setting], mets, per_label.get(base_label))
        for e in out["policies"]:
            if e["setting"] == setting:
                for m, vs in (e.get("vs_baseline") or {}).items():
                    hr = out["headroom"][setting].get(m) or {}
                    vs["headroom"] = hr.get("headroom")
                    vs["mde_share"] = _share(vs.get("mde"), hr.get("headroom"))
                    vs["effect_share"] = _share(vs["aulc_diff"]["mean"] if "aulc_diff" in vs else None, hr.get("headroom"))
    _apply_holm(out, level)
    return out


def _share(value: Any, headroom: Any) -> float | None:
    """``value / headroom`` when the headroom is known and positive, else None."""
    v, h = _num(value), _num(headroom)
    return v / h if v is not None and h is not None and h > 0 else None


def truth_ceiling(group: Sequence[RunLike], metric: str) -> float | None:
    """Mean over ``group`` of truth.json's Bayes-optimal ``metric`` (None when no run has it)."""
    vals = [_num((getattr(r, "truth", None) or {}).get(metric)) for r in group]
    vals = [v for v in vals if v is not None]
    return float(np.mean(vals)) if vals else None


def _headroom(in_setting: Sequence[RunLike], base: Sequence[RunLike], ceiling: Mapping[str, Any] | None,
              mets: Sequence[str], base_values: Mapping[str, tuple] | None) -> dict[str, Any]:
    """Per metric ``{ceiling, source, baseline_aulc, headroom}``: the ceiling is truth.json's Bayes-optimal
    value (mean over the baseline's runs, else over the setting's) when present, else the ``full`` runs'
    mean; headroom = ceiling minus the baseline's mean AULC, counted in the better direction."""
    out: dict[str, Any] = {}
    for m in mets:
        ceil, source = None, None
        if m in TRUTH_METRICS:
            ceil = truth_ceiling(base, m) if base else None
            if ceil is None:
                ceil = truth_ceiling(in_setting, m)
            source = "truth" if ceil is not None else None
        if ceil is None and ceiling:
            ceil = _num((ceiling.get("metrics", {}).get(m) or {}).get("mean"))
            source = CEILING_POLICY if ceil is not None else None
        b = _num(np.mean(list(base_values[m][0].values()))) if base_values and m in base_values and base_values[m][0] else None
        head = metric_direction(m) * (ceil - b) if ceil is not None and b is not None else None
        out[m] = {"ceiling": ceil, "source": source, "baseline_aulc": b, "headroom": _num(head)}
    return out


def _apply_holm(out: dict[str, Any], level: float) -> None:
    """Holm over every AULC comparison of the report: ``p_holm`` and ``holm_verdict`` per comparison."""
    items = [vs for e in out["policies"] for vs in (e.get("vs_baseline") or {}).values() if "aulc_diff" in vs]
    adj = holm([vs.get("p_value") for vs in items])
    verdicts = holm_verdicts([vs["aulc_diff"]["mean"] for vs in items], adj, [vs["direction"] for vs in items], level)
    m = sum(p is not None for p in adj)
    for vs, p, v in zip(items, adj, verdicts):
        vs["p_holm"], vs["holm_verdict"] = p, v
        vs["mde_family"] = mde(vs.get("se"), vs.get("df"), 1.0 - (1.0 - level) / m) if m else None
    out["multiplicity"] = {
        "method": "holm", "alpha": 1.0 - level, "m": m,
        "family": "every AULC comparison of this report (settings x policies x metrics)",
        "statement": (f"Holm's step-down over the {m} AULC comparisons of this report (family-wise error "
                      f"<= {1.0 - level:.2f}); 'verdict' is per comparison, 'holm_verdict' under the control"),
    }


def _entry(lab: str, setting: str, group: list[RunLike], mets: list[str], per_label: dict, base_label: str,
           base: list[RunLike], *, level: float, n_boot: int, seed: int) -> dict[str, Any]:
    x = _matrix(group, mets[0])[0] if mets else np.array([], dtype=float)
    entry: dict[str, Any] = {
        "label": lab, "policy": group[0].policy, "setting": setting, "n_seeds": len(group),
        "seeds": [int(r.seed) for r in group], "run_ids": [r.run_id for r in group], "is_baseline": lab == base_label,
        "labelled": [float(v) for v in x], "final": {"labelled": _num(x[-1]) if x.size else None},
        "initial": {}, "aulc": {}, "vs_baseline": None,
    }
    for m in mets:
        aulc, final, xm = per_label[lab][m]
        entry["final"][m] = _ms(final.values())
        entry["aulc"][m] = _ms(aulc.values())
        _, y, _ = _matrix(group, m)
        entry["initial"][m] = _ms(y[:, 0] if y.size else [])
    if lab == base_label or not base:
        return entry
    entry["vs_baseline"] = {}
    for m in mets:
        aulc, final, xm = per_label[lab][m]
        b_aulc, b_final, xb = per_label[base_label][m]
        direction = metric_direction(m)
        if not np.array_equal(xm, xb):
            entry["vs_baseline"][m] = {"error": "labelled sizes differ from the baseline's; use the same loop settings",
                                       "verdict": _NO_DIFF, "direction": direction}
            continue
        a = compare_values(aulc, b_aulc, direction, level=level, n_boot=n_boot, seed=seed)
        f = compare_values(final, b_final, direction, level=level, n_boot=n_boot, seed=seed)
        res: dict[str, Any] = {
            "aulc_diff": {k: a[k] for k in ("mean", "ci", "boot_ci")},
            "final_diff": {k: f[k] for k in ("mean", "ci", "boot_ci")},
            "verdict": a["verdict"], "final_verdict": f["verdict"], "paired": a["paired"],
            "paired_seeds": a["paired_seeds"], "n": a["n"], "df": a["df"], "method": a["method"],
            "direction": direction, "se": a["se"], "p_value": a["p_value"], "mde": a["mde"],
            "fewer_labels": None, "fewer_labels_note": "",
        }
        if a["verdict"] != "better":
            res["fewer_labels_note"] = "shown only behind an AULC verdict 'better'"
        elif m.endswith("ece"):  # a coin flip is perfectly calibrated: "reaching" a final ECE is no label saving
            res["fewer_labels_note"] = "not defined for ECE (calibration does not grow with labels)"
        else:
            res["fewer_labels"], res["fewer_labels_note"] = _fewer_labels(
                base, group, m, a["paired_seeds"], level=level, n_boot=n_boot, seed=seed)
        entry["vs_baseline"][m] = res
    return entry


def _ceiling(full: list[RunLike], reference: list[RunLike], mets: list[str], aa: dict[str, Any]) -> dict[str, Any] | None:
    """Ceiling per metric from the ``full`` runs; headroom over the reference's round-0 value; warning."""
    if not full:
        return None
    full = sorted(full, key=lambda r: int(r.seed))
    labelled = [float(r.rounds["labelled"].iloc[-1]) for r in full if len(r.rounds)]
    out: dict[str, Any] = {"policy": CEILING_POLICY, "n_seeds": len(full), "seeds": [int(r.seed) for r in full],
                           "run_ids": [r.run_id for r in full], "labelled": _num(np.mean(labelled)) if labelled else None,
                           "metrics": {}}
    for m in mets:
        vals = [float(r.rounds[m].iloc[-1]) for r in full if m in r.rounds.columns and len(r.rounds)]
        ms = _ms(vals)
        init = _ms([float(r.rounds[m].iloc[0]) for r in reference if m in r.rounds.columns and len(r.rounds)])
        headroom = None
        if ms["mean"] is not None and init["mean"] is not None:
            headroom = metric_direction(m) * (ms["mean"] - init["mean"])
        noise = (aa.get("per_metric") or {}).get(m, {}).get("noise")
        warning = None
        if headroom is not None and noise is not None and headroom < noise:
            warning = (f"headroom {headroom:+.4f} is below the A/A noise {noise:.4f}: no policy can show a "
                       "detectable gain here")
        out["metrics"][m] = {"mean": ms["mean"], "sem": ms["sem"], "n": ms["n"], "initial": init["mean"],
                             "headroom": _num(headroom), "noise": noise, "warning": warning}
    return out


# ---- formatting (shared by the text report and the dashboard: "never" and "-", never NaN) -----------
def aa_line(aa: Mapping[str, Any] | None, baseline: str = "baseline") -> str:
    """The A/A check in one line (the text report and the dashboard print this)."""
    if not aa or not aa.get("splits"):
        return f"A/A check: not run ({(aa or {}).get('reason') or 'no baseline runs'})"
    per = aa["per_metric"][aa["metric"]]
    k = round(per["false_positive_rate"] * aa["splits"])
    flag = "" if per["false_positive_rate"] <= 0.10 else "  WARNING: above 0.10, treat the verdicts with caution"
    ci = per.get("fp_ci") or [None, None]
    spread = (f", 95% CI [{ci[0]:.2f}, {ci[1]:.2f}] over the splits" if None not in ci else "")
    possible = aa.get("possible_splits")
    of = (f" of {possible:,} possible" if possible and possible != aa["splits"] else " (all there are)" if possible else "")
    return (f"A/A check ({aa.get('baseline') or baseline}, {aa['n_seeds']} seeds, {aa['splits']} splits{of} "
            f"{aa['halves'][0]} v {aa['halves'][1]}, AULC of {METRIC_NAMES.get(aa['metric'], aa['metric'])}): "
            f"the rule called noise a difference in {k}/{aa['splits']} splits (false-positive rate "
            f"{per['false_positive_rate']:.2f}{spread}; a percentile bootstrap would: "
            f"{per['boot_false_positive_rate']:.2f}); noise {fmt_value(per['noise'])}{flag}")


def fmt_mde(vs: Mapping[str, Any] | None, digits: int = 4) -> str:
    """``MDE 0.0123 (41% of headroom)``: the smallest effect a comparison could detect; ``-`` without one."""
    if not vs or _num(vs.get("mde")) is None:
        return "-"
    share = _num(vs.get("mde_share"))
    return f"{vs['mde']:.{digits}f}" + (f" ({share:.0%} of headroom)" if share is not None else "")


def fmt_value(v: Any, digits: int = 4, signed: bool = False) -> str:
    """A number as text, ``-`` for None / NaN / inf."""
    f = _num(v)
    if f is None:
        return "-"
    return f"{f:+.{digits}f}" if signed else f"{f:.{digits}f}"


def fmt_interval(ci: Sequence[Any] | None, digits: int = 4, n: int | None = None) -> str:
    """``[lo, hi]`` with signs; ``1 seed: no CI`` when ``n`` < 2; ``-`` when there is no interval."""
    if n is not None and n < 2:
        return "1 seed: no CI"
    if not ci or all(_num(c) is None for c in ci):
        return "-"
    return f"[{fmt_value(ci[0], digits, True)}, {fmt_value(ci[1], digits, True)}]"


def fmt_saving(fl: Mapping[str, Any] | None, which: str = "exact") -> str:
    """The secondary "fewer labels" figure: ``23.4% [5.0, 41.2]``; ``never`` for a missing bound; ``-`` if absent."""
    if not fl or not fl.get(which) or _num(fl[which].get("value")) is None:
        return "-"
    item = fl[which]
    text = f"{item['value'] * 100:.1f}%"
    ci = item.get("ci")
    if ci is None:
        return text + " (1 seed: no CI)" if (fl.get("n") or 0) < 2 else text
    lo = "never" if _num(ci[0]) is None else f"{ci[0] * 100:.1f}"  # same precision as the value: a bound
    hi = "never" if _num(ci[1]) is None else f"{ci[1] * 100:.1f}"  # equal to it never looks outside it
    return f"{text} [{lo}, {hi}]"
