"""Reports over many runs: per policy final log-likelihoods, AULC, label efficiency vs a baseline.

Runs are grouped by *setting* (everything but the policy and the seed: data, features, model, loop
sizes) and by *label* (the policy plus its non-default knobs: ``balpm beta=0.1`` differs from
``balpm``). Within a setting every label is compared with the baseline label (``random`` by default):

* final test / OOD log-likelihood and accuracy: mean +/- SEM over seeds;
* AULC: area under the (smoothed) mean learning curve, normalised by the labelled range;
* label efficiency: "fewer labels than the baseline to reach the baseline's final log-likelihood",
  exact (interpolated on labelled-set size) and as the paper computes it, each with a bootstrap
  confidence interval over seeds (seeds paired when both policies share them).

All the arithmetic is :mod:`balpm.metrics`; this module only collects runs and arranges numbers.
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from balpm import metrics, runs
from balpm.errors import BalpmError

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


def collect(paths: Iterable[str | Path]) -> tuple[list[LoadedRun], list[dict[str, Any]]]:
    """Complete runs under the given run folders or runs roots, and the skipped ones (with reasons)."""
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
    for info in found.values():
        if info.state != "complete":
            skipped.append({"run_id": info.run_id, "state": info.state, "reason": info.reason or info.error
                            or f"{info.last_round + 1}/{info.rounds} rounds done"})
            continue
        try:
            run = runs.open_run(info.path.parent, info.run_id)
            rounds = run.rounds()
        except Exception as exc:
            skipped.append({"run_id": info.run_id, "state": "broken", "reason": " ".join(str(exc).split())})
            continue
        loaded.append(LoadedRun(info.run_id, info.path, info.label or "?", info.policy or "?", int(info.seed or 0),
                                info.setting or "?", rounds))
    if not loaded and not skipped:
        raise BalpmError(f"no runs found in {', '.join(map(str, paths))}; run balpm run or balpm sweep first")
    return sorted(loaded, key=lambda r: (r.setting, r.label, r.seed)), skipped


def _curves(group: Sequence[LoadedRun], column: str) -> tuple[np.ndarray, np.ndarray]:
    """Common labelled-size axis ``x_R`` and per-seed curves ``y_S_R`` (rounds all seeds completed)."""
    n = min(len(r.rounds) for r in group)
    x = group[0].rounds["labelled"].to_numpy(dtype=np.float64)[:n]
    y = np.stack([r.rounds[column].to_numpy(dtype=np.float64)[:n] for r in group])
    return x, y


def _ms(values: np.ndarray) -> dict[str, float | None]:
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0 or np.isnan(values).all():
        return {"mean": None, "sem": None}
    mean, sem = metrics.mean_sem(values[~np.isnan(values)])
    return {"mean": _num(mean), "sem": _num(sem)}


def _num(v: Any) -> float | None:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _smooth_S(y_S_R: np.ndarray, window: int) -> np.ndarray:
    if window <= 1:
        return y_S_R
    return np.stack([np.asarray(metrics.smooth(y, window), dtype=np.float64) for y in y_S_R])


def _efficiency(x: np.ndarray, base_S_R: np.ndarray, pol_S_R: np.ndarray, *, paper: bool, smooth: int,
                n_boot: int, seed: int) -> dict[str, Any]:
    """Label efficiency of the (smoothed) seed-mean curves, with a bootstrap CI over seeds (paired rows)."""
    eff = metrics.label_efficiency_ci(base_S_R, pol_S_R, x, paper=paper, window=smooth, n_boot=n_boot, seed=seed)
    low = eff.low if np.isfinite(eff.low) else None  # -inf: the target was not reached in many resamples
    return {"value": _num(eff.estimate), "ci": [_num(low), _num(eff.high)],
            "reached_fraction": _num(eff.reached_fraction)}


def summarize(loaded: Sequence[LoadedRun], *, baseline: str = "random", smooth: int = 3, n_boot: int = 1000,
              seed: int = 0, skipped: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """The whole report as one JSON-ready dict (see the module docstring)."""
    settings = sorted({r.setting for r in loaded})
    out: dict[str, Any] = {"baseline": baseline, "smooth": smooth, "n_boot": n_boot, "settings": settings,
                           "runs": len(loaded), "skipped": list(skipped), "policies": []}
    for setting in settings:
        in_setting = [r for r in loaded if r.setting == setting]
        base_label = _baseline_label(in_setting, baseline)
        labels = sorted({r.label for r in in_setting}, key=lambda lab: (lab != base_label, lab))
        base = [r for r in in_setting if r.label == base_label]
        for label in labels:
            group = [r for r in in_setting if r.label == label]
            out["policies"].append(_policy_entry(label, setting, group, base, base_label, smooth, n_boot, seed))
    return out


def _baseline_label(group: Sequence[LoadedRun], baseline: str) -> str:
    """``baseline`` itself when a label matches, else the only label of that policy (e.g. ``random k=5``)."""
    labels = {r.label for r in group}
    if baseline in labels:
        return baseline
    same_policy = sorted({r.label for r in group if r.policy == baseline})
    return same_policy[0] if len(same_policy) == 1 else baseline


def _policy_entry(label: str, setting: str, group: list[LoadedRun], base: list[LoadedRun], baseline: str,
                  smooth: int, n_boot: int, seed: int) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "label": label, "policy": group[0].policy, "setting": setting, "n_seeds": len(group),
        "seeds": [r.seed for r in group], "run_ids": [r.run_id for r in group],
    }
    x, _ = _curves(group, "test_log_likelihood")
    entry["labelled"] = x.tolist()
    entry["final"] = {"labelled": _num(x[-1])}
    entry["curves"], entry["aulc"] = {}, {}
    for col in CURVES:
        _, y = _curves(group, col)
        entry["final"][col] = _ms(y[:, -1])
        ys = _smooth_S(y, smooth)
        mean = np.nanmean(ys, axis=0) if not np.isnan(ys).all() else np.full(ys.shape[1], np.nan)
        sem = (np.nanstd(ys, axis=0, ddof=1) / np.sqrt(len(ys))) if len(ys) > 1 else np.zeros(ys.shape[1])
        entry["curves"][col] = {"mean": [_num(v) for v in mean], "sem": [_num(v) for v in sem]}
        if col.endswith("log_likelihood"):
            aulcs = np.array([metrics.aulc(x, yy) if np.isfinite(yy).all() else np.nan for yy in ys])
            entry["aulc"][col.split("_")[0]] = _ms(aulcs)
    entry["label_efficiency"] = None
    if label != baseline and base:
        entry["label_efficiency"] = {}
        base_seeds = {r.seed: r for r in base}
        common = [r.seed for r in group if r.seed in base_seeds]
        paired = len(common) == len(group) == len(base)
        pol_runs = sorted(group, key=lambda r: r.seed) if paired else group
        base_runs = [base_seeds[r.seed] for r in pol_runs] if paired else base
        n = min(min(len(r.rounds) for r in pol_runs), min(len(r.rounds) for r in base_runs))
        xb = base_runs[0].rounds["labelled"].to_numpy(dtype=np.float64)[:n]
        if not np.array_equal(xb, x[:n]):
            entry["label_efficiency"] = {"error": "labelled sizes differ from the baseline's; use the same loop settings"}
            return entry
        for split in ("test", "ood"):
            col = f"{split}_log_likelihood"
            b = np.stack([r.rounds[col].to_numpy(dtype=np.float64)[:n] for r in base_runs])
            p = np.stack([r.rounds[col].to_numpy(dtype=np.float64)[:n] for r in pol_runs])
            if np.isnan(b).any() or np.isnan(p).any():
                entry["label_efficiency"][split] = None
                continue
            entry["label_efficiency"][split] = {
                "exact": _efficiency(xb, b, p, paper=False, smooth=smooth, n_boot=n_boot, seed=seed),
                "paper": _efficiency(xb, b, p, paper=True, smooth=smooth, n_boot=n_boot, seed=seed),
                "baseline_final": _num(metrics.smooth(b.mean(axis=0), smooth)[-1]), "paired_seeds": paired,
            }
    return entry


# ---- presentation -------------------------------------------------------------------------------
def _pm(d: dict[str, Any] | None, digits: int = 4) -> str:
    if not d or d.get("mean") is None:
        return "-"
    return f"{d['mean']:.{digits}f} ± {d['sem']:.{digits}f}" if d.get("sem") is not None else f"{d['mean']:.{digits}f}"


def _pct(e: dict[str, Any] | None) -> str:
    if not e or e.get("value") is None:
        return "never" if e else "-"
    lo, hi = e.get("ci") or (None, None)
    ci = f" [{'never' if lo is None else f'{lo * 100:.0f}'}, {'never' if hi is None else f'{hi * 100:.0f}'}]"
    return f"{e['value'] * 100:.1f}%{ci}"


def format_text(summary: dict[str, Any]) -> str:
    """A plain-text table of the summary (what ``balpm report`` prints)."""
    lines = []
    multi = len(summary["settings"]) > 1
    lines.append(f"baseline: {summary['baseline']}   smoothing: {summary['smooth']} rounds   runs: {summary['runs']}")
    head = (f"{'policy':<28} {'seeds':>5} {'labels':>6}  {'test LL':>17}  {'OOD LL':>17}  {'test acc':>8}  "
            f"{'AULC test':>9}  {'fewer (test) exact / paper':>32}  {'fewer (OOD) exact / paper':>32}")
    lines.append(head)
    lines.append("-" * len(head))
    for e in summary["policies"]:
        name = e["label"] + (f" [{e['setting']}]" if multi else "")
        le = e.get("label_efficiency") or {}
        cols = []
        for split in ("test", "ood"):
            s = le.get(split) if isinstance(le, dict) else None
            cols.append(f"{_pct(s['exact'])} / {_pct(s['paper'])}" if s else "-")
        acc = e["final"]["test_accuracy"]
        lines.append(
            f"{name:<28} {e['n_seeds']:>5} {int(e['final']['labelled'] or 0):>6}  {_pm(e['final']['test_log_likelihood']):>17}  "
            f"{_pm(e['final']['ood_log_likelihood']):>17}  {(acc['mean'] if acc['mean'] is not None else float('nan')):>8.3f}  "
            f"{(e['aulc'].get('test') or {}).get('mean') or float('nan'):>9.4f}  {cols[0]:>32}  {cols[1]:>32}")
    if summary["skipped"]:
        lines.append(f"skipped {len(summary['skipped'])} run(s) not complete: "
                     + ", ".join(f"{s['run_id']} ({s['state']})" for s in summary["skipped"][:8]))
    lines.append("fewer = labels saved vs the baseline to reach its final test log-likelihood "
                 "(exact: interpolated; paper: the paper's round-based count); [95% bootstrap CI over seeds]")
    return "\n".join(lines)


def to_json(summary: dict[str, Any]) -> str:
    """One JSON object (NaN as null)."""
    return json.dumps(summary, allow_nan=False)


def learning_curves_figure(summary: dict[str, Any]) -> Any:
    """Plotly figure: test/OOD log-likelihood and accuracy vs labelled size, mean +/- SEM bands."""
    import plotly.graph_objects as go
    from plotly.colors import qualitative
    from plotly.subplots import make_subplots

    titles = ("Test log-likelihood", "OOD log-likelihood", "Test accuracy", "OOD accuracy")
    fig = make_subplots(rows=2, cols=2, subplot_titles=titles, horizontal_spacing=0.08, vertical_spacing=0.12)
    multi = len(summary["settings"]) > 1
    palette = qualitative.Plotly
    for i, e in enumerate(summary["policies"]):
        name = e["label"] + (f" [{e['setting']}]" if multi else "") + f" (n={e['n_seeds']})"
        color = palette[i % len(palette)]
        x = e["labelled"]
        for j, col in enumerate(CURVES):
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
    for j in range(4):
        fig.update_xaxes(title_text="labelled comparisons", row=j // 2 + 1, col=j % 2 + 1)
    fig.update_layout(title=f"Learning curves (mean ± SEM over seeds, {summary['smooth']}-round trailing average)",
                      template="plotly_white", height=800, legend={"orientation": "h", "y": -0.08})
    return fig


def write_html(summary: dict[str, Any], path: str | Path) -> Path:
    """Write the learning curves as one standalone HTML file (plotly.js embedded; works offline)."""
    path = Path(path)
    html = learning_curves_figure(summary).to_html(full_html=True, include_plotlyjs=True)
    runs.atomic_write_text(path, html)
    return path


def report(paths: Iterable[str | Path], *, baseline: str = "random", smooth: int = 3, n_boot: int = 1000,
           seed: int = 0) -> dict[str, Any]:
    """Collect runs from run folders / runs roots and summarise them."""
    paths = list(paths)
    if smooth < 1:
        raise BalpmError(f"--smooth must be >= 1 (got {smooth})")
    loaded, skipped = collect(paths)
    if not loaded:
        raise BalpmError(f"no complete runs in {', '.join(map(str, paths))} ({len(skipped)} incomplete); "
                         "finish them with balpm run --resume")
    return summarize(loaded, baseline=baseline, smooth=smooth, n_boot=n_boot, seed=seed, skipped=skipped)
