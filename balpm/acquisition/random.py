"""Random acquisition: a uniform sample of the pool without replacement, from the generator passed in."""
from __future__ import annotations

import numpy as np

from balpm.acquisition.base import PoolState, Selection
from balpm.acquisition.common import check_batch, state_uncertainty
from balpm.acquisition.registry import register_policy
from balpm.knobs import NoKnobs


class RandomPolicy:
    """Uniform sample of ``batch_size`` pool positions (docs/method.md section 6, "Random").

    ``steps`` records ``u`` (the configured uncertainty of each pick, for comparison) and ``score``
    NaN (random maximises nothing).
    """

    def __init__(self, uncertainty: str = "epistemic", name: str = "random") -> None:
        self.name = name
        self.uncertainty = uncertainty

    def select(self, state: PoolState, batch_size: int, rng: np.random.Generator) -> Selection:
        """Draw the batch from ``rng``."""
        # lazy: pandas, kept out of CLI start-up (the registry imports every policy module)
        import pandas as pd
        u = state_uncertainty(state, self.uncertainty)
        check_batch(batch_size, u.size)
        idx = rng.choice(u.size, size=batch_size, replace=False).astype(np.int64)
        steps = pd.DataFrame({"step": np.arange(batch_size, dtype=np.int64), "index": idx,
                              "score": np.full(batch_size, np.nan), "u": u[idx]})
        return Selection(indices=idx, steps=steps)


register_policy("random", knobs=NoKnobs, build=lambda knobs, common: RandomPolicy(uncertainty=common.uncertainty),
                help="uniform sample without replacement", color="#7f7f7f", label_uncertainty=False)
