"""D-optimal design on pair-feature differences: the APO design score (Das et al. 2024).

A linear Bradley-Terry model ``P(a > b) = sigmoid(theta . phi)`` with ``phi = f(a) - f(b)`` (the pair's
answer features, first minus second) has, after the labelled pairs, the design matrix

    V = lambda I + sum_{labelled} phi phi^T,

and the uncertainty of its score on a pair is ``||phi(x)||_{V^-1} = sqrt(phi^T V^-1 phi)``. The batch is
chosen greedily: each step picks the pool pair of largest norm and adds it to V by a rank-one
(Sherman-Morrison) update, so the next scores are those of the design that includes the picks:

    s_i <- s_i - (phi_i . w)^2 / (1 + s_j),   w = V^-1 phi_j,   V^-1 <- V^-1 - w w^T / (1 + s_j).

Each pick raises ``log det V`` by ``log(1 + s_j)`` (recorded): greedy D-optimal design. Model-free,
deterministic (``rng`` unused); the sign of phi (which answer is first) does not matter.

``V^-1`` is never formed at the start: with L labelled pairs and D dimensions the initial scores use
the dual (Woodbury) form ``V^-1 = (I - Phi^T (lambda I + Phi Phi^T)^-1 Phi) / lambda`` when L < D and
a Cholesky factor of V otherwise (float64); later steps keep the rank-one vectors w.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from balpm.acquisition.base import PoolState, RunPool, Selection
from balpm.acquisition.common import check_batch, state_uncertainty
from balpm.acquisition.registry import register_policy
from balpm.errors import ConfigError
from balpm.knobs import knob

if TYPE_CHECKING:  # annotations only; the code imports these where it runs (lazy, see below)
    import pandas as pd

BLOCK_ROWS = 8192  # pool rows per float64 block


def pair_differences(run: RunPool, positions: np.ndarray) -> np.ndarray:
    """``phi = first answer - second answer`` (float32, (n, D)) of the run positions, built in blocks."""
    positions = np.asarray(positions, dtype=np.int64)
    d = run.pairs_F_2_D.shape[-1]
    out = np.empty((positions.size, d), dtype=np.float32)
    for i in range(0, positions.size, BLOCK_ROWS):
        pairs = run.pairs(positions[i:i + BLOCK_ROWS])
        np.subtract(pairs[:, 0], pairs[:, 1], out=out[i:i + BLOCK_ROWS], dtype=np.float32)
    return out


class DesignInverse:
    """``V0^-1 x`` and the initial scores ``phi^T V0^-1 phi`` for ``V0 = lam I + Phi_L^T Phi_L``."""

    def __init__(self, labelled_L_D: np.ndarray, lam: float) -> None:
        # lazy: scipy, kept out of CLI start-up (the registry imports every policy module)
        import scipy.linalg
        self.lam = float(lam)
        self.phi_L = np.asarray(labelled_L_D, dtype=np.float64)
        n_lab, d = self.phi_L.shape
        self.dual = n_lab < d
        if self.dual:   # Woodbury: an L x L system
            self.factor = scipy.linalg.cho_factor(self.lam * np.eye(n_lab) + self.phi_L @ self.phi_L.T) if n_lab else None
        else:           # Cholesky of the D x D design matrix
            self.factor = scipy.linalg.cho_factor(self.lam * np.eye(d) + self.phi_L.T @ self.phi_L)

    def solve(self, x_D: np.ndarray) -> np.ndarray:
        """``V0^-1 x``."""
        # lazy: scipy, kept out of CLI start-up (the registry imports every policy module)
        import scipy.linalg
        x = np.asarray(x_D, dtype=np.float64)
        if not self.dual:
            return scipy.linalg.cho_solve(self.factor, x)
        if self.factor is None:
            return x / self.lam
        return (x - self.phi_L.T @ scipy.linalg.cho_solve(self.factor, self.phi_L @ x)) / self.lam

    def scores(self, phi_N_D: np.ndarray) -> np.ndarray:
        """``phi_i^T V0^-1 phi_i`` for every row, in float64 blocks."""
        # lazy: scipy, kept out of CLI start-up (the registry imports every policy module)
        import scipy.linalg
        out = np.empty(phi_N_D.shape[0], dtype=np.float64)
        for i in range(0, phi_N_D.shape[0], BLOCK_ROWS):
            x = np.asarray(phi_N_D[i:i + BLOCK_ROWS], dtype=np.float64)
            sq = np.einsum("nd,nd->n", x, x)
            if self.dual:
                if self.factor is None:
                    out[i:i + x.shape[0]] = sq / self.lam
                    continue
                c = x @ self.phi_L.T                                       # (n, L)
                out[i:i + x.shape[0]] = (sq - np.einsum("nl,nl->n", c, scipy.linalg.cho_solve(self.factor, c.T).T)) / self.lam
            else:
                tri, lower = self.factor   # V = U^T U (upper) or L L^T (lower): s = ||U^-T x||^2 = ||L^-1 x||^2
                y = scipy.linalg.solve_triangular(tri, x.T, lower=lower, trans="N" if lower else "T")
                out[i:i + x.shape[0]] = np.einsum("dn,dn->n", y, y)
        return np.maximum(out, 0.0)


def select_dopt(pool_phi_N_D: np.ndarray, labelled_phi_L_D: np.ndarray, batch_size: int, lam: float = 1.0,
                u_N: np.ndarray | None = None, on_start: Callable[[np.ndarray], None] | None = None) -> Selection:
    """Greedy D-optimal batch on pair-feature differences (see module docstring).

    Steps table: ``score`` = ``||phi||_{V^-1}`` of the pick at its step (the design including earlier
    picks), ``u`` = the given uncertainty (NaN if None), ``logdet_gain`` = ``log(1 + s)``.
    ``on_start(norm_N)``, when given, receives every pool pair's norm before the first pick.
    """
    # lazy: faiss, pandas, scipy, kept out of CLI start-up (the registry imports every policy module)
    import pandas as pd

    from balpm.engine.knn import check_features
    if not (isinstance(lam, (int, float, np.floating, np.integer)) and math.isfinite(lam) and lam > 0):
        raise ConfigError(f"lam must be a finite number > 0 (got {lam}); it is the ridge of the design matrix")
    phi = check_features(pool_phi_N_D, "pool pair-feature differences")
    lab = check_features(labelled_phi_L_D, "labelled pair-feature differences", dim=phi.shape[1], allow_empty=True)
    n = phi.shape[0]
    check_batch(batch_size, n)
    inv0 = DesignInverse(lab, lam)
    s = inv0.scores(phi)
    if on_start is not None:
        on_start(np.sqrt(s))
    alive = np.ones(n, dtype=bool)
    ws: list[np.ndarray] = []
    dens: list[float] = []
    picks, norms, gains = [], [], []
    for _ in range(batch_size):
        j = int(np.argmax(np.where(alive, s, -np.inf)))  # first maximum: ties to the lowest position
        s_j = float(s[j])
        picks.append(j)
        norms.append(math.sqrt(s_j))
        gains.append(math.log1p(s_j))
        alive[j] = False
        phi_j = np.asarray(phi[j], dtype=np.float64)
        w = inv0.solve(phi_j)
        for w_m, den_m in zip(ws, dens):     # V_t^-1 phi_j = V0^-1 phi_j - sum_m w_m (w_m . phi_j) / den_m
            w -= w_m * (w_m @ phi_j) / den_m
        den = 1.0 + s_j
        ws.append(w)
        dens.append(den)
        w32 = w.astype(phi.dtype)
        for i in range(0, n, BLOCK_ROWS):
            g = (phi[i:i + BLOCK_ROWS] @ w32).astype(np.float64)
            s[i:i + BLOCK_ROWS] -= g * g / den
        np.maximum(s, 0.0, out=s)
    idx = np.asarray(picks, dtype=np.int64)
    u = np.asarray(u_N, dtype=np.float64)[idx] if u_N is not None else np.full(idx.size, np.nan)
    steps = pd.DataFrame({"step": np.arange(idx.size, dtype=np.int64), "index": idx,
                          "score": np.asarray(norms), "u": u, "logdet_gain": np.asarray(gains)})
    return Selection(indices=idx, steps=steps)


class DOptPolicy:
    """APO-style D-optimal design as a :class:`~balpm.acquisition.base.Policy` (:func:`select_dopt`).

    Needs the run's pair features (``state.run.pairs_F_2_D``, set by :func:`balpm.experiment.loop.run`); ``lam`` is
    the ridge lambda of the design matrix. ``u`` of the steps table is the configured uncertainty.
    """

    def __init__(self, lam: float = 1.0, uncertainty: str = "epistemic", name: str = "dopt") -> None:
        if not (isinstance(lam, (int, float)) and math.isfinite(lam) and lam > 0):
            raise ConfigError(f"lam must be a finite number > 0 (got {lam}); it is the ridge of the design matrix")
        self.name = name
        self.lam = float(lam)
        self.uncertainty = uncertainty
        self._start: tuple[PoolState, np.ndarray, np.ndarray] | None = None  # (state, u, norm) of the last select

    def select(self, state: PoolState, batch_size: int, rng: np.random.Generator) -> Selection:
        """Greedy D-optimal batch on the pool pairs' feature differences."""
        u = state_uncertainty(state, self.uncertainty)
        check_batch(batch_size, u.size)
        run = state.run
        if run is None or run.pairs_F_2_D is None:
            raise ConfigError("policy dopt needs the pool's pair features (state.run.pairs_F_2_D); run it through "
                              "balpm run / balpm.experiment.loop.run, or pass a RunPool with pairs_F_2_D")
        if np.asarray(run.pool_index_N).size != u.size:
            raise ConfigError(f"state.run lists {np.asarray(run.pool_index_N).size} pool positions for {u.size} "
                              "pool rows; pass the RunPool of this round")
        phi = pair_differences(run, run.pool_index_N)
        lab = pair_differences(run, run.labelled_index_L)

        def keep(norm_N: np.ndarray) -> None:
            self._start = (state, u, norm_N)

        return select_dopt(phi, lab, batch_size, self.lam, u_N=u, on_start=keep)

    def pool_table(self, state: PoolState) -> pd.DataFrame:
        """Per pool item: ``u`` and ``score`` = ``||phi||_{V^-1}`` under the labelled design (before any pick)."""
        # lazy: pandas, kept out of CLI start-up (the registry imports every policy module)
        import pandas as pd
        if self._start is None or self._start[0] is not state:  # not from select: the same (rng-free) numbers
            self.select(state, 1, np.random.default_rng(0))
        return pd.DataFrame({"u": self._start[1], "score": self._start[2]})


@dataclass(frozen=True)
class DOptKnobs:
    """D-optimal design's knobs (docs/policies.md)."""

    lam: float = knob(1.0, "dopt: ridge lambda of the design matrix V = lambda I + sum phi phi^T", gt=0)


register_policy("dopt", knobs=DOptKnobs,
                build=lambda knobs, common: DOptPolicy(lam=knobs.lam, uncertainty=common.uncertainty),
                help="greedy D-optimal design on pair-feature differences, rank-one updates (APO, Das et al. 2024)",
                color="#4a1486", step_columns=("logdet_gain",), abilities={"pool_table"}, label_uncertainty=False)
