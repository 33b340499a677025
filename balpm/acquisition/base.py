"""The one protocol every acquisition policy follows.

A policy is a callable object with a ``name`` and
``select(state: PoolState, batch_size: int, rng: numpy.random.Generator) -> Selection``.
All randomness comes from ``rng``; nothing reads global random state.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

from balpm.errors import ConfigError

if TYPE_CHECKING:  # annotations only; the code imports these where it runs (lazy, see below)
    import pandas as pd


@dataclass(frozen=True)
class RunPool:
    """Where a round's pool sits in its run, for policies that keep state across rounds.

    ``prompts_P_D``: prompt features of every item of the run's pool by run position (the initial
    labelled items included); ``start_index``: positions of the round-0 pool; ``pool_index_N``:
    positions of this round's pool rows (``pool_prompts_N_D == prompts_P_D[pool_index_N]``);
    ``labelled_index_L``: positions of the labelled items, in labelling order.
    ``pairs_F_2_D`` (optional): the pair features of the run's feature set (answer A, answer B), not
    copied; ``pair_rows_P``: for each run position its row there (None: run position = row);
    :meth:`pairs` gathers them (the D-optimal design policy needs them). ``test_rows_F`` (optional): the
    rows of ``pairs_F_2_D`` holding the test split; ``member_probs`` (optional): this round's ensemble,
    pair features ``(n, 2, D)`` -> member probabilities ``(n, K)``; :meth:`test_probs` uses both (EPIG
    with the test prompts as targets needs them).
    """

    prompts_P_D: np.ndarray
    start_index: np.ndarray
    pool_index_N: np.ndarray
    labelled_index_L: np.ndarray
    pairs_F_2_D: np.ndarray | None = None
    pair_rows_P: np.ndarray | None = None
    test_rows_F: np.ndarray | None = None
    member_probs: Callable[[np.ndarray], np.ndarray] | None = None

    def test_probs(self, test_index: np.ndarray) -> np.ndarray:
        """Member probabilities ``(n, K)`` of this round's ensemble on the given test rows (positions in
        ``test_rows_F``)."""
        if self.pairs_F_2_D is None or self.test_rows_F is None or self.member_probs is None:
            raise ConfigError("this run pool carries no test rows or model; build the RunPool with pairs_F_2_D, "
                              "test_rows_F and member_probs (balpm.experiment.loop.select_round does, given the model)")
        rows = np.asarray(self.test_rows_F, dtype=np.int64)[np.asarray(test_index, dtype=np.int64)]
        return np.asarray(self.member_probs(np.asarray(self.pairs_F_2_D[rows])))

    def pairs(self, positions: np.ndarray) -> np.ndarray:
        """Pair features ``(n, 2, D)`` of the given run positions."""
        if self.pairs_F_2_D is None:
            raise ConfigError("this run pool carries no pair features; build the RunPool with pairs_F_2_D")
        rows = np.asarray(positions, dtype=np.int64)
        if self.pair_rows_P is not None:
            rows = np.asarray(self.pair_rows_P, dtype=np.int64)[rows]
        return np.asarray(self.pairs_F_2_D[rows])


@dataclass(frozen=True)
class PoolState:
    """What a policy may look at when it chooses a batch.

    ``probs_N_K``: each ensemble member's probability that the first answer is preferred, for every
    pool item (the label is not used, so the direction does not leak it). ``pool_prompts_N_D`` and
    ``labelled_prompts_L_D``: prompt features of each pool item and each labelled item (one row per
    comparison, so a prompt with several comparisons appears several times). ``run`` (optional,
    set by the loop): where this pool sits in its run (:class:`RunPool`).
    """

    probs_N_K: np.ndarray
    pool_prompts_N_D: np.ndarray
    labelled_prompts_L_D: np.ndarray
    run: RunPool | None = None


@dataclass(frozen=True)
class Selection:
    """The chosen pool positions in pick order, and one row per pick of what drove it.

    ``steps`` always has the columns ``step`` (0-based) and ``index`` (pool position) and a ``score``
    column (the value the policy maximised at that step); BAL-PM adds ``u``, ``log_dist``,
    ``count_term``, ``h``, ``beta_h``, ``ratio``, ``n`` and ``radius``. ``increments`` (BAL-PM with
    the pool-radius estimator) lists, for each step, the pool positions whose count n(x) the pick
    raised: columns ``step`` and ``index``; it lets the dashboard replay H step by step exactly.
    """

    indices: np.ndarray
    steps: pd.DataFrame
    increments: pd.DataFrame | None = field(default=None)


class Policy(Protocol):
    """Anything with a ``name`` and a ``select`` method of this signature is a policy."""

    name: str

    def select(self, state: PoolState, batch_size: int, rng: np.random.Generator) -> Selection:  # pragma: no cover
        ...
