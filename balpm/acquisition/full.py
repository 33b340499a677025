"""The ceiling "policy" ``full``: not an acquisition rule but a reference run.

A run with ``acquisition.policy = "full"`` is trained ONCE on the whole pool (every pool comparison
labelled, one round, the same seed, model and evaluation as the other policies of its setting);
:func:`balpm.experiment.loop.run` handles it and never calls ``select``. Reports and plots show its mean over
seeds as the ceiling any policy could reach with these features and this model
(:mod:`balpm.evidence.stats`), and never compare it against the baseline.

:class:`FullPoolPolicy` exists so that ``full`` is an ordinary registry entry (it honours the policy
protocol for the shared template test): its ``select`` takes the first ``batch_size`` pool positions,
in pool order, which is what labelling the pool in one go means.
"""
from __future__ import annotations

import numpy as np

from balpm.acquisition.base import PoolState, Selection
from balpm.acquisition.common import check_batch, state_uncertainty
from balpm.acquisition.registry import register_policy
from balpm.knobs import NoKnobs

FULL_POLICY = "full"


class FullPoolPolicy:
    """Labels the pool in order (the loop labels all of it at once; see the module docstring)."""

    def __init__(self, uncertainty: str = "epistemic", name: str = FULL_POLICY) -> None:
        self.name = name
        self.uncertainty = uncertainty

    def select(self, state: PoolState, batch_size: int, rng: np.random.Generator) -> Selection:
        """The first ``batch_size`` pool positions (``rng`` unused: nothing is random here)."""
        # lazy: pandas, kept out of CLI start-up (the registry imports every policy module)
        import pandas as pd
        u = state_uncertainty(state, self.uncertainty)
        check_batch(batch_size, u.size)
        idx = np.arange(batch_size, dtype=np.int64)
        steps = pd.DataFrame({"step": idx.copy(), "index": idx, "score": np.full(batch_size, np.nan), "u": u[idx]})
        return Selection(indices=idx, steps=steps)


register_policy(FULL_POLICY, knobs=NoKnobs, build=lambda knobs, common: FullPoolPolicy(uncertainty=common.uncertainty),
                help="ceiling: the same model trained once on the whole pool (balpm sweep --ceiling)", color="#111827",
                label_uncertainty=False)
