"""Entropy of the acquired prompt distribution: the pool-radius and KL estimators, counts, and the
Kozachenko-Leonenko entropy of a point set. The kNN radii and counts they take come from
:mod:`balpm.engine.knn`.

docs/method.md section 4. For a pool candidate x (prompt features after normalisation):

* ``r_k(x)``: distance to the k-th nearest neighbour within the current pool, **x itself counted as
  neighbour 1** (k = 13 means the 12th other point; duplicates of x are at distance 0).
* ``n(x)``: number of labelled prompts z with ``||x - z|| <= r_k(x)`` (inclusive).
* pool-radius ("KSG-style") score: ``H(x) = log(2 r_k(x) + floor) - digamma(n(x) + 1) / d``;
  ``d`` is a free weight, not the dimension.
* KL score: ``H(x) = log(2 rho_k(x) + floor)``, ``rho_k`` the distance to the k-th nearest *labelled*
  prompt (no self-inclusion: x is not labelled).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import digamma, gammaln

from balpm.engine import knn
from balpm.engine.knn import check_features, knn_radii
from balpm.errors import ConfigError, FeatureError


def log_distance_term(radius_N: np.ndarray, floor: float = 1e-4) -> np.ndarray:
    """``log(2 r + floor)`` (the first term of both estimators)."""
    return np.log(2.0 * np.asarray(radius_N, dtype=np.float64) + floor)


def count_term(n_N: np.ndarray, d: float = 1.0) -> np.ndarray:
    """``digamma(n + 1) / d`` (the redundancy penalty of the pool-radius estimator)."""
    return digamma(np.asarray(n_N, dtype=np.float64) + 1.0) / d


def pool_radius_entropy(radius_N: np.ndarray, n_N: np.ndarray, d: float = 1.0, floor: float = 1e-4) -> np.ndarray:
    """``H(x) = log(2 r_k(x) + floor) - digamma(n(x) + 1) / d`` for every item."""
    return log_distance_term(radius_N, floor) - count_term(n_N, d)


def kl_point_entropy(rho_N: np.ndarray, floor: float = 1e-4) -> np.ndarray:
    """KL-variant score ``log(2 rho_k(x) + floor)``."""
    return log_distance_term(rho_N, floor)


def replay_counts(n0_N: np.ndarray, increments: pd.DataFrame | None, step: int) -> np.ndarray:
    """Exact count n(x) of every pool item after ``step`` picks (steps ``0 .. step-1`` applied).

    ``increments`` is ``Selection.increments`` (columns ``step``, ``index``): each row says the pick at
    that step raised the count of that pool position by one.
    """
    n = np.asarray(n0_N, dtype=np.int64).copy()
    if increments is None or len(increments) == 0 or step <= 0:
        return n
    inc = increments[increments["step"].to_numpy() < step]["index"].to_numpy(dtype=np.int64)
    if inc.size and (inc.min() < 0 or inc.max() >= n.shape[0]):
        raise FeatureError(f"increments name pool positions outside 0..{n.shape[0] - 1}; they belong to another pool")
    return n + np.bincount(inc, minlength=n.shape[0])


def kl_entropy(feats_N_D: np.ndarray, k: int = 3, exact: bool = True) -> float:
    """Kozachenko-Leonenko differential entropy estimate (nats) of the distribution of the rows.

    ``H = psi(N) - psi(k) + log V_D + (D / N) sum_i log r_i`` with ``r_i`` the Euclidean distance of
    row i to its k-th nearest *other* row and ``V_D = pi^(D/2) / Gamma(D/2 + 1)`` the volume of the
    unit ball (Kozachenko and Leonenko 1987; Kraskov, Stoegbauer and Grassberger 2004, eq. 20).
    """
    x = check_features(feats_N_D, "features")
    n, dim = x.shape
    if k < 1 or k >= n:
        raise ConfigError(f"KL entropy needs 1 <= k < N (got k = {k}, N = {n})")
    r = knn_radii(x, k, include_self=False, exact=exact)
    if (r <= 0).any():
        raise FeatureError(f"{int((r <= 0).sum())} row(s) have {k} or more exact duplicates; "
                           "the KL estimate is -inf (deduplicate or raise k)")
    log_vd = 0.5 * dim * np.log(np.pi) - gammaln(0.5 * dim + 1.0)
    return float(digamma(n) - digamma(k) + log_vd + dim * np.mean(np.log(r)))


def __getattr__(name: str) -> object:
    """The kNN names that imports written before the split still ask of this module under its old name
    (``build_geometry`` and kin, now in :mod:`balpm.engine.knn`; see balpm/_moved.py)."""
    if not name.startswith("__") and hasattr(knn, name):
        return getattr(knn, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
