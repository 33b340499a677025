"""Uncertainty scores of a preference ensemble, from each member's probabilities (docs/method.md section 3).

Every function takes ``probs_N_K``: for N comparisons, each of K members' probability that the first
answer is preferred, and returns ``scores_N`` in float64 (natural log, nats). The binary entropy uses
``xlogy`` so that probabilities of exactly 0 or 1 give 0, never NaN.

* :func:`bald`: mutual information H[p_bar] - (1/K) sum_m H[p_m] (epistemic uncertainty).
* :func:`predictive_entropy`: H[p_bar].
* :func:`aleatoric_entropy`: (1/K) sum_m H[p_m].
* :func:`variance`: variance of p_m across members (ddof=0, as the reference).
"""
from __future__ import annotations

import numpy as np

from balpm.errors import ConfigError, FeatureError
from balpm.knobs import UNCERTAINTIES


def check_probs(probs_N_K: np.ndarray) -> np.ndarray:
    """Return ``probs_N_K`` as a float64 (N, K) array, or raise a one-line :class:`FeatureError`."""
    probs = np.asarray(probs_N_K, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] < 1:
        raise FeatureError(
            f"member probabilities must be a 2-D array (comparisons x members), got shape {probs.shape}")
    if not np.isfinite(probs).all():
        bad = int((~np.isfinite(probs)).any(axis=1).sum())
        raise FeatureError(f"member probabilities contain NaN or inf in {bad} row(s); check the model's predictions")
    if probs.size and (probs.min() < 0.0 or probs.max() > 1.0):
        raise FeatureError(
            f"member probabilities must lie in [0, 1] (found {probs.min():.4g} .. {probs.max():.4g}); "
            "pass probabilities, not logits")
    return probs


def binary_entropy(p: np.ndarray) -> np.ndarray:
    """H(p) = -p log p - (1 - p) log(1 - p) in nats, exactly 0 at p = 0 and p = 1."""
    # lazy: scipy, kept out of CLI start-up (the registry imports every policy module)
    from scipy.special import xlogy
    p = np.asarray(p, dtype=np.float64)
    return -(xlogy(p, p) + xlogy(1.0 - p, 1.0 - p))


def predictive_entropy(probs_N_K: np.ndarray) -> np.ndarray:
    """H[p_bar]: entropy of the ensemble-averaged probability (total uncertainty)."""
    probs = check_probs(probs_N_K)
    return binary_entropy(probs.mean(axis=1))


def aleatoric_entropy(probs_N_K: np.ndarray) -> np.ndarray:
    """(1/K) sum_m H[p_m]: the members' mean entropy (expected data uncertainty)."""
    probs = check_probs(probs_N_K)
    return binary_entropy(probs).mean(axis=1)


def bald(probs_N_K: np.ndarray) -> np.ndarray:
    """BALD mutual information H[p_bar] - (1/K) sum_m H[p_m] (epistemic uncertainty, >= 0 up to rounding)."""
    probs = check_probs(probs_N_K)
    return binary_entropy(probs.mean(axis=1)) - binary_entropy(probs).mean(axis=1)


def variance(probs_N_K: np.ndarray) -> np.ndarray:
    """Variance of the members' probabilities (population variance, ddof=0)."""
    probs = check_probs(probs_N_K)
    return probs.var(axis=1)


def score(probs_N_K: np.ndarray, kind: str) -> np.ndarray:
    """The uncertainty score named ``kind`` (one of ``config.UNCERTAINTIES``); ``"none"`` gives zeros."""
    if kind == "epistemic":
        return bald(probs_N_K)
    if kind == "predictive":
        return predictive_entropy(probs_N_K)
    if kind == "aleatoric":
        return aleatoric_entropy(probs_N_K)
    if kind == "variance":
        return variance(probs_N_K)
    if kind == "none":
        return np.zeros(check_probs(probs_N_K).shape[0], dtype=np.float64)
    raise ConfigError(f"unknown uncertainty {kind!r}; choose one of {', '.join(UNCERTAINTIES)}")
