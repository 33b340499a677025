"""EPIG: expected predictive information gain (Smith et al. 2023), from the ensemble's members.

For a pool item x and a target item x* with binary labels y, y* and members k = 1..K (equal weights),
the members make y and y* dependent only through the model:

    p(y, y*) = (1/K) sum_k p_k(y) p_k(y*),   I(y; y* | x, x*) = sum_{y, y*} p(y, y*) log p(y, y*) / (p(y) p(y*))

and ``EPIG(x) = mean over targets x* of I(y; y* | x, x*)``, the targets a seeded sample of
``target_size`` unlabelled pool items (``targets="pool"``) or test items (``targets="test"``: the test
split's pairs, whose member probabilities come from this round's ensemble through the run context the
loop builds, ``RunPool.test_probs``), drawn without replacement from the ``rng`` passed in. The batch is
the top-B by EPIG (no in-batch update, as the paper's batch acquisition).

Because y - model - y* is a Markov chain, ``EPIG(x) <= BALD(x) = I(y; model)`` and EPIG is 0 when all
members agree on x (or on every target); the tests check both.
Each of the four joint cells is one (N x K) @ (K x T) product; float64; pool rows in blocks.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from balpm.acquisition.base import PoolState, Selection
from balpm.acquisition.common import check_batch, ranked_selection, state_uncertainty
from balpm.acquisition.registry import register_policy
from balpm.engine.uncertainty import bald, check_probs
from balpm.errors import ConfigError
from balpm.knobs import knob

if TYPE_CHECKING:  # annotations only; the code imports these where it runs (lazy, see below)
    import pandas as pd

BLOCK_ELEMENTS = 1 << 22  # pool rows x targets per block
TARGETS = ("pool", "test")


def epig_scores(probs_N_K: np.ndarray, target_probs_T_K: np.ndarray) -> np.ndarray:
    """EPIG of every pool row against the target rows' member probabilities (mean over targets)."""
    # lazy: scipy, kept out of CLI start-up (the registry imports every policy module)
    from scipy.special import xlogy
    p = check_probs(probs_N_K)
    q = check_probs(target_probs_T_K)
    if q.shape[1] != p.shape[1] or q.shape[0] < 1:
        raise ConfigError(f"target probabilities have shape {q.shape}; need >= 1 row of {p.shape[1]} members")
    k = p.shape[1]
    q1, q0 = q.T, 1.0 - q.T                            # (K, T)
    m1, m0 = q.mean(axis=1), 1.0 - q.mean(axis=1)      # target marginals p(y* = 1), p(y* = 0)
    out = np.empty(p.shape[0], dtype=np.float64)
    block = max(1, BLOCK_ELEMENTS // q.shape[0])
    for i in range(0, p.shape[0], block):
        a1 = p[i:i + block]
        a0 = 1.0 - a1
        pm1 = a1.mean(axis=1)[:, None]
        pm0 = 1.0 - pm1
        total = np.zeros((a1.shape[0], q.shape[0]), dtype=np.float64)
        for a, pa in ((a1, pm1), (a0, pm0)):
            for b, pb in ((q1, m1), (q0, m0)):
                joint = a @ b / k                      # p(y, y*) for this cell, (rows, T)
                total += xlogy(joint, joint) - xlogy(joint, pa * pb[None, :])
        out[i:i + block] = total.mean(axis=1)
    return np.maximum(out, 0.0)  # I >= 0; rounding can give -1e-17


def sample_targets(n_pool: int, target_size: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted pool positions of ``min(target_size, n_pool)`` targets drawn without replacement."""
    return np.sort(rng.choice(n_pool, size=min(int(target_size), n_pool), replace=False)).astype(np.int64)


def select_epig(probs_N_K: np.ndarray, batch_size: int, rng: np.random.Generator, target_size: int = 100,
                u_N: np.ndarray | None = None,
                on_start: Callable[[np.ndarray], None] | None = None) -> Selection:
    """Top-``batch_size`` pool rows by EPIG over a seeded sample of ``target_size`` pool rows as targets.

    Steps table: ``score`` = EPIG, ``u`` = the given uncertainty (BALD if None). ``on_start(score_N)``,
    when given, receives every pool row's EPIG.
    """
    if int(target_size) != target_size or target_size < 1:
        raise ConfigError(f"target_size must be an integer >= 1 (got {target_size})")
    p = check_probs(probs_N_K)
    check_batch(batch_size, p.shape[0])
    targets = sample_targets(p.shape[0], target_size, rng)
    score = epig_scores(p, p[targets])
    if on_start is not None:
        on_start(score.copy())
    if u_N is None:
        u_N = bald(p)
    return ranked_selection(score, np.asarray(u_N, dtype=np.float64), batch_size)


def test_target_probs(state: PoolState, target_size: int, rng: np.random.Generator) -> np.ndarray:
    """Member probabilities ``(T, K)`` of ``min(target_size, n_test)`` test rows drawn without replacement
    from ``rng`` (sorted), predicted by this round's ensemble (``state.run``: :meth:`RunPool.test_probs`)."""
    run = state.run
    n_test = 0 if run is None or run.test_rows_F is None else len(run.test_rows_F)
    if run is None or run.member_probs is None or n_test == 0:
        raise ConfigError("epig targets=test needs the test rows and this round's model, which the loop passes "
                          "(balpm run / sweep / worlds) and a run without a test split or balpm select does not; "
                          "use --set acquisition.targets=pool")
    return run.test_probs(sample_targets(n_test, target_size, rng))


class EPIGPolicy:
    """EPIG as a :class:`~balpm.acquisition.base.Policy` (:func:`select_epig`); ``target_size`` targets
    drawn from ``rng`` among this round's unlabelled pool (``targets="pool"``) or the test rows
    (``targets="test"``, :func:`test_target_probs`)."""

    def __init__(self, target_size: int = 100, uncertainty: str = "epistemic", name: str = "epig",
                 targets: str = "pool") -> None:
        if int(target_size) != target_size or target_size < 1:
            raise ConfigError(f"target_size must be an integer >= 1 (got {target_size})")
        if targets not in TARGETS:
            raise ConfigError(f"epig targets must be one of {', '.join(TARGETS)} (got {targets!r})")
        self.name = name
        self.target_size = int(target_size)
        self.targets = targets
        self.uncertainty = uncertainty
        self._start: tuple[PoolState, np.ndarray, np.ndarray] | None = None  # (state, u, EPIG) of the last select

    def select(self, state: PoolState, batch_size: int, rng: np.random.Generator) -> Selection:
        """Top-B by EPIG; ``u`` of the steps table is the configured uncertainty."""
        u = state_uncertainty(state, self.uncertainty)
        check_batch(batch_size, u.size)

        def keep(score_N: np.ndarray) -> None:
            self._start = (state, u, score_N)

        if self.targets == "test":
            score = epig_scores(state.probs_N_K, test_target_probs(state, self.target_size, rng))
            keep(score.copy())
            return ranked_selection(score, np.asarray(u, dtype=np.float64), batch_size)
        return select_epig(state.probs_N_K, batch_size, rng, self.target_size, u_N=u, on_start=keep)

    def pool_table(self, state: PoolState) -> pd.DataFrame:
        """Per pool item: ``u`` and ``score`` (EPIG against the targets of the last ``select`` of this state)."""
        # lazy: pandas, kept out of CLI start-up (the registry imports every policy module)
        import pandas as pd
        if self._start is None or self._start[0] is not state:
            raise ConfigError("epig's pool table holds the scores of its last select (the targets come from "
                              "select's rng); call select(state, ...) first with this state")
        return pd.DataFrame({"u": self._start[1], "score": self._start[2]})


@dataclass(frozen=True)
class EPIGKnobs:
    """EPIG's knobs (docs/policies.md)."""

    target_size: int = knob(100, "EPIG: unlabelled pool items drawn (seeded) as the target distribution", ge=1)
    targets: str = knob("pool", "EPIG's targets: pool (a seeded sample of this round's unlabelled pool items) or "
                                "test (of the test split's items, predicted by the round's ensemble)",
                        choices=TARGETS, since_default="pool")


register_policy("epig", knobs=EPIGKnobs,
                build=lambda knobs, common: EPIGPolicy(target_size=knobs.target_size, uncertainty=common.uncertainty,
                                                       targets=knobs.targets),
                help="top-B expected predictive information gain on sampled pool targets (Smith et al. 2023)",
                color="#e6ab02", abilities={"pool_table"}, label_uncertainty=False)
