"""Plotly figure builders for the dashboard: pure functions of DataFrames (no Streamlit).

Maps use WebGL (``go.Scattergl``) and numpy arrays, which plotly serialises as typed binary arrays:
a 92k-point map is a few MB and redraws smoothly. Every point of a map carries its ``pool_index`` as
``customdata`` so a selection (click, box, lasso) names pool items.

Plotly renders a subset of HTML in every string it draws, so every string that may come from a runs
folder or the data (titles, which name runs; trace names and hover texts, which carry policy labels
and prompt ids; subplot titles, which name metric columns) passes through
:func:`balpm_dashboard.untrusted.plot` here: callers hand over plain text.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from balpm_dashboard.frames import METRICS, SCORE_LABELS
from balpm_dashboard.untrusted import plot as inert
from balpm_dashboard.untrusted import plots as inert_all

# one colour table for every page and the HTML report: balpm.evidence.colors (a policy's colour is its registry entry's)
from balpm.evidence.colors import ABLATION_COLORS, BASE_COLORS, EXTRA_COLORS, label_color  # noqa: E402,F401
from balpm.evidence.colors import darker as _darker  # noqa: E402,F401

ROUND_SCALE = "Viridis"
SCORE_SCALE = "Inferno"
FONT = dict(family="Inter, Helvetica, Arial, sans-serif", size=13)
MAP_HEIGHT = 520


def policy_colors(labels: Sequence[str]) -> dict[str, str]:
    """Label -> colour by :func:`label_color`: each label's colour depends on the label only, never on which
    other labels are present or their order (BAL-PM is red in every runs folder)."""
    return {label: label_color(label) for label in labels}


def _layout(fig: go.Figure, *, title: str | None = None, height: int = 420, legend: bool = True) -> go.Figure:
    """Shared look: white template, title on top, the legend in one row under it (never over the plot)."""
    top = (34 if title else 8) + (30 if legend else 0) + 24
    fig.update_layout(
        template="plotly_white", font=FONT, height=height, margin=dict(l=55, r=20, t=top, b=50),
        title=dict(text=inert(title), x=0.0, xanchor="left", xref="container", y=1.0, yref="container", yanchor="top",
                   pad=dict(t=10, l=8), font=dict(size=15)) if title else None,
        showlegend=legend,
        legend=dict(orientation="h", yref="container", y=1.0 - (34 if title else 6) / height, yanchor="top",
                    xref="container", x=0.0, xanchor="left", font=dict(size=12)),
    )
    return fig


def empty_figure(message: str, height: int = 300) -> go.Figure:
    """A blank figure with a centred message (for a panel with nothing to show yet)."""
    fig = go.Figure()
    fig.add_annotation(text=message, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False, font=dict(size=14))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, height=height, legend=False)


def _map_axes(fig: go.Figure, ranges: tuple[list[float], list[float]] | None, method: str) -> None:
    name = {"umap": "UMAP", "pca": "PC", "raw": "feature"}.get(method, inert(method))
    fig.update_xaxes(title=f"{name} 1", showgrid=False, zeroline=False, range=ranges[0] if ranges else None)
    fig.update_yaxes(title=f"{name} 2", showgrid=False, zeroline=False, range=ranges[1] if ranges else None,
                     scaleanchor="x" if method == "raw" else None)
    if method == "raw":  # equal aspect by shrinking the plot area, never by widening the shared ranges
        fig.update_xaxes(constrain="domain")
        fig.update_yaxes(constrain="domain")


def _hover(prompt_ids: np.ndarray, extra: str = "") -> dict:
    return dict(text=inert_all(prompt_ids), hovertemplate="pool %{customdata}<br>prompt %{text}" + extra + "<extra></extra>")


def prompt_map(frame: pd.DataFrame, *, title: str = "", method: str = "umap",
               ranges: tuple[list[float], list[float]] | None = None, max_round: int | None = None,
               point_size: float = 4.0, colorbar: bool = True, legend: bool = True,
               highlight: Sequence[int] | None = None, height: int = MAP_HEIGHT) -> go.Figure:
    """Pool items on the 2-D map: unlabelled in light grey, the initial set in dark grey, acquired
    items coloured by the round that acquired them; ``highlight`` pool indices ringed in red.
    ``frame`` is :func:`dashboard.frames.map_frame`."""
    fig = go.Figure()
    rnd = frame["round"].to_numpy(float)
    un = np.isnan(rnd)
    init = rnd == -1
    acq = np.isfinite(rnd) & (rnd >= 0)
    x, y = frame["x"].to_numpy(np.float32), frame["y"].to_numpy(np.float32)
    pid = frame["prompt_id"].astype(str).to_numpy()
    pix = frame["pool_index"].to_numpy(np.int32)
    # the big pool trace carries no per-point text (92k strings would dominate the message): pool index only
    fig.add_trace(go.Scattergl(x=x[un], y=y[un], mode="markers", name="pool", customdata=pix[un],
                               marker=dict(size=point_size, color="#c9ccd1", opacity=0.55),
                               hovertemplate="pool %{customdata}<extra></extra>"))
    fig.add_trace(go.Scattergl(x=x[init], y=y[init], mode="markers", name="initial", customdata=pix[init],
                               marker=dict(size=point_size + 2, color="#4b5563", symbol="diamond", opacity=0.9),
                               **_hover(pid[init])))
    order = np.argsort(rnd[acq], kind="stable")
    # the colour bar ends at the last round that acquired (the final round of a run never acquires)
    cmax = max_round if max_round is not None else (float(np.nanmax(rnd[acq])) if acq.any() else 1.0)
    fig.add_trace(go.Scattergl(
        x=x[acq][order], y=y[acq][order], mode="markers", name="acquired (colour: round)", customdata=pix[acq][order],
        marker=dict(size=point_size + 3, color=rnd[acq][order], colorscale=ROUND_SCALE, cmin=0, cmax=max(cmax, 1),
                    showscale=colorbar,
                    line=dict(width=0.5, color="white"),
                    colorbar=dict(title=dict(text="acquired in round", side="top"), orientation="h", thickness=10,
                                  len=0.6, x=0.5, xanchor="center", y=-0.18, yanchor="top",
                                  dtick=1 if max(cmax, 1) <= 12 else None)),
        **_hover(pid[acq][order], "<br>round %{marker.color}")))
    if highlight is not None and len(highlight):
        hi = np.isin(pix, np.asarray(list(highlight), dtype=np.int64))
        fig.add_trace(go.Scattergl(x=x[hi], y=y[hi], mode="markers", name="selected", customdata=pix[hi],
                                   marker=dict(size=16, color="#dc2626", symbol="circle-open", line=dict(width=2.5)),
                                   **_hover(pid[hi], "<br>selected")))
    _map_axes(fig, ranges, method)
    fig.update_layout(dragmode="zoom")
    _layout(fig, title=title, height=height, legend=legend)
    if colorbar and acq.any():
        fig.update_layout(margin=dict(b=120))
    return fig


def _color_range(values: np.ndarray) -> dict:
    """Explicit cmin/cmax over the finite values (NaN-safe colour bars)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if not v.size:
        return {}
    lo, hi = float(v.min()), float(v.max())
    return {"cmin": lo, "cmax": hi if hi > lo else lo + 1e-12}


def num_format(values: np.ndarray) -> str:
    """A d3 number format for hovers and colour bars: scientific (``3.1e-4``) when the finite values
    are all tiny (max |v| < 1e-3, e.g. U at small uncertainty), fixed point otherwise."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size and 0 < float(np.abs(v).max()) < 1e-3:
        return ".2e"
    return ".4f"


def replay_map(coords: pd.DataFrame, replay: pd.DataFrame, *, color_by: str = "final", title: str = "",
               method: str = "umap", ranges: tuple[list[float], list[float]] | None = None,
               labelled: pd.DataFrame | None = None, point_size: float = 4.0) -> go.Figure:
    """One greedy step on the map: candidates coloured by ``color_by`` (final / u / beta_h) at this
    step, picks of earlier steps as black crosses, the items whose count this pick raises ringed in
    cyan, and the current pick in a large red ring. ``replay`` is ``frames.replay_step(...).frame``
    and ``coords`` the matching :func:`dashboard.frames.pool_coords` (joined on pool_index)."""
    xy = coords.set_index("pool_index")[["x", "y"]]
    r = replay.join(xy, on="pool_index")
    fig = go.Figure()
    if labelled is not None and len(labelled):
        lab = labelled.join(xy, on="pool_index", how="inner") if "x" not in labelled.columns else labelled
        fig.add_trace(go.Scattergl(x=lab["x"].to_numpy(np.float32), y=lab["y"].to_numpy(np.float32), mode="markers",
                                   name="labelled before this round", customdata=lab["pool_index"].to_numpy(np.int32),
                                   marker=dict(size=point_size + 2, color="#6b7280", symbol="circle-open",
                                               line=dict(width=1)), hoverinfo="skip"))
    cand = r[r["status"] == "candidate"]
    vals = cand[color_by].to_numpy(np.float64)
    finite = np.isfinite(vals)
    order = np.argsort(np.where(finite, vals, -np.inf), kind="stable")  # highest drawn last, on top
    c = cand.iloc[order]
    cv = vals[order]
    fig.add_trace(go.Scattergl(
        x=c["x"].to_numpy(np.float32), y=c["y"].to_numpy(np.float32), mode="markers", name="candidates",
        customdata=c["pool_index"].to_numpy(np.int32),
        marker=dict(size=point_size, color=np.where(np.isfinite(cv), cv, np.nan).astype(np.float32),
                    colorscale=SCORE_SCALE, showscale=True, **_color_range(cv),
                    colorbar=dict(title=dict(text=SCORE_LABELS.get(color_by, color_by)), thickness=12, len=0.8,
                                  tickformat=num_format(cv))),
        hovertemplate="pool %{customdata}<br>" + color_by + " %{marker.color:" + num_format(cv) + "}<extra></extra>"))
    raised = r[r["raised"] & (r["status"] == "candidate")]
    fig.add_trace(go.Scattergl(x=raised["x"].to_numpy(np.float32), y=raised["y"].to_numpy(np.float32), mode="markers",
                               name="count raised (pick inside their kNN radius)", customdata=raised["pool_index"].to_numpy(np.int32),
                               marker=dict(size=point_size + 7, color="#0891b2", symbol="circle-open",
                                           line=dict(width=1.5)), hoverinfo="skip"))
    picked = r[r["status"] == "picked"]
    fig.add_trace(go.Scattergl(x=picked["x"].to_numpy(np.float32), y=picked["y"].to_numpy(np.float32), mode="markers",
                               name="picked earlier in this batch", customdata=picked["pool_index"].to_numpy(np.int32),
                               marker=dict(size=point_size + 4, color="#111827", symbol="x"),
                               text=inert_all(picked["prompt_id"]),
                               hovertemplate="picked: pool %{customdata}<br>prompt %{text}<extra></extra>"))
    cur = r[r["status"] == "current"]
    fig.add_trace(go.Scattergl(x=cur["x"].to_numpy(np.float32), y=cur["y"].to_numpy(np.float32), mode="markers",
                               name="current pick", customdata=cur["pool_index"].to_numpy(np.int32),
                               marker=dict(size=24, color="#dc2626", symbol="circle-open", line=dict(width=3.5)),
                               text=inert_all(cur["prompt_id"]),
                               hovertemplate="current pick: pool %{customdata}<br>prompt %{text}<extra></extra>"))
    _map_axes(fig, ranges, method)
    fig.update_layout(dragmode="zoom", uirevision="replay")
    return _layout(fig, title=title, height=MAP_HEIGHT)


ANATOMY_PARTS = (("u", "U (uncertainty)", "#2563eb"), ("dist", "β · log(2r + floor)  (distance term)", "#f59e0b"),
                 ("count", "β · (−ψ(n+1)/d)  (count term)", "#a855f7"))


def anatomy_bars(anat: pd.DataFrame, *, title: str = "") -> go.Figure:
    """Two panels per pick. Top: stacked bars of U, beta*distance term and beta*count term (signed),
    the final score as a black tick. Bottom: the same parts as shares of ``|U| + |dist| + |count|``
    (100% stacked), so a tiny U stays visible as a share. Hovers use scientific notation for tiny
    values. ``anat`` is :func:`dashboard.frames.anatomy_frame`."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.62, 0.38], vertical_spacing=0.08,
                        subplot_titles=["score contributions (nats)", "share of |U| + |β·dist| + |β·count|"])
    x = anat["pick"].to_numpy()
    for col, name, color in ANATOMY_PARTS:
        y = anat[col].to_numpy(float)
        share = anat[f"{col}_share"].to_numpy(float) if f"{col}_share" in anat.columns else np.full(len(anat), np.nan)
        fig.add_trace(go.Bar(x=x, y=y, name=name, marker_color=color, legendgroup=col, customdata=share,
                             hovertemplate=f"pick %{{x}}<br>{name}<br>%{{y:{num_format(y)}}}"
                                           "<br>share %{customdata:.2%}<extra></extra>"), row=1, col=1)
        fig.add_trace(go.Bar(x=x, y=share, name=name, marker_color=color, legendgroup=col, showlegend=False,
                             customdata=y, hovertemplate=f"pick %{{x}}<br>{name}<br>share %{{y:.2%}}"
                                                         f"<br>value %{{customdata:{num_format(y)}}}<extra></extra>"),
                      row=2, col=1)
    score = anat["score"].to_numpy(float)
    fig.add_trace(go.Scatter(x=x, y=score, name="final score", mode="markers",
                             marker=dict(symbol="line-ew-open", size=10, color="#111827", line=dict(width=2)),
                             hovertemplate=f"pick %{{x}}<br>score %{{y:{num_format(score)}}}<extra></extra>"),
                  row=1, col=1)
    fig.update_layout(barmode="relative", bargap=0.05)
    fig.update_xaxes(title="pick (greedy order)", row=2, col=1)
    fig.update_yaxes(title="nats", zeroline=True, zerolinecolor="#6b7280", row=1, col=1)
    fig.update_yaxes(title="share", tickformat=".0%", range=[0, 1], row=2, col=1)
    return _layout(fig, title=title, height=560)


def ratio_figure(ratios: dict[str, pd.DataFrame], colors: dict[str, str] | None = None, *, title: str = "",
                 ytitle: str = "U / score", share: bool = False) -> go.Figure:
    """Uncertainty-score ratio U/score per round: median (solid) and max (dashed) per policy. ``share``: the
    values are shares in [0, 1] (U's share of the score, :func:`dashboard.frames.u_share_by_round`): a fixed
    0-100% axis, nothing clipped."""
    colors = colors or policy_colors(list(ratios))
    fig = go.Figure()
    for label, df in ratios.items():
        if not len(df):
            continue
        fig.add_trace(go.Scatter(x=df["round"], y=df["median"], name=f"{inert(label)} median", mode="lines+markers",
                                 line=dict(color=colors[label])))
        fig.add_trace(go.Scatter(x=df["round"], y=df["max"], name=f"{inert(label)} max", mode="lines",
                                 line=dict(color=colors[label], dash="dash")))
    fig.update_xaxes(title="round")
    values = np.concatenate([np.r_[df["median"].to_numpy(float), df["max"].to_numpy(float)] for df in ratios.values()
                             if len(df)] or [np.zeros(1)])
    values = values[np.isfinite(values)]
    if share:
        fig.update_yaxes(range=[0, 1.05], tickformat=".0%", title=ytitle)
        return _layout(fig, title=title, height=340)
    if values.size:
        lo, hi = float(min(values.min(), 0.0)), float(values.max())
        cap = max(RATIO_CAP, 1.2 * float(np.max([df["median"].max() for df in ratios.values() if len(df)] or [0.0])))
        clipped = hi > cap or lo < -cap
        fig.update_yaxes(range=[max(lo, -cap) - 0.05 * cap, min(hi, cap) + 0.05 * cap])
        if clipped:
            fig.add_annotation(text=f"axis clipped at ±{cap:g}: the ratio explodes where a pick's score nears 0",
                               xref="paper", yref="paper", x=1, y=1, xanchor="right", yanchor="bottom",
                               showarrow=False, font=dict(size=11, color="#6b7280"))
    fig.update_yaxes(title=ytitle)
    return _layout(fig, title=title, height=340)


RATIO_CAP = 5.0


REDUNDANCY_PANELS = (
    ("unique_prompts", "unique prompts per batch"),
    ("cumulative_unique_prompts", "cumulative unique prompts"),
    ("comparisons_per_prompt", "comparisons per prompt (batch)"),
    ("mean_pairwise_distance", "mean pairwise distance (batch)"),
)


def redundancy_figure(frames: dict[str, pd.DataFrame], colors: dict[str, str] | None = None) -> go.Figure:
    """Four panels of batch redundancy per policy (mean over the given seeds' frames, each frame
    has a ``seed`` column): unique prompts, cumulative unique, comparisons per prompt, pairwise distance."""
    colors = colors or policy_colors(list(frames))
    fig = make_subplots(rows=2, cols=2, subplot_titles=[t for _, t in REDUNDANCY_PANELS],
                        horizontal_spacing=0.1, vertical_spacing=0.22)
    for i, (col, _) in enumerate(REDUNDANCY_PANELS):
        row, cc = divmod(i, 2)
        for label, df in frames.items():
            if not len(df) or col not in df.columns or not df[col].notna().any():
                continue
            g = df.groupby("round")[col]
            mean = g.mean()
            fig.add_trace(go.Scatter(x=mean.index, y=mean.to_numpy(float), name=inert(label), legendgroup=label,
                                     showlegend=i == 0, mode="lines+markers", line=dict(color=colors[label])),
                          row=row + 1, col=cc + 1)
        fig.update_xaxes(title="round", row=row + 1, col=cc + 1)
    return _layout(fig, height=620)


def learning_curves_figure(stats: dict[str, pd.DataFrame], colors: dict[str, str] | None = None,
                           brackets: dict[str, dict] | None = None, *, title: str = "",
                           chance: dict[str, float | None] | None = None,
                           ceilings: dict[str, dict] | None = None) -> go.Figure:
    """Panels of metric vs labelled-set size, mean line and +/- SEM band per label.

    ``stats``: metric -> :func:`dashboard.frames.curve_stats` frame. ``brackets``: metric -> dict with
    ``target`` (baseline's final value), ``x_policy`` (first size where the policy reaches it),
    ``x_baseline`` (baseline's final size) and ``text``: drawn as the paper's "fewer labels" bracket.
    ``chance``: metric -> chance level (grey dotted line); ``ceilings``: metric -> ``{y, text}`` of
    :func:`dashboard.frames.ceiling_lines` (black dashed line: what training on the whole pool reaches).
    """
    metrics = [m for m in stats if len(stats[m])]
    if not metrics:
        return empty_figure("no complete rounds yet")
    labels = list(dict.fromkeys(l for m in metrics for l in stats[m]["label"]))
    colors = colors or policy_colors(labels)
    cols = 2 if len(metrics) > 1 else 1
    rows = (len(metrics) + cols - 1) // cols
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[inert(METRICS.get(m, m)) for m in metrics],
                        horizontal_spacing=0.09, vertical_spacing=0.14)
    for i, m in enumerate(metrics):
        r, c = divmod(i, cols)
        for label in labels:
            d = stats[m][stats[m]["label"] == label]
            if not len(d):
                continue
            x = d["labelled"].to_numpy(float)
            lo = (d["mean"] - d["sem"]).to_numpy(float)
            hi = (d["mean"] + d["sem"]).to_numpy(float)
            color = colors[label]
            fig.add_trace(go.Scatter(x=np.concatenate([x, x[::-1]]), y=np.concatenate([hi, lo[::-1]]), fill="toself", mode="lines",
                                     fillcolor=_alpha(color, 0.18), line=dict(width=0), hoverinfo="skip",
                                     showlegend=False, legendgroup=label), row=r + 1, col=c + 1)
            seeds = int(d["seeds"].max())
            fig.add_trace(go.Scatter(x=x, y=d["mean"].to_numpy(float), mode="lines+markers", marker=dict(size=4),
                                     line=dict(color=color, width=2),
                                     name=f"{inert(label)} ({seeds} seed{'s' * (seeds != 1)})",
                                     legendgroup=label, showlegend=i == 0,
                                     hovertemplate=f"{inert(label)}<br>labels %{{x}}<br>%{{y:.4f}}<extra></extra>"),
                          row=r + 1, col=c + 1)
        b = (brackets or {}).get(m)
        if b and np.isfinite(b.get("target", np.nan)):
            _bracket(fig, b, r + 1, c + 1)
        ch = (chance or {}).get(m)
        if ch is not None:
            fig.add_hline(y=float(ch), line=dict(color="#9ca3af", dash="dot", width=1.5), row=r + 1, col=c + 1,
                          annotation=dict(text="chance", font=dict(size=11, color="#6b7280")),
                          annotation_position="bottom right")
        ce = (ceilings or {}).get(m)
        if ce is not None and ce.get("y") is not None:
            fig.add_hline(y=float(ce["y"]), line=dict(color="#111827", dash="dash", width=1.5), row=r + 1, col=c + 1,
                          annotation=dict(text=inert(ce.get("text", "ceiling")), font=dict(size=11, color="#111827")),
                          annotation_position="top left")
        fig.update_xaxes(title="labelled comparisons", row=r + 1, col=c + 1)
    return _layout(fig, title=title, height=380 * rows + 40)


def _bracket(fig: go.Figure, b: dict, row: int, col: int) -> None:
    y = float(b["target"])
    x0, x1 = b.get("x_policy"), b.get("x_baseline")
    fig.add_hline(y=y, line=dict(color="#6b7280", dash="dot", width=1), row=row, col=col)
    if x0 is None or x1 is None or not np.isfinite(x0) or not np.isfinite(x1):
        return
    fig.add_trace(go.Scatter(x=[x0, x0, x1, x1], y=[y, y, y, y], mode="lines+markers", showlegend=False,
                             line=dict(color="#111827", width=2.5), marker=dict(symbol="line-ns-open", size=14,
                                                                                  line=dict(width=2.5)),
                             hoverinfo="skip"), row=row, col=col)
    fig.add_annotation(x=(x0 + x1) / 2, y=y, text=inert(b.get("text", "")), showarrow=False, yshift=14,
                       font=dict(size=12, color="#111827"), bgcolor="rgba(255,255,255,0.8)", row=row, col=col)


def _alpha(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def diff_figure(summary: pd.DataFrame, *, title: str = "") -> go.Figure:
    """Per round: prompts the variant acquired that the base did not (entered, up) and the reverse (left, down)."""
    if not len(summary):
        return empty_figure("no acquisitions to compare")
    fig = go.Figure()
    fig.add_trace(go.Bar(x=summary["round"], y=summary["entered"], name="entered (variant only)", marker_color="#16a34a"))
    fig.add_trace(go.Bar(x=summary["round"], y=-summary["left"], name="left (base only)", marker_color="#dc2626"))
    fig.add_trace(go.Bar(x=summary["round"], y=summary["shared"], name="shared", marker_color="#9ca3af", opacity=0.5,
                         visible="legendonly"))
    fig.update_layout(barmode="relative")
    fig.update_xaxes(title="round first acquired")
    fig.update_yaxes(title="prompts")
    return _layout(fig, title=title, height=320)
