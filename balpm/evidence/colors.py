"""One colour table for every plot and report: a run label's colour, from the label alone.

A policy's own colour is its registry entry's ``color`` (:mod:`balpm.acquisition.registry`); the
dashboard (``dashboard/plots.py``) and the HTML report (:mod:`balpm.evidence.report`) both call
:func:`label_color`, so a label has one colour in every page, report and runs folder.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping

from balpm.experiment import presets

#: the paper's ablations (docs/method.md section 6), by the ``knob=value`` a label carries: the same colour in every
#: runs folder, whatever the base's other knobs (``balpm uncertainty=none`` = ``balpm beta=0.1 uncertainty=none``)
ABLATION_COLORS = {
    "uncertainty=none": "#2ca02c",  # no U: greedy entropy only
    "minimize_entropy=True": "#ff7f0e",  # entropy minimiser: U - beta*H
    "uncertainty=predictive": "#17becf",
    "estimator=kl": "#bcbd22",
    "uncertainty=aleatoric": "#393b79",
    "uncertainty=variance": "#637939",
    "beta=0": "#8c6d31",  # no entropy term
}
#: any other label: a stable hash of the label itself picks one of these (never the order of the labels)
EXTRA_COLORS = ("#843c39", "#5254a3", "#e7ba52", "#a55194", "#31a354", "#6b6ecf", "#ad494a", "#de9ed6", "#9c9ede",
                "#e7969c")


class _PolicyColors(Mapping):
    """:data:`BASE_COLORS`: policy name -> its registry entry's colour (a live view: plugins included)."""

    def _all(self) -> dict[str, str]:
        from balpm.acquisition.registry import entries

        return {name: e.color for name, e in entries().items()}

    def __getitem__(self, name: str) -> str:
        return self._all()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


BASE_COLORS: Mapping[str, str] = _PolicyColors()


def darker(color: str, amount: float = 0.25) -> str:
    """``#rrggbb`` mixed with ``amount`` of black."""
    rgb = [int(color[i:i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(c * (1.0 - amount)):02x}" for c in rgb)


def label_color(label: str) -> str:
    """The colour of one run label, from the label alone (the same in every runs folder and every page).

    A plain policy (``balpm``): its registry entry's colour; a policy with only the teaching preset's knobs
    (``balpm beta=0.1``, the teaching world's BAL-PM): the same hue a shade darker (:func:`darker`), so it is
    BAL-PM's red in every folder and still apart from ``balpm`` in a beta grid. A label with an ablation's
    ``knob=value`` (``balpm beta=0.1 uncertainty=none``): :data:`ABLATION_COLORS` (the first in that table's
    order). Any other label: :data:`EXTRA_COLORS` by a SHA-256 of the label (stable across processes and runs
    folders).
    """
    text = str(label)
    colors = dict(BASE_COLORS)
    if text in colors:
        return colors[text]
    policy, *knobs = text.split() or [""]
    for knob, color in ABLATION_COLORS.items():
        if knob in knobs:
            return color
    preset = {f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in presets.TEACHING_PRESET.get("acquisition", {}).items()}
    if policy in colors and knobs and set(knobs) <= preset:
        return darker(colors[policy])
    return EXTRA_COLORS[hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()[0] % len(EXTRA_COLORS)]


__all__ = ["ABLATION_COLORS", "BASE_COLORS", "EXTRA_COLORS", "darker", "label_color"]
