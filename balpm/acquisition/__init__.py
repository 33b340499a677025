"""Acquisition policies: one protocol (:mod:`balpm.acquisition.base`), one module per family.

``make_policy(cfg)`` builds the policy of an :class:`~balpm.config.AcquisitionConfig` through the
policy registry (:mod:`balpm.acquisition.registry`; :data:`REGISTRY` views it): each policy module
declares its knob class and registers one entry (knobs, build, help, colour, columns, abilities):

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

U is ``balpm.engine.uncertainty.score(state.probs_N_K, cfg.uncertainty)`` for every policy.
"""
from __future__ import annotations

from typing import Any

# the built-in policies first, in the order every list shows them; registry.entries() then imports every
# other module of this package (a new in-tree policy is one module) and the plugins
from balpm.acquisition.random import RandomPolicy
from balpm.acquisition.bald import BALDPolicy
from balpm.acquisition.stochastic import PowerBALD, SoftmaxBALD, SoftRankBALD
from balpm.acquisition.balpm import (
    BalpmKnobs,
    BalpmPolicy,
    BalpmRound,
    greedy_select,
    prepare_balpm,
    select_balpm,
)
from balpm.acquisition.full import FullPoolPolicy
from balpm.acquisition.base import Policy, PoolState, Selection
from balpm.acquisition.registry import (
    Common,
    PolicyEntry,
    entries,
    policy_entry,
    register_policy,
)


class _Registry(dict):
    """:data:`REGISTRY`: a live view of the registry's entries by name (loads them on first use)."""

    def _all(self) -> dict[str, PolicyEntry]:
        return entries()

    def __getitem__(self, name: str) -> PolicyEntry:
        return self._all()[name]

    def __contains__(self, name: object) -> bool:
        return name in self._all()

    def __iter__(self) -> Any:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())

    def keys(self) -> Any:
        return self._all().keys()

    def values(self) -> Any:
        return self._all().values()

    def items(self) -> Any:
        return self._all().items()

    def get(self, name: str, default: Any = None) -> Any:
        return self._all().get(name, default)


REGISTRY = _Registry()
PolicySpec = PolicyEntry  # the old name


def make_policy(cfg: Any) -> Policy:
    """The policy of an :class:`~balpm.config.AcquisitionConfig` (its entry's ``build(knobs, common)``)."""
    entry = policy_entry(cfg.policy)
    return entry.build(cfg.knobs, Common(policy=cfg.policy, uncertainty=cfg.uncertainty))


def policy_spec(name: str) -> PolicyEntry:
    """The registry entry of policy ``name`` (one-line ConfigError if unknown)."""
    return policy_entry(name)


def label_knobs(policy: str) -> tuple[str, ...]:
    """The names that belong in ``policy``'s label (``uncertainty`` and its knobs)."""
    return policy_entry(policy).label_knobs()


__all__ = [
    "BALDPolicy",
    "BalpmKnobs",
    "BalpmPolicy",
    "Common",
    "FullPoolPolicy",
    "BalpmRound",
    "Policy",
    "PolicySpec",
    "REGISTRY",
    "PoolState",
    "PowerBALD",
    "RandomPolicy",
    "Selection",
    "SoftRankBALD",
    "SoftmaxBALD",
    "greedy_select",
    "label_knobs",
    "make_policy",
    "policy_spec",
    "prepare_balpm",
    "register_policy",
    "select_balpm",
]
