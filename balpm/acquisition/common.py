"""Helpers shared by the policies: input checks, uncertainty from the pool state, ranked batches."""
from __future__ import annotations

import numpy as np

from balpm.acquisition.base import PoolState, Selection
from balpm.engine.uncertainty import score as uncertainty_score
from balpm.errors import ConfigError, FeatureError


def check_batch(batch_size: int, pool_size: int) -> None:
    """One-line ConfigError unless 1 <= batch_size <= pool_size."""
    if int(batch_size) != batch_size or batch_size < 1:
        raise ConfigError(f"batch size must be an integer >= 1 (got {batch_size})")
    if batch_size > pool_size:
        raise ConfigError(f"batch size {batch_size} exceeds the pool size {pool_size}; lower the batch size or rounds")


def state_uncertainty(state: PoolState, kind: str) -> np.ndarray:
    """U per pool item from the members' probabilities (:func:`balpm.engine.uncertainty.score`)."""
    u = uncertainty_score(state.probs_N_K, kind)
    n_pool = np.asarray(state.pool_prompts_N_D).shape[0] if state.pool_prompts_N_D is not None else u.size
    if u.size != n_pool:
        raise FeatureError(f"{u.size} probability rows for {n_pool} pool prompt rows; they must match one to one")
    return u


def top_b(values_N: np.ndarray, batch_size: int) -> np.ndarray:
    """Positions of the ``batch_size`` largest values, largest first, ties to the lowest position."""
    order = np.argsort(-np.asarray(values_N, dtype=np.float64), kind="stable")
    return order[:batch_size].astype(np.int64)


def ranked_selection(score_N: np.ndarray, u_N: np.ndarray, batch_size: int, **extra: np.ndarray) -> Selection:
    """Selection of the top-``batch_size`` scores with a steps table (step, index, score, u, extra...)."""
    # lazy: pandas, kept out of CLI start-up (the registry imports every policy module)
    import pandas as pd
    idx = top_b(score_N, batch_size)
    data = {"step": np.arange(idx.size, dtype=np.int64), "index": idx, "score": np.asarray(score_N)[idx],
            "u": u_N[idx]}
    data.update({name: np.asarray(col)[idx] for name, col in extra.items()})
    return Selection(indices=idx, steps=pd.DataFrame(data))
