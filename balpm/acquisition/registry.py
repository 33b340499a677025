"""The policy registry: one entry per acquisition policy, declared by the policy's own module.

A policy module calls :func:`register_policy` once, at import::

    @dataclass(frozen=True)
    class ToyKnobs:
        weight: float = knob(1.0, "weight of the first feature", ge=0)

    register_policy("toy_topk", knobs=ToyKnobs, build=lambda k, common: ToyPolicy(k.weight, common.uncertainty),
                    help="top-B of U*weight + weight*x0", color="#8c564b")

Everything else (the config's ``acquisition`` section and its validation, the run hash, ``balpm run`` /
``sweep`` flags, ``--set acquisition.<knob>``, ``--grid``, report labels, colours, the Ablations widgets,
the per-step columns a run records) is generated from the entry.

Where entries come from (:func:`entries` loads them once, lazily):

* every module of the ``balpm.acquisition`` package (``pkgutil``): a new in-tree policy is ONE module;
* the ``balpm.policies`` entry-point group (a package's ``[project.entry-points."balpm.policies"]``);
* ``BALPM_PLUGINS=module1,module2`` (out-of-tree modules on ``sys.path``); a module that fails to
  import is a one-line :class:`~balpm.errors.ConfigError` naming it.

Imports nothing of balpm but :mod:`balpm.knobs` and :mod:`balpm.errors` (the policy modules import
this module; :mod:`balpm.config` imports it lazily), so nothing circles.
"""
from __future__ import annotations

import dataclasses
import importlib
import os
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from balpm.errors import ConfigError
from balpm.knobs import NoKnobs

ABILITIES = frozenset({"pool_table", "replay"})
#: the per-step columns every policy records (balpm.experiment.runs adds round, pool_index, pair_id, prompt_id)
BASE_STEP_COLUMNS: tuple[str, ...] = ("score", "u")
#: the per-item pool-score columns every policy records (balpm.experiment.runs adds the ids)
BASE_POOL_COLUMNS: tuple[str, ...] = ("u", "score")
PLUGINS_ENV = "BALPM_PLUGINS"
ENTRY_POINT_GROUP = "balpm.policies"


@dataclass(frozen=True)
class Common:
    """What every policy's ``build`` receives besides its knobs: the policy name and the uncertainty score
    (``acquisition.uncertainty``, shared by every policy: random records U too)."""

    policy: str
    uncertainty: str = "epistemic"


@dataclass(frozen=True)
class PolicyEntry:
    """One registered policy.

    ``knobs``: its frozen knob dataclass (fields made with :func:`balpm.knobs.knob`); ``build(knobs,
    common)``: the policy object (``select(state, batch_size, rng) -> Selection``); ``color``: its
    colour in every plot and report; ``step_columns`` / ``pool_columns``: the columns its Selection
    steps / pool table add to the base ones; ``abilities``: ``"pool_table"`` (the policy has
    ``pool_table(state)``, called when pool scores are saved) and ``"replay"`` (the dashboard can
    replay its picks step by step); ``label_uncertainty``: a non-default uncertainty shows in its label.
    """

    name: str
    knobs: type
    build: Callable[[Any, Common], Any]
    help: str = ""
    color: str = "#17becf"
    step_columns: tuple[str, ...] = ()
    pool_columns: tuple[str, ...] = ()
    abilities: frozenset[str] = field(default_factory=frozenset)
    label_uncertainty: bool = True
    label_order: tuple[str, ...] = ()
    module: str = ""

    def label_knobs(self) -> tuple[str, ...]:
        """The names shown in a label when not at their default, in order (``uncertainty`` and the knobs)."""
        if self.label_order:
            return self.label_order
        return (("uncertainty",) if self.label_uncertainty else ()) + tuple(self.knob_fields())

    def knob_fields(self) -> dict[str, dataclasses.Field]:
        """The knob fields by name, in declaration order."""
        return {f.name: f for f in dataclasses.fields(self.knobs)}

    @property
    def acquisition_columns(self) -> tuple[str, ...]:
        """The per-step columns of its picks: ``score``, ``u``, then its own (:data:`BASE_STEP_COLUMNS`)."""
        return BASE_STEP_COLUMNS + tuple(c for c in self.step_columns if c not in BASE_STEP_COLUMNS)

    @property
    def pool_score_columns(self) -> tuple[str, ...]:
        """The per-item pool-score columns: ``u``, its own, then ``score``."""
        return ("u",) + tuple(c for c in self.pool_columns if c not in BASE_POOL_COLUMNS) + ("score",)

    def records(self, column: str) -> bool:
        """Whether its picks record ``column`` (``"beta_h"``: the policy has an entropy term, BAL-PM)."""
        return column in self.acquisition_columns

    def has(self, ability: str) -> bool:
        """Whether the policy declares ``ability`` (``"pool_table"`` or ``"replay"``)."""
        return ability in self.abilities


_REGISTRY: dict[str, PolicyEntry] = {}
_LOADED: set[str] = set()
_package_loaded = False


def register_policy(name: str, *, knobs: type = NoKnobs, build: Callable[[Any, Common], Any], help: str = "",
                    color: str = "#17becf", step_columns: tuple[str, ...] = (), pool_columns: tuple[str, ...] = (),
                    abilities: set[str] | frozenset[str] = frozenset(), label_uncertainty: bool = True,
                    label_order: tuple[str, ...] = ()) -> PolicyEntry:
    """Add (or replace) the entry of policy ``name``; returns it. ``knobs`` must be a frozen dataclass whose
    fields do not shadow ``policy`` / ``uncertainty``; abilities must be known ones. ``label_order``: the label's
    knob order (default: ``uncertainty`` when ``label_uncertainty``, then the knobs as declared)."""
    if not dataclasses.is_dataclass(knobs) or not knobs.__dataclass_params__.frozen:  # type: ignore[attr-defined]
        raise ValueError(f"policy {name!r}: knobs must be a frozen dataclass (got {knobs!r})")
    clash = {"policy", "uncertainty", "legacy", "knobs"} & {f.name for f in dataclasses.fields(knobs)}
    if clash:
        raise ValueError(f"policy {name!r}: knob names {sorted(clash)} are reserved")
    bad = set(abilities) - ABILITIES
    if bad:
        raise ValueError(f"policy {name!r}: unknown abilities {sorted(bad)}; known: {', '.join(sorted(ABILITIES))}")
    entry = PolicyEntry(name=name, knobs=knobs, build=build, help=help, color=color,
                        step_columns=tuple(step_columns), pool_columns=tuple(pool_columns),
                        abilities=frozenset(abilities), label_uncertainty=bool(label_uncertainty),
                        label_order=tuple(label_order),
                        module=getattr(build, "__module__", "") or "")
    _REGISTRY[name] = entry
    return entry


def unregister_policy(name: str) -> None:
    """Remove an entry (tests that register a temporary policy clean up with this)."""
    _REGISTRY.pop(name, None)


def _import(module: str, where: str) -> None:
    try:
        importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - any failure of a plugin is reported as one line
        raise ConfigError(f"policy plugin {module!r} ({where}) failed to import: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}; fix or remove it from {where}") from None


def _load_package() -> None:
    global _package_loaded
    if _package_loaded:
        return
    _package_loaded = True
    import balpm.acquisition as package

    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{info.name}")
    try:
        eps = entry_points(group=ENTRY_POINT_GROUP)
    except Exception:  # noqa: BLE001 - broken metadata must not stop the built-in policies
        eps = ()
    for ep in eps:
        if ep.value not in _LOADED:
            _LOADED.add(ep.value)
            try:
                ep.load()
            except Exception as exc:  # noqa: BLE001
                raise ConfigError(f"policy plugin {ep.value!r} (entry point group {ENTRY_POINT_GROUP}) failed to "
                                  f"import: {type(exc).__name__}: {exc}; fix or uninstall it") from None


def _load_env_plugins() -> None:
    for module in (m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(",")):
        if module and module not in _LOADED:
            _import(module, f"${PLUGINS_ENV}")
            _LOADED.add(module)


def entries() -> dict[str, PolicyEntry]:
    """Every registered policy by name (loads the package's modules, entry points and $BALPM_PLUGINS first)."""
    _load_package()
    _load_env_plugins()
    return _REGISTRY


def names() -> tuple[str, ...]:
    """The registered policy names in registration order."""
    return tuple(entries())


def policy_entry(name: str) -> PolicyEntry:
    """The entry of policy ``name``; one-line ConfigError naming the choices if unknown."""
    reg = entries()
    try:
        return reg[name]
    except KeyError:
        raise ConfigError(f"unknown policy {name!r}; choose one of {', '.join(reg)} (a plugin policy: "
                          f"${PLUGINS_ENV}=module)") from None


def records(policy: str, column: str) -> bool:
    """Whether registered policy ``policy`` records ``column`` (False for a name not registered here, e.g. a
    plugin's run listed without its plugin)."""
    entry = entries().get(policy)
    return entry is not None and entry.records(column)


def has_ability(policy: str, ability: str) -> bool:
    """Whether registered policy ``policy`` declares ``ability`` (False for a name not registered here)."""
    entry = entries().get(policy)
    return entry is not None and entry.has(ability)


def knob_owners(knob_name: str) -> list[str]:
    """The policies that own a knob called ``knob_name`` (registration order)."""
    return [n for n, e in entries().items() if knob_name in e.knob_fields()]


def all_knob_fields() -> dict[str, tuple[str, dataclasses.Field]]:
    """Every knob name of every policy -> ``(first owner, its Field)``."""
    out: dict[str, tuple[str, dataclasses.Field]] = {}
    for n, e in entries().items():
        for k, f in e.knob_fields().items():
            out.setdefault(k, (n, f))
    return out


__all__ = ["ABILITIES", "BASE_POOL_COLUMNS", "BASE_STEP_COLUMNS", "Common", "PolicyEntry", "all_knob_fields",
           "entries", "knob_owners", "names", "policy_entry", "register_policy", "unregister_policy"]
