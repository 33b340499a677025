"""Stochastic BALD family: top-B of a transformed score plus Gumbel noise (docs/method.md section 6).

Kirsch et al., "Stochastic Batch Acquisition" (TMLR 2023): sampling without replacement with
probabilities proportional to ``exp(beta_g * s)`` equals taking the top-B of ``s + Gumbel(0, 1/beta_g)``.

* :class:`SoftmaxBALD`: s = U                  (paper beta_g = 10000)
* :class:`PowerBALD`:   s = log U              (paper beta_g = 8; U <= 0 is clipped to the smallest
  positive float so its log is finite and it ranks last)
* :class:`SoftRankBALD`: s = log(1 / rank(U)), rank 1 the highest U, ties ranked by pool position
  (paper beta_g = 1)

The noise comes only from the generator passed to ``select``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from balpm.acquisition.base import PoolState, Selection
from balpm.acquisition.common import (
    check_batch,
    ranked_selection,
    state_uncertainty,
    top_b,
)
from balpm.acquisition.registry import Common, register_policy
from balpm.errors import ConfigError
from balpm.knobs import PAPER_COLDNESS, knob


class _GumbelTopB:
    """Top-B of ``transform(U) + Gumbel(0, 1 / coldness)``."""

    default_name = "stochastic"

    def __init__(self, coldness: float = 1.0, uncertainty: str = "epistemic", name: str | None = None) -> None:
        if not (np.isfinite(coldness) and coldness > 0):
            raise ConfigError(f"coldness must be > 0 (got {coldness})")
        self.coldness = float(coldness)
        self.uncertainty = uncertainty
        self.name = name or self.default_name

    def transform(self, u_N: np.ndarray) -> np.ndarray:  # pragma: no cover - overridden
        """The score perturbed by the noise."""
        raise NotImplementedError

    def select(self, state: PoolState, batch_size: int, rng: np.random.Generator) -> Selection:
        """One Gumbel draw per pool item from ``rng``; steps has score (perturbed), u, base, noise."""
        u = state_uncertainty(state, self.uncertainty)
        check_batch(batch_size, u.size)
        base = self.transform(u)
        noise = rng.gumbel(loc=0.0, scale=1.0 / self.coldness, size=u.size)
        return ranked_selection(base + noise, u, batch_size, base=base, noise=noise)


class SoftmaxBALD(_GumbelTopB):
    """Top-B of U + Gumbel(0, 1/beta_g): softmax sampling of U."""

    default_name = "softmax_bald"

    def transform(self, u_N: np.ndarray) -> np.ndarray:
        """U itself."""
        return np.asarray(u_N, dtype=np.float64)


class PowerBALD(_GumbelTopB):
    """Top-B of log U + Gumbel(0, 1/beta_g): sampling proportional to U^beta_g."""

    default_name = "power_bald"

    def transform(self, u_N: np.ndarray) -> np.ndarray:
        """log U, with U clipped to the smallest positive float."""
        return np.log(np.maximum(np.asarray(u_N, dtype=np.float64), np.finfo(np.float64).tiny))


class SoftRankBALD(_GumbelTopB):
    """Top-B of log(1/rank U) + Gumbel(0, 1/beta_g): sampling proportional to rank^-beta_g."""

    default_name = "softrank_bald"

    def transform(self, u_N: np.ndarray) -> np.ndarray:
        """-log rank(U), rank 1 for the highest U (ties: lower pool position ranks first)."""
        order = top_b(u_N, u_N.size)
        rank = np.empty(u_N.size, dtype=np.float64)
        rank[order] = np.arange(1, u_N.size + 1)
        return -np.log(rank)


@dataclass(frozen=True)
class StochasticKnobs:
    """The knob of the stochastic BALD family."""

    coldness: float = knob(0.0, "beta_g of the stochastic BALD family (Gumbel scale 1/beta_g); "
                                "0 takes the paper's value: softmax 10000, power 8, softrank 1", ge=0, flag="--coldness")


def _builder(cls: type) -> object:
    def build(knobs: StochasticKnobs, common: Common) -> _GumbelTopB:
        return cls(coldness=knobs.coldness or PAPER_COLDNESS[common.policy], uncertainty=common.uncertainty)
    return build


register_policy("softmax_bald", knobs=StochasticKnobs, build=_builder(SoftmaxBALD),
                help="top-B of U + Gumbel(0, 1/coldness)", color="#9467bd")
register_policy("power_bald", knobs=StochasticKnobs, build=_builder(PowerBALD),
                help="top-B of log U + Gumbel", color="#8c564b")
register_policy("softrank_bald", knobs=StochasticKnobs, build=_builder(SoftRankBALD),
                help="top-B of -log rank(U) + Gumbel", color="#e377c2")

__all__ = ["PowerBALD", "SoftRankBALD", "SoftmaxBALD", "StochasticKnobs"]
