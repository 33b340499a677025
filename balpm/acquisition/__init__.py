"""Acquisition policies: one protocol (:mod:`balpm.acquisition.base`), one module per family.

``make_policy(cfg)`` builds the policy of an :class:`~balpm.config.AcquisitionConfig`:

=================  ==================================================================
``random``         uniform sample without replacement (:class:`RandomPolicy`)
``bald``           top-B by U (:class:`BALDPolicy`)
``softmax_bald``   top-B of U + Gumbel(0, 1/coldness) (coldness 0 in the config: the paper's 10000 / 8 / 1) (:class:`SoftmaxBALD`)
``power_bald``     top-B of log U + Gumbel (:class:`PowerBALD`)
``softrank_bald``  top-B of -log rank(U) + Gumbel (:class:`SoftRankBALD`)
``balpm``          greedy U + beta H (:class:`BalpmPolicy`); ablations through ``uncertainty``
                   (``none`` / ``predictive``), ``estimator`` (``kl``), ``minimize_entropy``
                   and ``normalize``
=================  ==================================================================

U is ``balpm.uncertainty.score(state.probs_N_K, cfg.uncertainty)`` for every policy.
"""
from __future__ import annotations

from balpm.acquisition.bald import BALDPolicy
from balpm.acquisition.balpm import (
    BalpmPolicy,
    BalpmRound,
    greedy_select,
    prepare_balpm,
    select_balpm,
)
from balpm.acquisition.base import Policy, PoolState, Selection
from balpm.acquisition.random import RandomPolicy
from balpm.acquisition.stochastic import PowerBALD, SoftmaxBALD, SoftRankBALD
from balpm.config import PAPER_COLDNESS, POLICIES, UNCERTAINTIES, AcquisitionConfig
from balpm.errors import ConfigError


def make_policy(cfg: AcquisitionConfig) -> Policy:
    """The policy named by ``cfg.policy`` with the config's parameters (one-line ConfigError if unknown)."""
    if cfg.uncertainty not in UNCERTAINTIES:
        raise ConfigError(f"unknown uncertainty {cfg.uncertainty!r}; choose one of {', '.join(UNCERTAINTIES)}")
    if cfg.policy == "random":
        return RandomPolicy(uncertainty=cfg.uncertainty)
    if cfg.policy == "bald":
        return BALDPolicy(uncertainty=cfg.uncertainty)
    if cfg.policy == "softmax_bald":
        return SoftmaxBALD(coldness=cfg.coldness or PAPER_COLDNESS["softmax_bald"], uncertainty=cfg.uncertainty)
    if cfg.policy == "power_bald":
        return PowerBALD(coldness=cfg.coldness or PAPER_COLDNESS["power_bald"], uncertainty=cfg.uncertainty)
    if cfg.policy == "softrank_bald":
        return SoftRankBALD(coldness=cfg.coldness or PAPER_COLDNESS["softrank_bald"], uncertainty=cfg.uncertainty)
    if cfg.policy == "balpm":
        if not cfg.beta >= 0:
            raise ConfigError(f"beta must be >= 0 (got {cfg.beta}); use minimize_entropy for the entropy minimiser")
        return BalpmPolicy(beta=cfg.beta, k=cfg.k, d=cfg.d, floor=cfg.floor, normalize=cfg.normalize,
                           estimator=cfg.estimator, uncertainty=cfg.uncertainty, minimize=cfg.minimize_entropy,
                           exact_knn=cfg.exact_knn, beta_mode=cfg.beta_mode)
    raise ConfigError(f"unknown policy {cfg.policy!r}; choose one of {', '.join(POLICIES)}")


__all__ = [
    "BALDPolicy",
    "BalpmPolicy",
    "BalpmRound",
    "Policy",
    "PoolState",
    "PowerBALD",
    "RandomPolicy",
    "Selection",
    "SoftRankBALD",
    "SoftmaxBALD",
    "greedy_select",
    "make_policy",
    "prepare_balpm",
    "select_balpm",
]
