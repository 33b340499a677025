"""k-center coreset: greedy farthest-first traversal of the prompt features (Sener & Savarese 2018).

Diversity only, no model: every step picks the pool item farthest from its nearest *centre* (the
labelled items and the picks so far) and makes it a centre,

    x_t = argmax_x min_{c in centres} ||z(x) - z(c)||,

with ``z`` the z-score of the features (mean and standard deviation of pool and labelled rows together,
float64 statistics; a constant column is left centred). The 2-approximation of the k-center problem.
The covered radius ``min_c ||z(x_t) - z(c)||`` is recorded per step (it never increases).

Nearest-labelled distances come from a FAISS flat (exact) L2 index; each pick then updates every
pool item's nearest-centre distance with one matrix-vector product (``||x||^2 + ||p||^2 - 2 x.p``,
float32 product, float64 norms). With no labelled items the first centre is drawn from ``rng``.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from balpm.acquisition.base import PoolState, Selection
from balpm.acquisition.common import check_batch, state_uncertainty
from balpm.acquisition.registry import register_policy
from balpm.knobs import NoKnobs

if TYPE_CHECKING:  # annotations only; the code imports these where it runs (lazy, see below)
    import pandas as pd

BLOCK_ROWS = 16384  # rows per block of the distance updates (bounds the float64 temporaries)


def zscore(pool_N_D: np.ndarray, labelled_L_D: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both sets z-scored with the mean and std of their union (float64 statistics, float32 output)."""
    n = pool_N_D.shape[0] + labelled_L_D.shape[0]
    mean = (pool_N_D.sum(axis=0, dtype=np.float64) + labelled_L_D.sum(axis=0, dtype=np.float64)) / n
    sq = (np.square(pool_N_D, dtype=np.float64).sum(axis=0) + np.square(labelled_L_D, dtype=np.float64).sum(axis=0)) / n
    std = np.sqrt(np.maximum(sq - mean ** 2, 0.0))
    std[std == 0] = 1.0
    mean32, inv32 = mean.astype(np.float32), (1.0 / std).astype(np.float32)
    out = []
    for x in (pool_N_D, labelled_L_D):
        z = np.subtract(x, mean32, dtype=np.float32)  # one float32 copy, scaled in place
        z *= inv32
        out.append(z)
    return out[0], out[1]


def sq_norms(x_N_D: np.ndarray) -> np.ndarray:
    """Row squared norms in float64, in blocks."""
    out = np.empty(x_N_D.shape[0], dtype=np.float64)
    for i in range(0, x_N_D.shape[0], BLOCK_ROWS):
        out[i:i + BLOCK_ROWS] = np.square(x_N_D[i:i + BLOCK_ROWS], dtype=np.float64).sum(axis=1)
    return out


def nearest_sq_distances(pool_N_D: np.ndarray, centres_L_D: np.ndarray) -> np.ndarray:
    """Squared L2 distance of every pool row to its nearest centre (FAISS IndexFlatL2, exact search);
    +inf for every row when there are no centres."""
    if centres_L_D.shape[0] == 0:
        return np.full(pool_N_D.shape[0], np.inf)
    import faiss

    index = faiss.IndexFlatL2(pool_N_D.shape[1])
    index.add(np.ascontiguousarray(centres_L_D, dtype=np.float32))
    dist, _ = index.search(np.ascontiguousarray(pool_N_D, dtype=np.float32), 1)
    return np.maximum(dist[:, 0].astype(np.float64), 0.0)


def sq_distances_to(pool_N_D: np.ndarray, norms_N: np.ndarray, j: int) -> np.ndarray:
    """Squared distances of every pool row to pool row j (one product, in blocks), clipped at 0."""
    p = pool_N_D[j]
    out = np.empty(pool_N_D.shape[0], dtype=np.float64)
    for i in range(0, pool_N_D.shape[0], BLOCK_ROWS):
        out[i:i + BLOCK_ROWS] = norms_N[i:i + BLOCK_ROWS] + norms_N[j] - 2.0 * (pool_N_D[i:i + BLOCK_ROWS] @ p)
    out[j] = 0.0
    return np.maximum(out, 0.0)


def select_coreset(pool_prompts_N_D: np.ndarray, labelled_prompts_L_D: np.ndarray, batch_size: int,
                   rng: np.random.Generator, u_N: np.ndarray | None = None,
                   on_start: Callable[[np.ndarray], None] | None = None) -> Selection:
    """Greedy k-center batch (see module docstring). Steps: ``score`` = ``covered_radius`` = the pick's
    distance to its nearest centre (z-scored units; inf for a first centre with nothing labelled), ``u`` =
    the given uncertainty (NaN if None). ``on_start(distance_N)``, when given, receives every pool item's
    distance to its nearest labelled item before the first pick."""
    # lazy: faiss, pandas, scipy, kept out of CLI start-up (the registry imports every policy module)
    import pandas as pd

    from balpm.engine.knn import check_features
    pool = check_features(pool_prompts_N_D, "pool prompt features")
    lab = check_features(labelled_prompts_L_D, "labelled prompt features", dim=pool.shape[1], allow_empty=True)
    n = pool.shape[0]
    check_batch(batch_size, n)
    z_pool, z_lab = zscore(pool, lab)
    norms = sq_norms(z_pool)
    nearest = nearest_sq_distances(z_pool, z_lab)
    if on_start is not None:
        on_start(np.sqrt(nearest))
    alive = np.ones(n, dtype=bool)
    picks, radius = [], []
    for step in range(batch_size):
        if step == 0 and lab.shape[0] == 0:
            j = int(rng.integers(n))
        else:
            j = int(np.argmax(np.where(alive, nearest, -np.inf)))  # ties to the lowest pool position
        picks.append(j)
        radius.append(float(np.sqrt(nearest[j])))
        alive[j] = False
        np.minimum(nearest, sq_distances_to(z_pool, norms, j), out=nearest)
    idx = np.asarray(picks, dtype=np.int64)
    r = np.asarray(radius, dtype=np.float64)
    u = np.asarray(u_N, dtype=np.float64)[idx] if u_N is not None else np.full(idx.size, np.nan)
    steps = pd.DataFrame({"step": np.arange(idx.size, dtype=np.int64), "index": idx, "score": r, "u": u,
                          "covered_radius": r})
    return Selection(indices=idx, steps=steps)


class CoresetPolicy:
    """k-center coreset as a :class:`~balpm.acquisition.base.Policy` (:func:`select_coreset`); ``u`` of
    the steps table is the configured uncertainty (recorded, not used)."""

    def __init__(self, uncertainty: str = "epistemic", name: str = "coreset") -> None:
        self.name = name
        self.uncertainty = uncertainty
        self._start: tuple[PoolState, np.ndarray, np.ndarray] | None = None  # (state, u, distance) of the last select

    def select(self, state: PoolState, batch_size: int, rng: np.random.Generator) -> Selection:
        """Farthest-first batch on the z-scored prompt features."""
        u = state_uncertainty(state, self.uncertainty)
        check_batch(batch_size, u.size)

        def keep(distance_N: np.ndarray) -> None:
            self._start = (state, u, distance_N)

        return select_coreset(state.pool_prompts_N_D, state.labelled_prompts_L_D, batch_size, rng, u_N=u,
                              on_start=keep)

    def pool_table(self, state: PoolState) -> pd.DataFrame:
        """Per pool item: ``u`` and ``score`` = its distance to the nearest labelled item (z-scored units)."""
        # lazy: pandas, kept out of CLI start-up (the registry imports every policy module)
        import pandas as pd
        if self._start is None or self._start[0] is not state:  # not from select: the same (rng-free) numbers
            self.select(state, 1, np.random.default_rng(0))
        return pd.DataFrame({"u": self._start[1], "score": self._start[2]})


register_policy("coreset", knobs=NoKnobs, build=lambda knobs, common: CoresetPolicy(uncertainty=common.uncertainty),
                help="k-center greedy on z-scored prompt features, diversity only (Sener & Savarese 2018)",
                color="#66a61e", step_columns=("covered_radius",), abilities={"pool_table"},
                label_uncertainty=False)
