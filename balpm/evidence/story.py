"""The words of a verdict: short sentences from a report summary and the runs' own data.

``balpm demo`` prints these before pointing at the tables of ``balpm report``; the dashboard's lesson
page can reuse them. Every number in a sentence is read from

* the summary of :func:`balpm.evidence.report.report` (= ``balpm report --json``, built by
  :func:`balpm.evidence.stats.evidence`): the paired AULC difference of test log-likelihood with its 95%
  Student-t interval and seeds, the verdict, the minimal detectable effect (MDE, 80% power), the
  secondary "fewer labels" figure (only behind ``better``), the A/A noise, the ceiling and headroom;
* the run folders (:func:`mechanisms`): the share of each policy's acquired labels that fell in the
  world's noisy region (``noisy_share`` of rounds.parquet against the pool's share in truth.json) and
  the distinct prompts per acquired batch (acquisitions.parquet).

Nothing here computes a statistic of its own, so the words cannot disagree with the tables. The
sentences use the same formatting as the text report (:func:`balpm.evidence.stats.fmt_value`, 4 decimals for
log-likelihoods). No streamlit: the engine's rules apply.

Typical use::

    summary = report.report([root])
    mech = story.mechanisms(summary, root)
    for line in story.verdict_lines(summary, setting): print(line)
    print(story.mechanism_line(mech, summary, setting))
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from balpm.evidence import report, stats
from balpm.experiment import runs

__all__ = [
    "HEADLINE",
    "POLICY_NAMES",
    "TEACHING_CONDITIONS",
    "Mechanism",
    "display_name",
    "headroom_lines",
    "mechanism_line",
    "mechanisms",
    "separable",
    "teaching_conditions",
    "verdict_lines",
    "verdict_sentence",
]

HEADLINE = stats.HEADLINE_METRIC  # the metric the words speak of: test log-likelihood, its AULC
#: how the words name a policy (labels stay as they are in the tables)
POLICY_NAMES: dict[str, str] = {
    "random": "random", "bald": "BALD", "balpm": "BAL-PM", "softmax_bald": "SoftmaxBALD",
    "power_bald": "PowerBALD", "softrank_bald": "SoftRankBALD", "full": "the ceiling (full pool)",
}
#: What the teaching world's lessons need: the ``data.world`` knob (balpm/data/worlds.py) or setting that, changed
#: alone, changes the lesson, and the condition in words. Measured (16 seeds, MDEs, Holm) in docs/evidence.md,
#: "Sampled worlds" (the single-knob checks) and "Regime map"; no measured number is quoted here.
TEACHING_CONDITIONS: tuple[tuple[str, str], ...] = (
    ("contrast_ratio=1", ("the BALD trap for BALD < random and BAL-PM > BALD: noisy-region answers that differ more "
                          "than the topics' (at contrast_ratio=1 BALD stops over-sampling the noisy region and does "
                          "as well as BAL-PM)")),
    ("acquisition.beta=0.01", ("an entropy weight large enough to be seen beside U for BAL-PM > random (the "
                               "preset's; at the paper's acquisition.beta=0.01 BAL-PM labels the noisy region like "
                               "BALD and does worse than random)")),
    ("test=pool", ("a test set weighted towards the topics for the size of BAL-PM's gain (drawn like the pool, "
                   "test=pool, the gain shrinks but stays)")),
    ("budget", ("a label budget well below the pool (with the whole pool labelled, every policy ends in one "
                "place)")),
)


def display_name(label: str, policy: str | None = None) -> str:
    """``BAL-PM`` for ``balpm`` / ``balpm beta=0.1`` (the policy's name when the label is the policy plus
    knobs), the label itself for an unknown policy."""
    pol = policy or str(label).split(" ", 1)[0]
    return POLICY_NAMES.get(pol, str(label))


def _names(entries: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Label -> words: the policy's name when it is the only label of that policy in ``entries``, else the label."""
    per_policy: dict[str, int] = {}
    for e in entries:
        per_policy[e["policy"]] = per_policy.get(e["policy"], 0) + 1
    return {e["label"]: (display_name(e["label"], e["policy"]) if per_policy[e["policy"]] == 1 else e["label"])
            for e in entries}


def _entries(summary: Mapping[str, Any], setting: str) -> list[dict[str, Any]]:
    return [e for e in summary["policies"] if e["setting"] == setting]


_num = stats.finite_or_none


def _seeds(vs: Mapping[str, Any]) -> str:
    n = vs.get("n") or 0
    kind = "paired " if vs.get("paired") else "unpaired "
    return f"{n} {kind}seed{'s' * (n != 1)}"


def verdict_sentence(entry: Mapping[str, Any], baseline_name: str, name: str | None = None,
                     metric: str = HEADLINE) -> str:
    """One sentence: ``entry`` (a policy entry of the summary) against the baseline on ``metric``'s AULC.

    ``better`` / ``worse``: who beat whom, the mean paired AULC difference with its 95% interval, the
    seeds and the MDE; behind ``better`` only, the "fewer labels" figure (exact, with its bootstrap interval). ``no
    detectable difference``: the same numbers and the smallest effect these seeds could detect (MDE at
    80% power, with its share of the headroom when a ceiling is known). A Holm verdict that differs from
    the per-comparison one is said too.
    """
    who = name or display_name(entry["label"], entry.get("policy"))
    vs = (entry.get("vs_baseline") or {}).get(metric)
    what = f"{stats.METRIC_NAMES.get(metric, metric)} AULC"
    if not vs:
        return f"{who} vs {baseline_name}: no comparison on {what} (the baseline has no runs in this setting)"
    if vs.get("error"):
        return f"{who} vs {baseline_name}: {vs['error']}"
    n = vs.get("n") or 0
    d = vs["aulc_diff"]
    numbers = (f"{what} {stats.fmt_value(d['mean'], 4, True)}, 95% CI {stats.fmt_interval(d['ci'], 4, n)}, "
               f"{_seeds(vs)}")
    v = vs["verdict"]
    if v == "better":
        text = f"{who} beat {baseline_name}: {numbers}"
        share = _num(vs.get("effect_share"))
        if share is not None:
            text += f" ({share:.0%} of the headroom)"
        fl = vs.get("fewer_labels")
        if fl and fl.get("exact"):
            text += (f"; it reached {baseline_name}'s final value with {stats.fmt_saving(fl, 'exact')} fewer labels "
                     "(exact, 95% bootstrap CI)")
        elif vs.get("fewer_labels_note"):
            text += f"; fewer labels: {vs['fewer_labels_note']}"
    elif v == "worse":
        text = f"{who} did worse than {baseline_name}: {numbers}"
    else:
        text = f"{who} vs {baseline_name}: no detectable difference ({numbers})"
        m = _num(vs.get("mde"))
        if m is not None:
            share = _num(vs.get("mde_share"))
            text += (f"; these seeds could detect a difference of {stats.fmt_value(m)} or more (MDE, 80% power"
                     + (f", {share:.0%} of the headroom" if share is not None else "") + ")")
        elif n < 2:
            text += "; one seed gives no interval"
    if v in ("better", "worse"):  # a called verdict carries its power too (issue 13: every verdict its MDE)
        m = _num(vs.get("mde"))
        if m is not None:
            share = _num(vs.get("mde_share"))
            text += (f"; MDE {stats.fmt_value(m)} (80% power" + (f", {share:.0%} of the headroom" if share is not None
                                                                  else "") + ")")
    hv = vs.get("holm_verdict")
    if hv and hv != v:
        text += f" [under Holm's control over the report's comparisons: {hv}]"
    elif hv and v in ("better", "worse"):
        text += " [holds under Holm's control over the report's comparisons]"
    return text


def verdict_lines(summary: Mapping[str, Any], setting: str, labels: Sequence[str] | None = None,
                  metric: str = HEADLINE) -> list[str]:
    """:func:`verdict_sentence` for every compared policy of ``setting`` (or only ``labels``), in the
    summary's order; the baseline itself and the ceiling get none."""
    entries = _entries(summary, setting)
    names = _names(entries)
    base = next((e for e in entries if e["is_baseline"]), None)
    bname = names.get(base["label"], base["label"]) if base else display_name(summary["baseline"])
    out = []
    for e in entries:
        if e["is_baseline"] or (labels is not None and e["label"] not in labels):
            continue
        out.append(verdict_sentence(e, bname, names[e["label"]], metric))
    return out


# ---- mechanism: where the labels went ------------------------------------------------------------
@dataclass(frozen=True)
class Mechanism:
    """Where one label's acquired labels went, over its seeds (means; None when the runs cannot say).

    ``noisy_share``: share of the acquired labels (the initial random set excluded) in the noisy region,
    from rounds.parquet ``noisy_share`` (share among the labelled pairs that trained each round) of the
    first and last rounds; ``pool_noisy_share``: the pool's share (truth.json ``noisy_share_pool``);
    ``unique_prompts``: distinct prompts per acquired batch (acquisitions.parquet); ``batch_size``:
    labels per acquired batch; ``labelled``: labels at the last round; ``pool``: pool size (pool.parquet).
    """

    label: str
    seeds: int
    noisy_share: float | None
    pool_noisy_share: float | None
    unique_prompts: float | None
    batch_size: float | None
    labelled: float | None = None
    pool: float | None = None


def _acquired_noisy_share(rounds: Any) -> float | None:
    """Share of the labels acquired after the initial set that lie in the noisy region (None: unknown)."""
    if "noisy_share" not in rounds.columns or len(rounds) < 2:
        return None
    first, last = rounds.iloc[0], rounds.iloc[-1]
    s0, s1 = _num(first["noisy_share"]), _num(last["noisy_share"])
    n0, n1 = _num(first["labelled"]), _num(last["labelled"])
    if None in (s0, s1, n0, n1) or n1 <= n0:
        return None
    return (s1 * n1 - s0 * n0) / (n1 - n0)


def mechanisms(summary: Mapping[str, Any], root: str | Path, setting: str | None = None) -> dict[str, Mechanism]:
    """Label -> :class:`Mechanism` for the runs of ``summary`` (in ``setting``, default all) under ``root``.

    Reads each run's rounds.parquet, acquisitions.parquet and truth.json through :mod:`balpm.experiment.runs`; a run
    that cannot be read counts as unknown for the numbers it lacks."""

    out: dict[str, Mechanism] = {}
    for e in summary["policies"]:
        if setting is not None and e["setting"] != setting:
            continue
        noisy, pool, uniq, size, labelled, pool_size = [], [], [], [], [], []
        for rid in e["run_ids"]:
            try:
                run = runs.open_run(root, rid)
                rounds = run.rounds()
                acq = run.acquisitions()
                pool_size.append(float(len(run.pool())))
            except Exception:  # noqa: BLE001, S112 - unreadable: its numbers are unknown, not zero
                continue
            if len(rounds):
                labelled.append(float(rounds["labelled"].iloc[-1]))
            ns = _acquired_noisy_share(rounds)
            if ns is not None:
                noisy.append(ns)
            truth = report.read_truth(Path(root) / rid) or {}
            if _num(truth.get("noisy_share_pool")) is not None:
                pool.append(float(truth["noisy_share_pool"]))
            if len(acq) and "prompt_id" in acq.columns:
                per = acq.groupby("round")["prompt_id"].agg(["nunique", "size"])
                uniq.append(float(per["nunique"].mean()))
                size.append(float(per["size"].mean()))
        out[e["label"]] = Mechanism(e["label"], len(e["run_ids"]), _mean(noisy), _mean(pool), _mean(uniq), _mean(size),
                                    _mean(labelled), _mean(pool_size))
    return out


def _mean(v: Sequence[float]) -> float | None:
    return float(np.mean(v)) if len(v) else None


def mechanism_line(mech: Mapping[str, Mechanism], summary: Mapping[str, Any], setting: str,
                   region: str = "the noisy region") -> str:
    """Why, in one line: each policy's share of acquired labels in ``region`` against the pool's share,
    and its distinct prompts per batch. Policies without acquisitions (the ceiling) are left out."""
    entries = [e for e in _entries(summary, setting) if e["label"] in mech and e["policy"] != stats.CEILING_POLICY]
    names = _names(entries)
    shares = [(names[e["label"]], mech[e["label"]]) for e in entries]
    parts = []
    pools = [m.pool_noisy_share for _, m in shares if m.pool_noisy_share is not None]
    with_share = [(n, m) for n, m in shares if m.noisy_share is not None]
    if with_share:
        head = f"share of the acquired labels in {region}" + (f" (pool: {np.mean(pools):.0%})" if pools else "")
        parts.append(head + ": " + ", ".join(f"{n} {m.noisy_share:.0%}" for n, m in with_share))
    with_uniq = [(n, m) for n, m in shares if m.unique_prompts is not None]
    if with_uniq:
        size = next((m.batch_size for _, m in with_uniq if m.batch_size), None)
        parts.append("distinct prompts per batch" + (f" of {size:.0f}" if size else "") + ": "
                     + ", ".join(f"{n} {m.unique_prompts:.1f}" for n, m in with_uniq))
    if not parts:
        return "Why: the runs record no acquisitions to explain it."
    return "Why: " + "; ".join(parts) + "."


# ---- ceiling, headroom and noise ---------------------------------------------------------------
def separable(summary: Mapping[str, Any], setting: str, metric: str = HEADLINE) -> bool | None:
    """Whether these runs could separate the policies at all on ``metric``: False when the ceiling's headroom
    over round 0 is below the A/A noise (the report's WARNING) or below every comparison's MDE; None when the
    ceiling or the noise is unknown."""
    ceil = ((summary.get("ceiling") or {}).get(setting) or {}).get("metrics", {}).get(metric)
    if not ceil or _num(ceil.get("headroom")) is None:
        return None
    head = float(ceil["headroom"])
    noise = _num(ceil.get("noise"))
    mdes = [_num(((e.get("vs_baseline") or {}).get(metric) or {}).get("mde")) for e in _entries(summary, setting)]
    mdes = [m for m in mdes if m is not None]
    if noise is None and not mdes:
        return None
    if noise is not None and head < noise:
        return False
    return not (mdes and head <= min(mdes))


def headroom_lines(summary: Mapping[str, Any], setting: str, metric: str = HEADLINE) -> list[str]:
    """The ceiling, the headroom, the A/A noise and what they allow, in words (from the summary only).

    The ceiling is the ``full`` runs' (the same model trained once on the whole pool) when there are
    some, else truth.json's Bayes-optimal value; without either, one line saying so."""
    name = stats.METRIC_NAMES.get(metric, metric)
    aa = (summary.get("aa_check") or {}).get(setting) or {}
    ceil_all = (summary.get("ceiling") or {}).get(setting)
    ceil = (ceil_all or {}).get("metrics", {}).get(metric)
    hr = ((summary.get("headroom") or {}).get(setting) or {}).get(metric) or {}
    out = []
    if aa.get("splits"):
        noise = _num((aa.get("per_metric") or {}).get(metric, {}).get("noise"))
        fp = _num((aa.get("per_metric") or {}).get(metric, {}).get("false_positive_rate"))
        out.append(f"A/A check ({aa.get('baseline') or summary['baseline']}'s {aa['n_seeds']} seeds split in halves, "
                   f"{aa['splits']} splits): seed noise alone moves the {name} AULC by up to {stats.fmt_value(noise)} "
                   f"(1.96 SD); the verdict rule called that noise a difference in {fp:.0%} of the splits.")
    else:
        out.append(f"A/A check: not run: {aa.get('reason') or 'no baseline runs'}; the seed noise of these runs "
                   "is not measured.")
    if ceil and _num(ceil.get("mean")) is not None:
        lab = (ceil_all or {}).get("labelled")
        out.append("Ceiling: the same model trained on the whole pool"
                   + (f" ({int(lab):,} labels" if lab else " (")
                   + f", {ceil_all['n_seeds']} seed{'s' * (ceil_all['n_seeds'] != 1)}) reaches {name} "
                   f"{stats.fmt_value(ceil['mean'])}; the policies start at {stats.fmt_value(ceil.get('initial'))} "
                   f"(round 0), a headroom of {stats.fmt_value(ceil.get('headroom'), 4, True)}"
                   + (f"; {summary['baseline']}'s AULC {stats.fmt_value(hr['baseline_aulc'])} is "
                      f"{stats.fmt_value(hr['headroom'])} below the ceiling (the 'headroom' the shares of the "
                      "verdicts refer to)" if _num(hr.get("headroom")) is not None else "") + ".")
    elif hr.get("source") == "truth":
        out.append(f"Ceiling: the planted truth's Bayes-optimal {name} is {stats.fmt_value(hr['ceiling'])}; "
                   f"random's AULC is {stats.fmt_value(hr['baseline_aulc'])}, a headroom of "
                   f"{stats.fmt_value(hr['headroom'], 4, True)}.")
    else:
        out.append("Ceiling: unknown (no 'full' runs and no truth.json); balpm sweep --ceiling adds it.")
    sep = separable(summary, setting, metric)
    if sep is False:
        out.append("So this sample cannot separate the policies: the most any policy could gain is no larger than "
                   "what seed noise (or the smallest detectable effect) already is; a 'no detectable difference' "
                   "here says nothing about BAL-PM.")
    elif sep is True:
        mdes = [(_num(vs.get("mde")), _num(vs.get("mde_share"))) for e in _entries(summary, setting)
                for vs in [((e.get("vs_baseline") or {}).get(metric) or {})] if _num(vs.get("mde")) is not None]
        small = min(mdes) if mdes else None
        text = "The headroom is larger than the seed noise, so a difference could show in these runs"
        if small is not None:
            text += (f", but only a large one: the smallest detectable effect is {stats.fmt_value(small[0])}"
                     + (f" ({small[1]:.0%} of the gap from {summary['baseline']}'s AULC to the ceiling)"
                        if small[1] is not None else ""))
        out.append(text + "; a 'no detectable difference' rules out only effects that large.")
    return out


def teaching_conditions(mech: Mapping[str, Mechanism] | None = None) -> list[str]:
    """The conditions the teaching world's result needs, one phrase each (:data:`TEACHING_CONDITIONS`); the
    budget's gets this world's labels and pool size from ``mech`` (:func:`mechanisms`) when given. Where
    they were measured: docs/evidence.md (no measured number is quoted here)."""
    out = []
    known = [m for m in (mech or {}).values() if m.labelled and m.pool]
    for knob, text in TEACHING_CONDITIONS:
        if knob == "budget" and known:
            text += f": here {known[0].labelled:,.0f} labels of a {known[0].pool:,.0f}-comparison pool"
        out.append(text)
    return out
