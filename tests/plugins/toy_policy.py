"""A toy acquisition policy with one knob, loaded only through ``BALPM_PLUGINS=toy_policy``
(tests/test_extension.py): the whole of what adding a policy takes is this module."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from balpm.acquisition.base import PoolState, Selection
from balpm.acquisition.common import check_batch, ranked_selection, state_uncertainty
from balpm.acquisition.registry import Common, register_policy
from balpm.knobs import knob


@dataclass(frozen=True)
class ToyKnobs:
    """The toy's one knob."""

    weight: float = knob(1.0, "weight of U and of the first prompt feature in the toy's score", ge=0)


class ToyTopK:
    """Top-B of ``U * weight + weight * x0`` (x0: the first prompt feature); ``rng`` unused."""

    def __init__(self, weight: float, uncertainty: str) -> None:
        self.name = "toy_topk"
        self.weight, self.uncertainty = weight, uncertainty

    def select(self, state: PoolState, batch_size: int, rng: np.random.Generator) -> Selection:
        """Rank by the toy score; the steps table records it and its feature term."""
        u = state_uncertainty(state, self.uncertainty)
        check_batch(batch_size, u.size)
        x0 = np.asarray(state.pool_prompts_N_D, dtype=np.float64)[:, 0]
        return ranked_selection(u * self.weight + self.weight * x0, u, batch_size, feature_term=self.weight * x0)


def build(knobs: ToyKnobs, common: Common) -> ToyTopK:
    """The policy of a config."""
    return ToyTopK(knobs.weight, common.uncertainty)


register_policy("toy_topk", knobs=ToyKnobs, build=build, help="toy: top-B of U*weight + weight*x0",
                color="#8c564b", step_columns=("feature_term",))
