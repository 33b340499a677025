"""Teaching worlds as a distribution: the knobs that decided each lesson of the teaching world, a
canonical spec string for them (``data.world``), and a stated prior to sample worlds from.

The classic teaching world (:func:`balpm.data.synthetic.teaching_world`, docs/teaching-world.md)
is one point of this space: :data:`CLASSIC` (every knob at its default). Its lessons each rest on one
knob (issue 13): BAL-PM > random needs ``test=topics``; BALD <= random needs a noisy region whose
answers differ ~9x more than the topics' (``contrast_ratio``) with coin-flip labels (``noisy_flip=1``).

Knobs (:class:`WorldSpec`; each field's metadata carries its help and bounds):

* ``noisy_share``: share of the pool's prompts in the noisy region (cluster 0, *chit-chat*); the topics
  share the rest.
* ``contrast_ratio``: mean feature-difference norm ``||phi(a) - phi(b)||`` of the noisy region's
  comparisons over the topics' (classic: 23.8 / 2.64 = 9.0, measured on seed 0). The knob scales the
  noisy region's answer spread (classic 3.0) by ``contrast_ratio / 9``; the realised ratio is the knob
  within a few percent (tests/test_worlds.py measures it at 1 and 20).
* ``noisy_flip``: label noise in the noisy region: the true probability there is
  ``noisy_flip * 0.5 + (1 - noisy_flip) * sigmoid(taste margin)``; 1 = coin flips (classic), 0 = the
  region has its own taste, a direction in its answer block whose margins have the scale of a topic
  comparison of mean contrast.
* ``test``: which prompts the test split asks about: ``topics`` (the five topics equally, no chit-chat:
  classic), ``pool`` (drawn like the pool, i.i.d.), ``ood`` (the shifted distribution of the ``ood``
  split: proportions reversed, centres shifted, typical answers moved).
* ``imbalance``: largest / smallest topic share (classic 0.18 / 0.08 = 2.25). The topic shares are the
  classic ones raised to the power ``log(imbalance) / log(2.25)`` (1 = equal topics), rescaled to
  ``1 - noisy_share``.
* ``cpp``: comparisons per prompt (prompt redundancy; classic 4, the real TL;DR sample 1.8).
* ``n_prompts``: in-distribution prompts (pool / valid / test 70 / 10 / 20%); the pool has
  ``0.7 * n_prompts * cpp`` comparisons.
* ``budget``: labels at the end of the loop as a share of the pool (classic 500 / 2,800). The loop
  settings the world implies (:func:`loop_settings`): 10 rounds, ``initial = batch = max(10,
  round(budget * pool / 10))``; the classic world gives the teaching preset's 50 / 50 / 10.
* ``dim``: pair-feature dimension D (classic 64 = 2 prompt coordinates + 62 answer dimensions). D > 64
  appends ``D - 64`` isotropic noise dimensions (std 0.05, the world's own isotropic answer noise) to
  each answer and rotates all D by one seeded random rotation (fixed per world geometry); prompt
  features (the 2-D map BAL-PM's entropy uses) stay 2-D.

``data.world`` holds a spec string ``"noisy_share=0.2,test=pool"`` (knobs left out take their
defaults; :func:`parse_world`); ``WorldSpec.spec()`` writes every knob in a fixed order, and the
empty string is the classic world. A world with every knob at its default is bit-identical to the
classic one (same table, same features).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from balpm.errors import ConfigError

__all__ = ["CLASSIC", "CLASSIC_CONTRAST_RATIO", "LOOP_ROUNDS", "PRIOR", "TEST_CHOICES", "WorldSpec", "loop_settings",
           "parse_world", "pool_comparisons", "sample_worlds", "world_knobs_help"]

TEST_CHOICES = ("topics", "pool", "ood")
#: measured on the classic world (seed 0): mean ||a - b|| chit-chat 23.79, topics 2.64 -> 9.01
CLASSIC_CONTRAST_RATIO = 9.0
CLASSIC_IMBALANCE = 2.25   # 0.18 / 0.08
CLASSIC_BUDGET = 500 / 2800
LOOP_ROUNDS = 10
MIN_BATCH = 10


def _knob(default: Any, help: str, lo: float | None = None, hi: float | None = None,
          choices: tuple[str, ...] | None = None) -> Any:
    return field(default=default, metadata={"help": help, "lo": lo, "hi": hi, "choices": choices})


@dataclass(frozen=True)
class WorldSpec:
    """One teaching world: every knob that decided a lesson (defaults: the classic world)."""

    noisy_share: float = _knob(0.40, "share of pool prompts in the noisy region (chit-chat)", 0.02, 0.9)
    contrast_ratio: float = _knob(CLASSIC_CONTRAST_RATIO, "mean ||phi(a)-phi(b)|| of noisy-region comparisons "
                                  "over the topics' (classic 9)", 0.1, 50.0)
    noisy_flip: float = _knob(1.0, "label noise in the noisy region: 1 coin flips, 0 a taste like a topic's", 0.0, 1.0)
    test: str = _knob("topics", "test prompts: topics (equal topics, no noisy region), pool (i.i.d.), ood (shifted)",
                      choices=TEST_CHOICES)
    imbalance: float = _knob(CLASSIC_IMBALANCE, "largest / smallest topic share (1: equal topics)", 1.0, 100.0)
    cpp: int = _knob(4, "comparisons per prompt (prompt redundancy)", 1, 32)
    n_prompts: int = _knob(1000, "in-distribution prompts (pool 70%, valid 10%, test 20%)", 50, 100_000)
    budget: float = _knob(CLASSIC_BUDGET, "labels at the end as a share of the pool (10 rounds)", 0.001, 1.0)
    dim: int = _knob(64, "pair-feature dimension D (>= 64: noise dimensions and a random rotation)", 64, 8192)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            lo, hi, choices = f.metadata["lo"], f.metadata["hi"], f.metadata["choices"]
            if choices is not None:
                if value not in choices:
                    raise ConfigError(f"world knob {f.name} must be one of {', '.join(choices)} (got {value!r}); "
                                      f"fix data.world")
                continue
            if f.type in ("int", int):
                if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                    raise ConfigError(f"world knob {f.name} must be a whole number (got {value!r}); fix data.world")
            elif isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
                    or not math.isfinite(float(value)):
                raise ConfigError(f"world knob {f.name} must be a finite number (got {value!r}); fix data.world")
            if not lo <= value <= hi:
                raise ConfigError(f"world knob {f.name} must be in [{lo:g}, {hi:g}] (got {value}); fix data.world")

    # -- the spec string ---------------------------------------------------------------------------
    def knobs(self) -> dict[str, float | int | str]:
        """Every knob by name, in the canonical order."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def spec(self) -> str:
        """The canonical spec string: every knob, fixed order, floats as the shortest exact decimal
        (``parse_world(w.spec()) == w``)."""
        return ",".join(f"{k}={_fmt(v)}" for k, v in self.knobs().items())

    def is_classic(self) -> bool:
        """Every knob at the classic world's value."""
        return self == CLASSIC

    # -- what the knobs mean for the generator and the loop ------------------------------------------
    def cluster_sizes(self, classic_sizes: tuple[float, ...]) -> tuple[float, ...]:
        """Pool shares per cluster: ``noisy_share`` for cluster 0, the topics the classic shares raised to
        ``log(imbalance) / log(2.25)`` and rescaled to ``1 - noisy_share`` (the classic tuple at the defaults)."""
        if self.noisy_share == CLASSIC.noisy_share and self.imbalance == CLASSIC.imbalance:
            return tuple(classic_sizes)
        topics = np.asarray(classic_sizes[1:], dtype=np.float64) ** (math.log(self.imbalance) / math.log(CLASSIC_IMBALANCE))
        topics = topics / topics.sum() * (1.0 - self.noisy_share)
        return (float(self.noisy_share),) + tuple(float(t) for t in topics)

    def chat_scale(self, classic_scale: float) -> float:
        """The noisy region's answer spread: the classic one times ``contrast_ratio / 9``."""
        return classic_scale * (self.contrast_ratio / CLASSIC_CONTRAST_RATIO)


def _fmt(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    return repr(float(value))  # the shortest string that reads back as the same float


CLASSIC = WorldSpec()


def parse_world(spec: str) -> WorldSpec:
    """``"noisy_share=0.2,test=pool"`` -> :class:`WorldSpec` (knobs left out: the classic values; ``""``:
    the classic world). Unknown knobs, repeats and values out of bounds are one-line errors."""
    if spec is None:
        return CLASSIC
    if isinstance(spec, WorldSpec):
        return spec
    text = str(spec).strip()
    if not text or text == "classic":
        return CLASSIC
    known = {f.name: f for f in fields(WorldSpec)}
    values: dict[str, Any] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        name, eq, raw = item.partition("=")
        name, raw = name.strip(), raw.strip()
        if not eq or not raw:
            raise ConfigError(f"data.world item {item!r} is not knob=value; write e.g. noisy_share=0.2,test=pool")
        if name not in known:
            raise ConfigError(f"unknown world knob {name!r} in data.world; knobs: {', '.join(known)}")
        if name in values:
            raise ConfigError(f"world knob {name!r} given twice in data.world")
        tp = known[name].type
        if tp in ("int", int):
            try:
                number = float(raw)
            except ValueError:
                raise ConfigError(f"world knob {name} must be a whole number (got {raw!r}); fix data.world") from None
            if not number.is_integer():
                raise ConfigError(f"world knob {name} must be a whole number (got {raw!r}); fix data.world")
            values[name] = int(number)
        elif tp in ("float", float):
            try:
                values[name] = float(raw)
            except ValueError:
                raise ConfigError(f"world knob {name} must be a number (got {raw!r}); fix data.world") from None
        else:
            values[name] = raw
    return WorldSpec(**values)


def canonical_spec(spec: str) -> str:
    """The one spelling of the world ``spec`` names: ``""`` for the classic world (the default of
    ``data.world``), else :meth:`WorldSpec.spec` (every knob, fixed order, shortest exact floats).
    ``"test=pool,noisy_share=0.20"`` and ``"noisy_share=0.2,test=pool"`` are one world, one run hash; a
    canonical spec (what ``balpm worlds`` writes) is returned unchanged. Errors as :func:`parse_world`."""
    world = parse_world(spec)
    return "" if world.is_classic() else world.spec()


def world_knobs_help() -> list[tuple[str, str, str, str]]:
    """``(name, default, bounds or choices, help)`` of every knob (for ``balpm worlds --knobs`` and docs)."""
    out = []
    for f in fields(WorldSpec):
        m = f.metadata
        bounds = "|".join(m["choices"]) if m["choices"] else f"[{_fmt(m['lo'])}, {_fmt(m['hi'])}]"
        out.append((f.name, _fmt(getattr(CLASSIC, f.name)), bounds, m["help"]))
    return out


def pool_comparisons(world: WorldSpec, ratios: tuple[float, float, float] = (0.7, 0.1, 0.2)) -> int:
    """Comparisons in the pool (train split) of ``world``, as :func:`~balpm.data.synthetic.teaching_world` splits it."""
    n_test = int(np.rint(ratios[2] * world.n_prompts))
    n_valid = int(np.rint(ratios[1] * world.n_prompts))
    return (world.n_prompts - n_test - n_valid) * world.cpp


def loop_settings(world: WorldSpec) -> dict[str, int]:
    """The loop sizes ``world`` implies (the rule of the teaching preset): ``LOOP_ROUNDS`` (10) rounds,
    ``initial = batch = max(10, round(budget * pool / 10))``; the classic world: 50 / 50 / 10 (500 labels of 2,800)."""
    batch = max(MIN_BATCH, int(round(world.budget * pool_comparisons(world) / LOOP_ROUNDS)))
    return {"initial": batch, "batch_size": batch, "rounds": LOOP_ROUNDS}


# ---- the stated prior --------------------------------------------------------------------------------
#: The prior ``balpm worlds`` samples from: one entry per knob, independent. ``uniform`` [lo, hi],
#: ``loguniform`` [lo, hi] (uniform in log), ``choice`` (equal probability), ``fixed``. Sampled floats are
#: rounded to 3 significant digits (so a world's spec string is its exact value). Sizes are chosen so a
#: run takes seconds on one CPU core (pool 210 .. 8,400 comparisons, at most ~2,900 labels).
PRIOR: dict[str, dict[str, Any]] = {
    "noisy_share": {"dist": "uniform", "lo": 0.1, "hi": 0.6},
    "contrast_ratio": {"dist": "loguniform", "lo": 0.5, "hi": 20.0},
    "noisy_flip": {"dist": "uniform", "lo": 0.0, "hi": 1.0},
    "test": {"dist": "choice", "values": ["topics", "pool", "ood"]},
    "imbalance": {"dist": "loguniform", "lo": 1.0, "hi": 10.0},
    "cpp": {"dist": "choice", "values": [1, 2, 4, 8]},
    "n_prompts": {"dist": "loguniform_int", "lo": 300, "hi": 1500},
    "budget": {"dist": "loguniform", "lo": 0.08, "hi": 0.35},
    "dim": {"dist": "choice", "values": [64, 128, 256]},
}


def _round_sig(x: float, digits: int = 3) -> float:
    return float(f"{x:.{digits}g}")


def _draw(rng: np.random.Generator, name: str, rule: dict[str, Any]) -> Any:
    dist = rule["dist"]
    if dist == "uniform":
        return _round_sig(rng.uniform(rule["lo"], rule["hi"]))
    if dist == "loguniform":
        return _round_sig(math.exp(rng.uniform(math.log(rule["lo"]), math.log(rule["hi"]))))
    if dist == "loguniform_int":
        return int(round(math.exp(rng.uniform(math.log(rule["lo"]), math.log(rule["hi"])))))
    if dist == "choice":
        values = rule["values"]
        return values[int(rng.integers(len(values)))]
    if dist == "fixed":
        return rule["value"]
    raise ConfigError(f"prior for {name}: unknown distribution {dist!r}")


def sample_worlds(n: int, seed: int, prior: dict[str, dict[str, Any]] | None = None) -> list[WorldSpec]:
    """``n`` worlds drawn from ``prior`` (default :data:`PRIOR`), a pure function of ``seed``: world i
    uses its own stream ``SeedSequence(seed, spawn_key=(i,))``, so the first k of ``n`` worlds are the
    same for any ``n >= k``. Knobs the prior leaves out take their classic values."""
    if int(n) < 1:
        raise ConfigError(f"--n must be >= 1 (got {n})")
    prior = PRIOR if prior is None else prior
    known = {f.name for f in fields(WorldSpec)}
    unknown = sorted(set(prior) - known)
    if unknown:
        raise ConfigError(f"prior names unknown world knobs {', '.join(unknown)}; knobs: {', '.join(sorted(known))}")
    out = []
    for i in range(int(n)):
        rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(i,)))
        values = {f.name: _draw(rng, f.name, prior[f.name]) for f in fields(WorldSpec) if f.name in prior}
        out.append(dataclasses.replace(CLASSIC, **values))
    return out
