"""Presets: the loop sizes and model settings a run takes when the user did not choose them.

Today there is one, the **teaching preset**, used whenever a run has no data (``data.paths`` and
``data.ood_paths`` empty, ``data.synthetic == "teaching"``): the reference's defaults (320 initial +
320 x 74 labels, a ``D-2048-256-1`` MLP at lr 3e-5) do not fit the teaching world's 2,800-comparison
pool. :func:`apply_preset` fills every preset field the user did not
set explicitly; ``balpm run``, ``balpm sweep``, ``balpm demo`` (without real data) and the dashboard's
start form all call it, so a bare ``balpm sweep --policies random,bald,balpm --seeds 0-7`` runs the
teaching world at the size its lessons were measured at (docs/teaching-world.md).

Why these values:

* **Loop**: 50 initial labels + 50 per round, 10 rounds = 500 labels, 18% of the pool (the lesson
  needs a budget well below the pool: with the whole pool labelled every policy ends in one place).
* **Model**: K = 8 members (more members average out the members' random opinions where they
  have no data: round 0, 50 labels, scores -0.685 on test, just above chance, -0.693; during the
  design K = 5 with init std 0.3 started below chance, about -0.71), one hidden layer of 32 tanh
  units, init std 0.2 (the members' prior opinions differ enough for U to see where they have no
  data), AdamW lr 3e-3, minibatch 32, at most 30 epochs, early stopping with patience 3 on the
  valid split (time measured: docs/teaching-world.md).
* **beta = 0.1** (the paper's 0.01 was tuned for 4,096-D LLM features, where U and H have other
  scales; here BAL-PM at 0.01 put 83% of its labels in chit-chat, like BALD, and was no better than
  random, 8 seeds): in this world the spread (std over the pool) of
  beta*H is about 1.7x that of U at round 0 (IQR 1.6x), and the rank correlation of the score with H
  is about 0.8, so both terms are visible: H decides which region is labelled, U which comparison of
  a prompt and which prompts inside a region. BAL-PM's AULC gain over random was the same at 0.1,
  0.15 and 0.2 (8 seeds, docs/teaching-world.md); larger beta hides U (3.4x at 0.2).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from balpm.config import RunConfig

__all__ = ["TEACHING_PRESET", "apply_preset", "preset_name", "preset_values", "uses_teaching_world"]

TEACHING_PRESET: dict[str, dict[str, Any]] = {
    "loop": {"initial": 50, "batch_size": 50, "rounds": 10},
    "model": {"ensemble_size": 8, "hidden": (32,), "init_std": 0.2, "lr": 3e-3, "batch_size": 32,
              "max_epochs": 30, "patience": 3, "standardize": False},
    "acquisition": {"beta": 0.1},
}


def uses_teaching_world(cfg: RunConfig) -> bool:
    """Whether ``cfg`` runs on the synthetic teaching world (no data paths, ``data.synthetic == "teaching"``)."""
    d = cfg.data
    return not d.paths and not d.ood_paths and d.synthetic == "teaching" and d.format in ("auto", "synthetic")


def preset_name(cfg: RunConfig) -> str | None:
    """The name of the preset :func:`apply_preset` fills for ``cfg`` (``"teaching"``), or None."""
    return "teaching" if uses_teaching_world(cfg) else None


def preset_values(cfg: RunConfig) -> dict[str, dict[str, Any]]:
    """The teaching preset for ``cfg``'s world: :data:`TEACHING_PRESET`, with the loop sizes of a generalised
    world (``data.world``) from :func:`balpm.data.worlds.loop_settings` (10 rounds, initial = batch =
    max(10, round(budget * pool / 10)); the classic world: 50 / 50 / 10, the preset's own). The model and
    beta stay the preset's: chosen on the classic world, never tuned on the sampled ones."""
    if not cfg.data.world:
        return TEACHING_PRESET
    from balpm.data.worlds import loop_settings, parse_world

    return {**TEACHING_PRESET, "loop": loop_settings(parse_world(cfg.data.world))}


def _explicit_fields(explicit: Iterable[str]) -> set[tuple[str, str]]:
    """``{"loop.rounds", "lr"}`` -> ``{("loop", "rounds"), ("*", "lr")}`` (a bare name matches any section)."""
    out: set[tuple[str, str]] = set()
    for name in explicit:
        name = str(name)
        section, _, field = name.rpartition(".")
        out.add((section or "*", field))
    return out


def apply_preset(cfg: RunConfig, explicit: Iterable[str] = ()) -> RunConfig:
    """``cfg`` with the preset of its data filled in, except the fields in ``explicit``.

    ``explicit``: the fields the user set (CLI flags, keys of a YAML config), as ``"section.field"``
    (``"loop.rounds"``, ``"model.hidden"``) or a bare field name (matches that field in any section).
    A config without a preset (real data, the paper-shape world) is returned unchanged, and so is
    every field the user named, even when it equals the reference default.
    """
    if preset_name(cfg) is None:
        return cfg
    named = _explicit_fields(explicit)
    changes: dict[str, dict[str, Any]] = {}
    for section, values in preset_values(cfg).items():
        current = getattr(cfg, section)
        for field, value in values.items():
            if (section, field) in named or ("*", field) in named:
                continue
            if getattr(current, field) != value:  # acquisition: the union's value where the policy lacks the knob
                changes.setdefault(section, {})[field] = value
    if not changes:
        return cfg
    out = cfg
    for section, values in changes.items():
        if section == "acquisition":  # a preset knob the policy does not own (beta on random) stays hash-only,
            # as the union kept it, so teaching-world run ids are those of runs made before (config.LEGACY_KNOBS)
            out = dataclasses.replace(out, acquisition=out.acquisition.updated(values, strict=False))
            continue
        out = dataclasses.replace(out, **{section: dataclasses.replace(getattr(out, section), **values)})
    return out
