"""BALD: the top-B pool items by uncertainty (docs/method.md section 6)."""
from __future__ import annotations

import numpy as np

from balpm.acquisition.base import PoolState, Selection
from balpm.acquisition.common import check_batch, ranked_selection, state_uncertainty
from balpm.acquisition.registry import register_policy
from balpm.knobs import NoKnobs


class BALDPolicy:
    """Top-``batch_size`` by U (epistemic by default), ties to the lowest pool position; ``rng`` unused."""

    def __init__(self, uncertainty: str = "epistemic", name: str = "bald") -> None:
        self.name = name
        self.uncertainty = uncertainty

    def select(self, state: PoolState, batch_size: int, rng: np.random.Generator) -> Selection:
        """Rank by U; ``score`` in the steps table is U."""
        u = state_uncertainty(state, self.uncertainty)
        check_batch(batch_size, u.size)
        return ranked_selection(u, u, batch_size)


register_policy("bald", knobs=NoKnobs, build=lambda knobs, common: BALDPolicy(uncertainty=common.uncertainty),
                help="top-B by U", color="#1f77b4")
