"""How big U is next to beta*H: per-round spread diagnostics and the ``scaled`` beta (issue 7 item 4).

BAL-PM scores every pool item ``U + beta * H``. Whether U can change a pick depends on how much U
*varies* over the pool compared with how much ``beta * H`` varies: at the paper's beta = 0.01 the
spread of ``beta * H`` is often 20-130x that of U, and the selection is then a prompt-diversity
sampler in which U only breaks ties. These pure functions measure it (the loop records them per
round in rounds.parquet, columns :data:`ROUND_DIAGNOSTIC_COLUMNS`) and compute the ``scaled`` beta.

Columns (over the remaining pool items at the start of the round's selection, step 0; one value per
comparison, so a prompt with four comparisons counts four times):

================================  ==================================================================
``u_std`` / ``u_iqr``             standard deviation (ddof 0) / interquartile range of U
``beta_h_std`` / ``beta_h_iqr``   the same for ``beta_effective * H`` (NaN for policies without H)
``beta_h_to_u_std``               ``beta_h_std / u_std`` (> 1: the entropy term dominates the spread;
``beta_h_to_u_iqr``               ``beta_h_iqr / u_iqr``; inf when U has no spread but beta*H has)
``score_h_spearman``              Spearman rank correlation of the final score with H (1.0: the
                                  ranking is H's alone; negative for the entropy minimiser)
``beta_effective``                the beta the selection used (``beta`` in ``fixed`` mode)
================================  ==================================================================

Every column is NaN in the last round (it selects nothing). Policies without an entropy term
(random, BALD and the stochastic BALD family) record the U spreads (U of ``acquisition.uncertainty``)
and NaN for every H-based column.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

ROUND_DIAGNOSTIC_COLUMNS: tuple[str, ...] = (
    "u_std", "u_iqr", "beta_h_std", "beta_h_iqr", "beta_h_to_u_std", "beta_h_to_u_iqr",
    "score_h_spearman", "beta_effective",
)
#: the spread ratio beta*H / U above which a round is called a prompt-diversity sampler
DIVERSITY_RATIO = 10.0


def iqr(x_N: np.ndarray) -> float:
    """Interquartile range ``q75 - q25`` (numpy's linear interpolation) of the finite values; NaN if none."""
    x = np.asarray(x_N, dtype=np.float64)
    x = x[np.isfinite(x)]
    if not x.size:
        return float("nan")
    q25, q75 = np.percentile(x, [25.0, 75.0])
    return float(q75 - q25)


def std(x_N: np.ndarray) -> float:
    """Population standard deviation (ddof 0) of the finite values; NaN if none."""
    x = np.asarray(x_N, dtype=np.float64)
    x = x[np.isfinite(x)]
    return float(x.std()) if x.size else float("nan")


def spread_ratio(num: float, den: float) -> float:
    """``num / den`` for spreads: inf when only ``den`` is 0, NaN when both are 0 or either is NaN."""
    if not (math.isfinite(num) and math.isfinite(den)):
        return float("nan")
    if den == 0:
        return float("inf") if num > 0 else float("nan")
    return float(num / den)


def spearman(a_N: np.ndarray, b_N: np.ndarray) -> float:
    """Spearman rank correlation (average ranks for ties) over the items where both are finite;
    NaN when fewer than 2 such items or when either is constant."""
    from scipy.stats import rankdata

    a = np.asarray(a_N, dtype=np.float64)
    b = np.asarray(b_N, dtype=np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 2:
        return float("nan")
    ra, rb = rankdata(a[ok]), rankdata(b[ok])
    ra -= ra.mean()
    rb -= rb.mean()
    den = math.sqrt(float((ra * ra).sum()) * float((rb * rb).sum()))
    return float((ra * rb).sum() / den) if den > 0 else float("nan")


def empty_diagnostics() -> dict[str, float]:
    """Every diagnostic column as NaN (the last round, or a policy that records none)."""
    return {c: float("nan") for c in ROUND_DIAGNOSTIC_COLUMNS}


def score_diagnostics(u_N: np.ndarray, h_N: np.ndarray | None = None, beta: float = float("nan"),
                      score_N: np.ndarray | None = None) -> dict[str, float]:
    """The :data:`ROUND_DIAGNOSTIC_COLUMNS` of one round from the pool's U, H, beta and final score.

    Without ``h_N`` (a policy with no entropy term) only ``u_std`` and ``u_iqr`` are set. ``beta`` is
    the beta the score used (the effective one in ``scaled`` mode); ``score_N`` defaults to
    ``u + beta * h``.
    """
    out = empty_diagnostics()
    u = np.asarray(u_N, dtype=np.float64)
    out["u_std"], out["u_iqr"] = std(u), iqr(u)
    if h_N is None:
        return out
    h = np.asarray(h_N, dtype=np.float64)
    if h.shape != u.shape:
        raise ValueError(f"H has shape {h.shape} but U has {u.shape}; pass one value of each per pool item")
    beta_h = float(beta) * h
    score = u + beta_h if score_N is None else np.asarray(score_N, dtype=np.float64)
    out.update(beta_h_std=std(beta_h), beta_h_iqr=iqr(beta_h), beta_effective=float(beta),
               score_h_spearman=spearman(score, h))
    out["beta_h_to_u_std"] = spread_ratio(out["beta_h_std"], out["u_std"])
    out["beta_h_to_u_iqr"] = spread_ratio(out["beta_h_iqr"], out["u_iqr"])
    return out


def scaled_beta(beta: float, u_N: np.ndarray, h_N: np.ndarray) -> tuple[float, str]:
    """The ``scaled`` beta of one round and the rule that set it: ``(beta_effective, rule)``.

    ``beta_effective = beta * IQR(U) / IQR(H)`` over the pool at step 0 (rule ``"iqr"``), so that the
    IQR of ``beta_effective * H`` is ``beta`` times the IQR of U. Fallbacks, in order: when either IQR
    is 0 (heavy ties: e.g. U = 0 with ``uncertainty=none``, or fewer than about four distinct H
    values) the standard deviations are used instead (rule ``"std"``); when either of those is 0 too
    (U or H constant over the pool: nothing to scale against) beta is used unchanged (rule
    ``"fixed"``, as in the paper's mode).
    """
    u = np.asarray(u_N, dtype=np.float64)
    h = np.asarray(h_N, dtype=np.float64)
    iu, ih = iqr(u), iqr(h)
    if iu > 0 and ih > 0:
        return float(beta) * iu / ih, "iqr"
    su, sh = std(u), std(h)
    if su > 0 and sh > 0:
        return float(beta) * su / sh, "std"
    return float(beta), "fixed"


def policy_diagnostics(policy: Any, state: Any, u_N: np.ndarray, entry: Any = None) -> dict[str, float]:
    """The diagnostics of one selecting round: the policy's own (``policy.round_diagnostics(state)``) where
    its registry ``entry`` declares the entropy term's columns (``beta_h`` among its step columns: BAL-PM),
    otherwise the spread of ``u_N`` alone (the beta*H columns NaN)."""
    own = getattr(policy, "round_diagnostics", None)
    declares = entry is None or "beta_h" in getattr(entry, "step_columns", ())
    if callable(own) and declares:
        return own(state)
    return score_diagnostics(u_N)
