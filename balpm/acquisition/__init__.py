"""Acquisition policies: one protocol (:mod:`balpm.acquisition.base`), one module per family.

``make_policy(cfg)`` builds the policy of an :class:`~balpm.config.AcquisitionConfig` through the
policy registry (:data:`REGISTRY`, one :class:`PolicySpec` per name: the knobs that belong in its
label and how it is built); every name in ``config.POLICIES`` has an entry (a test checks it):

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

from collections.abc import Callable
from dataclasses import dataclass, fields

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
from balpm.config import PAPER_COLDNESS, POLICIES, UNCERTAINTIES, AcquisitionConfig  # noqa: F401
from balpm.errors import ConfigError


@dataclass(frozen=True)
class PolicySpec:
    """One entry of the policy registry.

    ``name``: the ``AcquisitionConfig.policy`` value; ``label_knobs``: the acquisition fields that change
    this policy's picks (a non-default value shows in its label, ``"balpm beta=0.1"``, so reports keep
    such variants apart); ``build``: the policy from an :class:`AcquisitionConfig`; ``help``: one line.
    """

    name: str
    label_knobs: tuple[str, ...]
    build: Callable[[AcquisitionConfig], Policy]
    help: str = ""


REGISTRY: dict[str, PolicySpec] = {}


def register_policy(name: str, label_knobs: tuple[str, ...], build: Callable[[AcquisitionConfig], Policy],
                    help: str = "") -> PolicySpec:
    """Add (or replace) a policy in :data:`REGISTRY`; every label knob must be an AcquisitionConfig field."""
    known = {f.name for f in fields(AcquisitionConfig)}
    bad = [k for k in label_knobs if k not in known]
    if bad:
        raise ValueError(f"policy {name!r}: label knobs {bad} are not AcquisitionConfig fields")
    spec = PolicySpec(name, tuple(label_knobs), build, help)
    REGISTRY[name] = spec
    return spec


def policy_spec(name: str) -> PolicySpec:
    """The registry entry of policy ``name`` (one-line ConfigError if unknown)."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown policy {name!r}; choose one of {', '.join(REGISTRY)}") from None


def _coldness(cfg: AcquisitionConfig) -> float:
    return cfg.coldness or PAPER_COLDNESS[cfg.policy]


_STOCHASTIC_KNOBS = ("uncertainty", "coldness")
register_policy("random", (), lambda c: RandomPolicy(uncertainty=c.uncertainty),
                "uniform sample without replacement")
register_policy("bald", ("uncertainty",), lambda c: BALDPolicy(uncertainty=c.uncertainty), "top-B by U")
register_policy("softmax_bald", _STOCHASTIC_KNOBS,
                lambda c: SoftmaxBALD(coldness=_coldness(c), uncertainty=c.uncertainty),
                "top-B of U + Gumbel(0, 1/coldness)")
register_policy("power_bald", _STOCHASTIC_KNOBS,
                lambda c: PowerBALD(coldness=_coldness(c), uncertainty=c.uncertainty),
                "top-B of log U + Gumbel")
register_policy("softrank_bald", _STOCHASTIC_KNOBS,
                lambda c: SoftRankBALD(coldness=_coldness(c), uncertainty=c.uncertainty),
                "top-B of -log rank(U) + Gumbel")
register_policy(
    "balpm",
    ("beta", "k", "d", "floor", "normalize", "estimator", "uncertainty", "minimize_entropy", "exact_knn", "beta_mode"),
    lambda c: BalpmPolicy(beta=c.beta, k=c.k, d=c.d, floor=c.floor, normalize=c.normalize,
                          estimator=c.estimator, uncertainty=c.uncertainty, minimize=c.minimize_entropy,
                          exact_knn=c.exact_knn, beta_mode=c.beta_mode),
    "greedy U + beta H with its ablations")


def _full(c: AcquisitionConfig) -> Policy:
    from balpm.acquisition.full import FullPoolPolicy

    return FullPoolPolicy(uncertainty=c.uncertainty)


register_policy("full", (), _full,
                "ceiling: the same model trained once on the whole pool (balpm sweep --ceiling)")


def make_policy(cfg: AcquisitionConfig) -> Policy:
    """The policy named by ``cfg.policy`` with the config's parameters (one-line ConfigError if unknown)."""
    if cfg.uncertainty not in UNCERTAINTIES:
        raise ConfigError(f"unknown uncertainty {cfg.uncertainty!r}; choose one of {', '.join(UNCERTAINTIES)}")
    if not cfg.beta >= 0:
        raise ConfigError(f"beta must be >= 0 (got {cfg.beta}); use minimize_entropy for the entropy minimiser")
    return policy_spec(cfg.policy).build(cfg)


def label_knobs(policy: str) -> tuple[str, ...]:
    """The acquisition fields that belong in ``policy``'s label (all of them for an unregistered name)."""
    spec = REGISTRY.get(policy)
    return spec.label_knobs if spec else tuple(f.name for f in fields(AcquisitionConfig) if f.name != "policy")


__all__ = [
    "BALDPolicy",
    "BalpmPolicy",
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
    "select_balpm",
]
