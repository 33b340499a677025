"""The field helper of every config class and policy knob class, and the value lists they share.

A leaf module (it imports nothing of balpm), so a policy module can declare its knob class without
importing :mod:`balpm.config` and nothing circles.

A knob is a dataclass field made by :func:`_f`; its metadata carries

* ``help``: one line, shown by ``balpm run --help``, the docs and the dashboard;
* ``choices``: the allowed values (a select box on the Ablations page);
* ``ge`` / ``gt``: bounds, checked once, by ``RunConfig.validate``;
* ``flag``: an optional first-class CLI flag of ``balpm run`` / ``sweep`` (``"--beta"``); every other
  knob is ``--set acquisition.<knob>=...``;
* ``since_default``: for a field added after runs existed, the value every older run had in effect.
  ``RunConfig.hash()`` leaves the field out while it is at that value, so older run ids stay valid.
"""
from __future__ import annotations

from dataclasses import MISSING, dataclass, field
from typing import Any

UNCERTAINTIES = ("epistemic", "predictive", "aleatoric", "variance", "none")
ESTIMATORS = ("pool_radius", "kl")
NORMALIZATIONS = ("none", "zscore", "faithful")
BETA_MODES = ("fixed", "scaled")
PAPER_COLDNESS = {"softmax_bald": 10000.0, "power_bald": 8.0, "softrank_bald": 1.0}

NOT_SET: Any = MISSING  # ``since_default`` not given: the field existed from the start


def _f(default: Any, help: str, *, choices: tuple[str, ...] | None = None, ge: float | None = None,
       gt: float | None = None, flag: str | None = None, since_default: Any = NOT_SET, **kw: Any) -> Any:
    """A dataclass field with its help text, allowed values (``choices``), bounds (``ge``/``gt``), an optional
    CLI ``flag`` and, for a field added after runs existed, ``since_default`` (see the module docstring)."""
    meta = {"help": help, "choices": choices, "ge": ge, "gt": gt, "flag": flag}
    if since_default is not NOT_SET:
        meta["since_default"] = since_default
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta, **kw)
    return field(default=default, metadata=meta, **kw)


knob = _f  # the public name for policy modules


@dataclass(frozen=True)
class NoKnobs:
    """The knob class of a policy without knobs of its own (random, bald, full)."""


__all__ = ["BETA_MODES", "ESTIMATORS", "NORMALIZATIONS", "NoKnobs", "PAPER_COLDNESS", "UNCERTAINTIES", "knob"]
