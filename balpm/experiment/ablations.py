"""The paper's ablation set (docs/method.md section 6) as named presets of acquisition knobs.

An ablation *variant* is BAL-PM with one knob changed against a *base* run config: the same data,
model, loop and seeds, so each variant is paired seed by seed with the base. ``balpm sweep
--ablations paper`` runs :data:`PRESETS` ``["paper"]`` over the sweep's seeds; the dashboard's Ablations
page reads the finished variants back and starts missing ones for all of the base's seeds.

Variants carry the config ``name`` ``"ablation: <short label>"`` (the name is not part of the config
hash, so it does not change a run's identity). :func:`is_variant` is how the dashboard keeps them out of
its default comparisons. No streamlit here.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from balpm.config import RunConfig
from balpm.errors import ConfigError

__all__ = ["NAME_PREFIX", "PAPER", "PRESETS", "Variant", "is_variant", "variant_config", "variant_configs", "variant_of",
           "variants"]

NAME_PREFIX = "ablation: "
#: the paper's beta-robustness values (docs/method.md section 6)
PAPER_BETAS = (1.0, 0.1, 0.01, 0.001, 0.0001)


@dataclass(frozen=True)
class Variant:
    """One ablation: a short label (what the pages and legends show) and the acquisition knobs it sets."""

    short: str
    changes: tuple[tuple[str, Any], ...]
    what: str = ""

    @property
    def knobs(self) -> dict[str, Any]:
        """The acquisition fields this variant sets, as a dict."""
        return dict(self.changes)


PAPER: tuple[Variant, ...] = (
    Variant("no U", (("uncertainty", "none"),), "BAL-PM with U = 0: the entropy term alone picks"),
    Variant("H minimiser", (("minimize_entropy", True),), "U - beta*H: the entropy term pushes picks together"),
    Variant("predictive", (("uncertainty", "predictive"),), "predictive entropy in place of the epistemic U"),
    Variant("KL", (("estimator", "kl"),), "KL estimator: k-th nearest labelled point instead of the pool radius"),
    *(Variant(f"β={b:g}", (("beta", b),), "beta robustness") for b in PAPER_BETAS),
)
PRESETS: dict[str, tuple[Variant, ...]] = {"paper": PAPER}


#: the policy whose knobs the paper's ablation set flips (docs/method.md section 6)
POLICY = "balpm"


def variants(preset: str) -> tuple[Variant, ...]:
    """The variants of a named preset (``paper``); a one-line ConfigError naming the choices otherwise."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown ablation preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[preset]


def variant_config(base: RunConfig, v: Variant) -> RunConfig:
    """``base`` as BAL-PM with ``v``'s knobs and the name ``ablation: <short>`` (seed unchanged)."""
    return base.replace(acquisition={"policy": POLICY, **v.knobs}, name=NAME_PREFIX + v.short)


def variant_configs(base: RunConfig, preset: str, seeds: Sequence[int]) -> list[RunConfig]:
    """Every variant of ``preset`` that differs from ``base`` (taken as BAL-PM), for every seed: validated
    configs, the base's own config (e.g. ``β=0.1`` when the base's beta is 0.1) left out."""
    base = base.replace(acquisition={"policy": POLICY})
    out: dict[str, RunConfig] = {}
    for v in variants(preset):
        for seed in seeds:
            cfg = variant_config(base.replace(loop={"seed": int(seed)}), v)
            if cfg.hash() == base.replace(loop={"seed": int(seed)}).hash():
                continue
            out.setdefault(cfg.hash(), cfg.validate())
    return list(out.values())


def variant_of(cfg: RunConfig, base: RunConfig) -> Variant | None:
    """The variant of :data:`PAPER` that ``cfg`` is against ``base`` (same everything but the variant's
    knobs, any seed), or None."""
    for v in PAPER:
        want = variant_config(base.replace(loop={"seed": cfg.loop.seed}), v)
        if want.hash() == cfg.hash() and want.hash() != base.replace(loop={"seed": cfg.loop.seed}).hash():
            return v
    return None


def is_variant(cfg: RunConfig) -> bool:
    """Whether a run is an ablation variant: named by ``balpm sweep --ablations`` / the Ablations page, or a
    BAL-PM run with an ablation-only knob (U switched off or swapped, the entropy minimiser, the KL
    estimator) made before variants were named."""
    if str(cfg.name).startswith(NAME_PREFIX):
        return True
    a = cfg.acquisition
    return a.policy == POLICY and (a.uncertainty != "epistemic" or a.minimize_entropy or a.estimator == "kl")
