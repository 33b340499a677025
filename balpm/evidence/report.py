"""Reports over many runs: per setting and quality metric, every policy against the baseline.

Runs are grouped by *setting* (everything but the policy and the seed: data, features, model, loop
sizes) and by *label* (the policy plus its non-default knobs: ``balpm beta=0.1`` differs from
``balpm``). All the statistics are :func:`balpm.evidence.stats.evidence` (the same function, with the same
defaults, that the dashboard's Learning curves page calls): per metric the paired AULC and final-value
differences against the baseline with 95% Student-t intervals and the verdict ``better`` / ``worse`` /
``no detectable difference`` (the AULC's is the headline), the A/A check on the baseline's seeds, the
ceiling of ``full`` runs with its headroom, and the secondary "X% fewer labels" figure only behind a
``better`` verdict. ``smooth`` only changes the curves drawn (``curves`` in the JSON, the HTML).

This module collects runs (one per config: the same config under two run ids counts once) and
arranges the numbers as text, JSON and standalone HTML.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from balpm.errors import BalpmError
from balpm.evidence import metrics, stats
from balpm.evidence.colors import darker, label_color
from balpm.experiment import ablations, runs

CURVES = ("test_log_likelihood", "ood_log_likelihood", "test_accuracy", "ood_accuracy")


@dataclass(frozen=True)
class LoadedRun:
    """A complete run's identity and its rounds table."""

    run_id: str
    path: Path
    label: str
    policy: str
    seed: int
    setting: str
    rounds: pd.DataFrame
    config_hash: str = ""
    truth: dict[str, Any] | None = None  # truth.json (the planted truth's exact ceilings), None when absent

    def __post_init__(self) -> None:
        if self.truth is None:  # read from the folder when not given (the dashboard builds LoadedRun itself)
            object.__setattr__(self, "truth", read_truth(self.path))


def read_truth(path: str | Path) -> dict[str, Any] | None:
    """The run folder's truth.json as a dict, or None when absent or unreadable (older runs: unknown)."""
    p = Path(path) / "truth.json"
    try:
        obj = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def collect(paths: Iterable[str | Path], *, variants: bool = True) -> tuple[list[LoadedRun], list[dict[str, Any]]]:
    """Complete runs under the given run folders or runs roots, and the skipped ones (with reasons).

    ``variants=False`` leaves ablation variants out (:func:`balpm.experiment.ablations.is_variant`: runs named by
    ``balpm sweep --ablations`` or BAL-PM with an ablation-only knob), skipped with state ``variant``.

    The same config (same ``RunConfig`` hash) complete under two run ids counts once: the run with the
    smallest run id is kept, the others are skipped with state ``duplicate``.
    """
    paths = list(paths)
    found: dict[str, runs.RunInfo] = {}
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise BalpmError(f"{str(p)!r} does not exist; give run folders or a runs root")
        if (p / "config.yaml").is_file():
            infos = [runs.inspect_run(p)]
        else:
            infos = runs.list_runs(p)
        for info in infos:
            found.setdefault(str(info.path.resolve()), info)
    loaded, skipped = [], []
    by_hash: dict[str, str] = {}
    for info in sorted(found.values(), key=lambda i: i.run_id):
        if info.state != "complete":
            skipped.append({"run_id": info.run_id, "state": info.state, "reason": info.reason or info.error
                            or f"{info.last_round + 1}/{info.rounds} rounds done"})
            continue
        if info.config_hash and info.config_hash in by_hash:
            skipped.append({"run_id": info.run_id, "state": "duplicate",
                            "reason": f"same config as {by_hash[info.config_hash]} (counted once)"})
            continue
        try:
            run = runs.open_run(info.path.parent, info.run_id)
            if not variants and ablations.is_variant(run.config):
                skipped.append({"run_id": info.run_id, "state": "variant",
                                "reason": "ablation variant: add --variants to compare it"})
                continue
            rounds = run.rounds()
        except Exception as exc:
            skipped.append({"run_id": info.run_id, "state": "broken", "reason": " ".join(str(exc).split())})
            continue
        if info.config_hash:
            by_hash[info.config_hash] = info.run_id
        loaded.append(LoadedRun(info.run_id, info.path, info.label or "?", info.policy or "?", int(info.seed or 0),
                                info.setting or "?", rounds, info.config_hash or "", read_truth(info.path)))
    if not loaded and not skipped:
        raise BalpmError(f"no runs found in {', '.join(map(str, paths))}; run balpm run or balpm sweep first")
    return sorted(loaded, key=lambda r: (r.setting, r.label, r.seed)), skipped


_num = stats.finite_or_none


def _display_curves(group: Sequence[LoadedRun], smooth: int) -> dict[str, Any]:
    """Mean +/- SEM per round of each curve metric after a ``smooth``-round trailing average (display only)."""
    out: dict[str, Any] = {}
    n = min(len(r.rounds) for r in group)
    for col in stats.QUALITY_METRICS:
        if not all(col in r.rounds.columns for r in group):
            continue
        y = np.stack([r.rounds[col].to_numpy(dtype=np.float64)[:n] for r in group])
        if smooth > 1:
            y = np.stack([np.asarray(metrics.smooth(row, smooth), dtype=np.float64) for row in y])
        mean, sem = metrics.mean_sem(y)
        out[col] = {"mean": [_num(v) for v in np.atleast_1d(mean)],
                    "sem": [_num(v) if len(group) > 1 else 0.0 for v in np.atleast_1d(sem)]}
    return out


def summarize(loaded: Sequence[LoadedRun], *, baseline: str = "random", smooth: int = 3, n_boot: int = stats.N_BOOT,
              seed: int = stats.SEED, skipped: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """The whole report as one JSON-ready dict: :func:`balpm.evidence.stats.evidence` plus display curves.

    Adds ``smooth`` (display only), ``runs``, ``skipped``, ``chance`` (metric -> chance level) and, per
    policy entry, ``curves`` (metric -> smoothed mean / SEM per round); ``ceiling[setting]`` gets the
    ``full`` runs' ``x_range`` of the compared curves to draw its line over.
    """
    ev = stats.evidence(loaded, baseline=baseline, n_boot=n_boot, seed=seed)
    by_id = {r.run_id: r for r in loaded}
    out: dict[str, Any] = {**ev, "smooth": smooth, "runs": len(loaded) - len(ev["duplicates"]),
                           "skipped": list(skipped) + [{"run_id": d["run_id"], "state": "duplicate",
                                                        "reason": f"same label and seed as {d['same_as']} (counted once)"}
                                                       for d in ev["duplicates"]],
                           "chance": {m: stats.chance_level(m) for m in stats.QUALITY_METRICS}}
    for entry in out["policies"]:
        entry["curves"] = _display_curves([by_id[r] for r in entry["run_ids"]], smooth)
    return out


# ---- presentation -------------------------------------------------------------------------------
def _pm(d: dict[str, Any] | None, digits: int = 4) -> str:
    if not d or d.get("mean") is None:
        return "-"
    return f"{d['mean']:.{digits}f} ± {d['sem']:.{digits}f}" if d.get("sem") is not None else f"{d['mean']:.{digits}f}"


def _digits(metric: str) -> int:
    return 3 if metric.endswith("accuracy") else 4


def format_text(summary: dict[str, Any], metrics: Sequence[str] | None = None) -> str:
    """The plain-text report (what ``balpm report`` prints): per setting, one table per quality metric
    (``metrics``: only these, in this order; default every quality metric the runs have)."""
    if metrics:
        bad = [m for m in metrics if m not in stats.QUALITY_METRICS]
        if bad:
            raise BalpmError(f"unknown metric {bad[0]!r}; choose from {', '.join(stats.QUALITY_METRICS)}")
    lines = [(f"baseline: {summary['baseline']}   runs: {summary['runs']}   verdicts: {summary['level']:.0%} Student-t "
              "interval of the per-seed differences (paired by seed), AULC of the unsmoothed curve is the headline")]
    mult = summary.get("multiplicity")
    if mult:
        lines.append(f"multiplicity: {mult['statement']}")
    for setting in summary["settings"]:
        entries = [e for e in summary["policies"] if e["setting"] == setting]
        ceiling = summary["ceiling"].get(setting)
        if not entries:
            if ceiling:  # only ceiling runs in this setting: their values, nothing to compare
                lines += ["", f"setting {setting}: only ceiling runs ({ceiling['n_seeds']})"]
                lines += [f"  {stats.METRIC_NAMES.get(m, m)}: ceiling {_pm(c, _digits(m))}"
                          for m, c in ceiling["metrics"].items() if (not metrics or m in metrics)]
            continue
        x = entries[0]["labelled"]
        span = f"labelled {int(x[0]):,} -> {int(x[-1]):,} ({len(x)} rounds)" if x else ""
        lines.append("")
        lines.append(f"setting {setting}: {span}")
        aa = summary["aa_check"].get(setting) or {}
        lines.append("  " + stats.aa_line(aa, summary["baseline"]))
        mets = [m for m in (metrics or stats.QUALITY_METRICS) if m in entries[0]["final"]]
        for m in mets:
            lines.extend(_metric_table(m, entries, ceiling, (summary.get("headroom") or {}).get(setting, {}).get(m)))
    if summary["skipped"]:
        dup = [s for s in summary["skipped"] if s["state"] == "duplicate"]
        var = [s for s in summary["skipped"] if s["state"] == "variant"]
        other = [s for s in summary["skipped"] if s["state"] not in ("duplicate", "variant")]
        if var:
            lines.append(f"left out {len(var)} ablation variant run(s); add --variants to compare them")
        if other:
            lines.append(f"skipped {len(other)} run(s) not complete: "
                         + ", ".join(f"{s['run_id']} ({s['state']})" for s in other[:8]))
        if dup:
            lines.append(f"counted once: {len(dup)} duplicate run(s) of the same config: "
                         + ", ".join(f"{s['run_id']} ({s['reason']})" for s in dup[:8]))
    lines.append("")
    lines.append("diff = policy minus baseline, mean over seeds [95% CI]; verdict from the AULC interval "
                 "(better / worse when it excludes 0 on that side), Holm: the same under Holm's step-down over every "
                 "AULC comparison of the report (adjusted p < 0.05). fewer labels: secondary, only behind 'better'; "
                 "exact (interpolated) / paper (round-based), on 3-round averages, [95% bootstrap CI over seeds].")
    lines.append("power: each comparison can detect an AULC difference of at least MDE = (t_(1-a/2,df) + t_(0.8,df)) x SE "
                 "(80% power, two-sided paired t at a = 0.05); a 'no detectable difference' means no effect larger "
                 "than its MDE. Share of headroom: MDE / (ceiling - baseline's AULC), the ceiling from truth.json "
                 "(Bayes-optimal) when the runs have it, else the full runs.")
    return "\n".join(lines)


def _metric_table(m: str, entries: list[dict[str, Any]], ceiling: dict[str, Any] | None,
                  headroom: dict[str, Any] | None = None) -> list[str]:
    dg = _digits(m)
    d = stats.metric_direction(m)
    base = next((e for e in entries if e["is_baseline"]), None)
    bname = base["label"] if base else "baseline"
    out = ["", f"  {stats.METRIC_NAMES.get(m, m)} ({'higher' if d > 0 else 'lower'} is better)"]
    head = (f"  {'policy':<26} {'seeds':>5}  {'final mean ± SEM':>17}  {'AULC diff vs ' + bname + ' [95% CI]':>34}  "
            f"{'final diff [95% CI]':>34}  {'verdict':<24}  {'Holm':<24}  MDE (80% power)")
    out.append(head)
    out.append("  " + "-" * (len(head) - 2 + 10))
    notes = []
    for e in entries:
        vs = (e.get("vs_baseline") or {}).get(m)
        holm_txt, mde_txt = "", ""
        if e["is_baseline"]:
            a_txt, f_txt, verdict = "(baseline)", "", ""
        elif vs is None:
            a_txt, f_txt, verdict = "-", "-", "-"
        elif vs.get("error"):
            a_txt, f_txt, verdict = "-", "-", vs["error"]
        else:
            n = vs.get("n")
            a_txt = (f"{stats.fmt_value(vs['aulc_diff']['mean'], dg, True)} "
                     f"{stats.fmt_interval(vs['aulc_diff']['ci'], dg, n)}")
            f_txt = (f"{stats.fmt_value(vs['final_diff']['mean'], dg, True)} "
                     f"{stats.fmt_interval(vs['final_diff']['ci'], dg, n)}")
            verdict = vs["verdict"] + ("" if vs["paired"] else " (unpaired, Welch)")
            holm_txt = vs.get("holm_verdict") or "-"
            mde_txt = stats.fmt_mde(vs, dg)
            if vs.get("fewer_labels"):
                fl = vs["fewer_labels"]
                notes.append(f"    {e['label']}: fewer labels than {bname} to reach its final value (secondary): "
                             f"exact {stats.fmt_saving(fl, 'exact')}, paper {stats.fmt_saving(fl, 'paper')}")
        out.append(f"  {e['label']:<26} {e['n_seeds']:>5}  {_pm(e['final'].get(m), dg):>17}  {a_txt:>34}  {f_txt:>34}  "
                   f"{verdict:<24}  {holm_txt:<24}  {mde_txt}".rstrip())
    out.extend(notes)
    c = (ceiling or {}).get("metrics", {}).get(m) if ceiling else None
    if c:
        lab = ceiling.get("labelled")
        out.append(f"  ceiling (full: whole pool{'' if lab is None else f', {int(lab):,} labels'}, {ceiling['n_seeds']} "
                   f"seed{'s' * (ceiling['n_seeds'] != 1)}): {_pm(c, dg)}; headroom over round 0 "
                   f"({stats.fmt_value(c['initial'], dg)}): {stats.fmt_value(c['headroom'], dg, True)}; "
                   f"A/A noise {stats.fmt_value(c['noise'], dg) if c['noise'] is not None else '- (needs >= 6 baseline seeds)'}")
        if c.get("warning"):
            out.append(f"  WARNING: {c['warning']}")
    if headroom and headroom.get("headroom") is not None:
        src = "truth.json, Bayes-optimal" if headroom["source"] == "truth" else "full runs"
        out.append(f"  headroom for the shares: ceiling {stats.fmt_value(headroom['ceiling'], dg)} ({src}) minus "
                   f"{bname}'s AULC {stats.fmt_value(headroom['baseline_aulc'], dg)} = "
                   f"{stats.fmt_value(headroom['headroom'], dg, True)}")
    return out


def to_json(summary: dict[str, Any]) -> str:
    """One JSON object (NaN as null)."""
    return json.dumps(summary, allow_nan=False)


def learning_curves_figure(summary: dict[str, Any]) -> Any:
    """Plotly figure: test/OOD log-likelihood and accuracy vs labelled size, mean +/- SEM bands, chance and
    (when ``full`` runs exist) ceiling lines."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots


    titles = ("Test log-likelihood", "OOD log-likelihood", "Test accuracy", "OOD accuracy")
    fig = make_subplots(rows=2, cols=2, subplot_titles=titles, horizontal_spacing=0.08, vertical_spacing=0.12)
    multi = len(summary["settings"]) > 1
    for i, e in enumerate(summary["policies"]):
        name = e["label"] + (f" [{e['setting']}]" if multi else "") + f" (n={e['n_seeds']})"
        color = label_color(e["label"])  # one colour table with the dashboard (balpm.evidence.colors: the registry's)
        if multi:  # the same label in another setting: the same hue, a shade darker per setting
            color = darker(color, 0.2 * (list(summary["settings"]).index(e["setting"]) % 4))
        x = e["labelled"]
        for j, col in enumerate(CURVES):
            if col not in e["curves"]:
                continue
            mean = np.array([np.nan if v is None else v for v in e["curves"][col]["mean"]], dtype=float)
            if np.isnan(mean).all():
                continue
            sem = np.array([0.0 if v is None else v for v in e["curves"][col]["sem"]], dtype=float)
            r, c = j // 2 + 1, j % 2 + 1
            fig.add_trace(go.Scatter(x=list(x) + list(x)[::-1], y=list(mean + sem) + list(mean - sem)[::-1],
                                     fill="toself", fillcolor=color, opacity=0.2, line={"width": 0},
                                     hoverinfo="skip", showlegend=False, legendgroup=name), row=r, col=c)
            fig.add_trace(go.Scatter(x=x, y=mean, mode="lines+markers", name=name, legendgroup=name,
                                     line={"color": color}, marker={"size": 4}, showlegend=(j == 0)), row=r, col=c)
    for j, col in enumerate(CURVES):
        r, c = j // 2 + 1, j % 2 + 1
        fig.update_xaxes(title_text="labelled comparisons", row=r, col=c)
        chance = summary.get("chance", {}).get(col)
        if chance is not None:
            fig.add_hline(y=chance, line={"color": "#9ca3af", "dash": "dot", "width": 1}, row=r, col=c,
                          annotation_text="chance", annotation_position="bottom right")
        for setting, ceil in (summary.get("ceiling") or {}).items():
            cm = (ceil or {}).get("metrics", {}).get(col)
            if cm and cm.get("mean") is not None:
                fig.add_hline(y=cm["mean"], line={"color": "#111827", "dash": "dash", "width": 1.5}, row=r, col=c,
                              annotation_text=f"ceiling (full pool, n={ceil['n_seeds']})" + (f" [{setting}]" if multi else ""),
                              annotation_position="top left")
    smooth = summary.get("smooth", 1)
    fig.update_layout(title="Learning curves (mean ± SEM over seeds"
                            + (f", {smooth}-round trailing average for display" if smooth > 1 else "") + ")",
                      template="plotly_white", height=800, legend={"orientation": "h", "y": -0.08})
    return fig


def write_html(summary: dict[str, Any], path: str | Path) -> Path:
    """Write the learning curves as one standalone HTML file (plotly.js embedded; works offline)."""
    path = Path(path)
    html = learning_curves_figure(summary).to_html(full_html=True, include_plotlyjs=True)
    runs.atomic_write_text(path, html)
    return path


def report(paths: Iterable[str | Path], *, baseline: str = "random", smooth: int = 3, n_boot: int = stats.N_BOOT,
           seed: int = stats.SEED, variants: bool = True) -> dict[str, Any]:
    """Collect runs from run folders / runs roots and summarise them (``variants``: see :func:`collect`)."""
    paths = list(paths)
    if smooth < 1:
        raise BalpmError(f"--smooth must be >= 1 (got {smooth})")
    if n_boot < 1:
        raise BalpmError(f"--n-boot must be >= 1 (got {n_boot})")
    loaded, skipped = collect(paths, variants=variants)
    if not loaded:
        raise BalpmError(f"no complete runs in {', '.join(map(str, paths))} ({len(skipped)} incomplete); "
                         "finish them with balpm run --resume")
    return summarize(loaded, baseline=baseline, smooth=smooth, n_boot=n_boot, seed=seed, skipped=skipped)
