"""The lesson: the teaching world's story in steps, each one sentence and the chart that proves it.

Every number comes from the runs in the folder (:func:`balpm.evidence.lesson.build`: the same summary as
``balpm report --json``, worded by :mod:`balpm.evidence.story`); change the runs and the words change. "next"
walks the steps; each links to the page that explores it. On real data (no teaching-world runs) the
page says what the runs can and cannot show: the headroom against the A/A noise.
"""
from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st
from balpm_dashboard import frames, plots, state, untrusted

from balpm.evidence import lesson as engine
from balpm.evidence import stats

STEP = "lesson_step"
VERDICT_BOX = {"better": st.success, "worse": st.error}


@st.cache_data(show_spinner="Reading the runs for the lesson...", max_entries=8)
def _lesson(root: str, stamp: tuple) -> engine.Lesson:
    return engine.build(root)


def _verdict(sentence: str, verdict: str | None = None) -> None:
    """A verdict, coloured (better green, worse red, no detectable difference grey/blue), never cut."""
    v = verdict or ("better" if " beat " in sentence else "worse" if " did worse " in sentence else "none")
    VERDICT_BOX.get(v, st.info)(untrusted.md(sentence, limit=4000))


def _bar(df, x: str, y: str, color_col: str, title: str, *, yfmt: str = ".0%", ytitle: str = "") -> go.Figure:
    fig = go.Figure()
    for lab, g in df.groupby(color_col, sort=False):
        fig.add_bar(x=[untrusted.plot(v) for v in g[x]], y=g[y], name=untrusted.plot(lab),
                    marker_color=plots.label_color(str(lab)) if lab not in ("pool",) else "#9ca3af",
                    text=[format(v, yfmt) for v in g[y]], textposition="outside", cliponaxis=False)
    fig.update_layout(title=untrusted.plot(title), barmode="group", height=380, margin=dict(l=50, r=20, t=60, b=40),
                      yaxis=dict(tickformat=yfmt, title=ytitle), legend=dict(orientation="h", y=-0.15),
                      paper_bgcolor="white", plot_bgcolor="white")
    return fig


def _chart(fig: go.Figure, key: str) -> None:
    st.plotly_chart(fig, key=key, config={"displaylogo": False}, theme=None)


root = state.runs_root()
infos = state.run_infos(root)
st.title("The lesson")
if not state.usable(infos):
    st.info("No readable runs yet. Run the teaching world: balpm sweep --policies random,bald,balpm --seeds 0-7 "
            "(and --ablations paper for the ablation step), then reload.")
    st.stop()
try:
    L = _lesson(str(root), tuple(sorted((i.run_id, i.state, i.last_round) for i in infos)))
except Exception as exc:  # noqa: BLE001 - runs still being written: one line, not a traceback
    st.warning(untrusted.md(f"the runs cannot be read as a lesson yet: {exc}"))
    st.stop()

# ---- real data: what these runs can and cannot show ------------------------------------------------
if not L.teaching:
    st.caption("These runs are not on the teaching world, so there is no guided lesson. What they can show:")
    if L.summary is None:
        st.info("Only ablation variants are complete: run the policies too (balpm sweep).")
        st.stop()
    for line in L.verdicts:
        _verdict(line)
    for line in L.headroom:
        st.markdown(untrusted.md(line, limit=4000))
    st.page_link("views/learning_curves.py", label="Learning curves: every metric with its verdict")
    st.page_link("views/runs.py", label="Runs: start the teaching world (no data needed)")
    st.stop()

names = L.label_names()
noisy = L.regions.get(L.noisy_region, "the noisy region") if L.noisy_region is not None else "the noisy region"
labels = list(dict.fromkeys(r.label for r in L.runs if r.variant is None and r.policy != stats.CEILING_POLICY))
by_policy = {r.policy: r.label for r in L.runs if r.variant is None}
seeds = {lab: len({r.seed for r in L.runs if r.label == lab}) for lab in labels}


def _share(policy: str, region: int | None) -> float | None:
    if L.shares is None or policy not in by_policy or region is None:
        return None
    s = L.shares[(L.shares["label"] == by_policy[policy]) & (L.shares["cluster"] == region)]["share"]
    return float(s.iloc[0]) if len(s) else 0.0


def step_world() -> None:
    w = L.world
    if w is None:
        st.markdown("The runs' dataset snapshots have no regions to show.")
        return
    topics = w[w["cluster"] != L.noisy_region]
    nz = w[w["cluster"] == L.noisy_region].iloc[0]
    st.markdown(untrusted.md(
        f"The teaching world: a pool of {w['comparisons'].sum():,.0f} comparisons in {len(w)} regions. "
        f"{noisy} holds {nz['share']:.0%} of the pool and its true preferences are coin flips (mean distance "
        f"from 0.5: {nz['coin_flip_distance']:.3f}); the {len(topics)} topics ({', '.join(topics['region'])}) "
        f"have learnable preferences (mean distance {topics['coin_flip_distance'].mean():.3f}).", limit=4000))
    df = w.assign(label="pool")
    _chart(_bar(df, "region", "share", "label", "share of the pool per region"), "lesson_world")
    st.caption(untrusted.md("regions named from the world's own data: the cluster column of the runs' dataset "
                            "snapshots; the noisy region is the one whose true preferences are nearest 0.5"))
    st.page_link("views/prompt_space.py", label="Prompt space: the map of the prompts, region by region")


def step_bald() -> None:
    b, r = _share("bald", L.noisy_region), _share("random", L.noisy_region)
    pool = float(L.world.loc[L.world["cluster"] == L.noisy_region, "share"].iloc[0]) if L.world is not None else None
    u = L.u_by_region
    why = ""
    if u is not None and len(u):
        un = u[u["cluster"] == L.noisy_region]
        ut = u[u["cluster"] != L.noisy_region]
        if len(un) and len(ut):
            why = (f" Why: at round 0 the ensemble's members disagree most there (mean U {un['u'].mean():.3f} against "
                   f"{ut['u'].mean():.3f} in the topics; spread of the members' probabilities {un['member_spread'].mean():.2f} "
                   f"against {ut['member_spread'].mean():.2f}): coin flips that no number of labels can teach.")
    if b is None:
        st.markdown("No BALD runs in this folder: run balpm sweep --policies random,bald,balpm.")
    else:
        st.markdown(untrusted.md(
            f"BALD put {b:.0%} of its acquired labels in {noisy}"
            + (f" (the pool has {pool:.0%}" if pool is not None else "")
            + (f", random {r:.0%})." if r is not None else ").") + why, limit=4000))
    if L.shares is not None:
        df = L.shares[L.shares["label"].isin([by_policy.get("random"), by_policy.get("bald")])]
        _chart(_bar(df, "region", "share", "label", "share of the acquired labels per region"), "lesson_bald_share")
    if u is not None and len(u):
        _chart(_bar(u.assign(label=u["label"].map(lambda lab: "U at round 0")), "region", "u", "label",
                    "mean uncertainty U per region at round 0 (pool scores)", yfmt=".2g", ytitle="U"), "lesson_bald_u")
    st.page_link("views/batch_anatomy.py", label="Anatomy of a batch: U and H of every pick")


def step_balpm() -> None:
    p = _share("balpm", L.noisy_region)
    lab = by_policy.get("balpm")
    if p is None or lab is None:
        st.markdown("No BAL-PM runs in this folder.")
        return
    text = f"BAL-PM put {p:.0%} of its labels in {noisy} (BALD {_share('bald', L.noisy_region) or 0:.0%}): the entropy term spreads its picks over the prompts"
    if L.prompts is not None:
        per = L.prompts.groupby("label")["batch_unique_prompts"].mean()
        text += " (distinct prompts per batch: " + ", ".join(f"{names.get(k, k)} {v:.1f}" for k, v in per.items()) + ")"
    if lab in L.top_u_share:
        text += (f"; inside a prompt U chooses: {L.top_u_share[lab]:.0%} of its picks were the comparison with the "
                 f"highest U of their prompt (a pick at random inside the prompt: {L.top_u_chance[lab]:.0%})")
    st.markdown(untrusted.md(text + ".", limit=4000))
    if L.shares is not None:
        _chart(_bar(L.shares, "region", "share", "label", "share of the acquired labels per region"), "lesson_balpm_share")
    if L.prompts is not None:
        fig = go.Figure()
        for k, g in L.prompts.groupby("label", sort=False):
            fig.add_scatter(x=g["round"], y=g["batch_unique_prompts"], name=untrusted.plot(k), mode="lines+markers",
                            line=dict(color=plots.label_color(str(k))))
        top = float(L.prompts["batch_unique_prompts"].max())
        fig.update_yaxes(range=[0, top * 1.08], title="distinct prompts")  # from 0: differences not magnified
        fig.update_xaxes(dtick=1)
        fig.update_layout(title="distinct prompts per acquired batch", height=340, xaxis_title="round",
                          paper_bgcolor="white", plot_bgcolor="white", margin=dict(l=50, r=20, t=60, b=40))
        _chart(fig, "lesson_prompts")
    st.page_link("views/prompt_space.py", label="Prompt space: replay a batch pick by pick")


def step_curves() -> None:
    st.markdown(untrusted.md(f"The learning curves ({', '.join(f'{names.get(k, k)} {n} seed' + 's' * (n != 1) for k, n in seeds.items())}) "
                             "and their verdicts on the test log-likelihood AULC, paired by seed:", limit=4000))
    for line in L.verdicts:
        _verdict(line)
    st.markdown(untrusted.md(L.mechanism, limit=4000))
    curves = [(r.label, r.seed, r.rounds) for r in L.runs if r.variant is None and r.policy != stats.CEILING_POLICY]
    fig = plots.learning_curves_figure({"test_log_likelihood": frames.curve_stats(curves, "test_log_likelihood")},
                                       plots.policy_colors(labels))
    _chart(fig, "lesson_curves")
    for line in L.headroom:
        st.caption(untrusted.md(line, limit=4000))
    st.page_link("views/learning_curves.py", label="Learning curves: every metric, smoothing, the ceiling")


def step_ablations() -> None:
    av = L.ablation_verdicts
    if not av:
        st.markdown("No ablation variants in this folder yet: balpm sweep --ablations paper --seeds 0-7 runs "
                    "the paper's set (no U, H minimiser, predictive, KL, β robustness) over the base's seeds.")
        st.page_link("views/ablations.py", label="Ablations: run one variant for all seeds")
        return
    base = av[0]["base"]
    st.markdown(untrusted.md(f"Each variant against the base {base}: the test log-likelihood AULC difference, paired "
                             "by seed (95% Student-t interval):", limit=4000))
    for a in av:
        _verdict(f"{a['variant']}: {a['verdict']} (test log-likelihood AULC {stats.fmt_value(a['mean'], 4, True)}, "
                 f"95% CI {stats.fmt_interval(a['ci'], 4, a['n'])}, {a['n']} {'paired ' if a['paired'] else ''}seeds)",
                 a["verdict"] if a["verdict"] in VERDICT_BOX else "none")
    fig = go.Figure()
    for a in av:
        lo, hi = (a["ci"] or [None, None])[:2]
        color = {"better": "#15803d", "worse": "#b91c1c"}.get(a["verdict"], "#6b7280")
        fig.add_scatter(x=[a["mean"]], y=[untrusted.plot(a["variant"])], mode="markers", marker=dict(size=11, color=color),
                        error_x=dict(type="data", symmetric=False, array=[(hi - a["mean"]) if hi is not None else 0],
                                     arrayminus=[(a["mean"] - lo) if lo is not None else 0], color=color),
                        showlegend=False)
    fig.add_vline(x=0, line=dict(color="#111827", dash="dot"))
    fig.update_layout(title=untrusted.plot(f"variant minus {base}: test log-likelihood AULC"), height=90 + 40 * len(av),
                      paper_bgcolor="white", plot_bgcolor="white", margin=dict(l=110, r=20, t=60, b=40))
    _chart(fig, "lesson_ablations")
    st.page_link("views/ablations.py", label="Ablations: each variant's curve, band and picks")


def step_limits() -> None:
    st.markdown("When it stops holding: the result needs")
    for c in L.conditions:
        st.markdown("- " + untrusted.md(c, limit=4000))
    if L.iid_verdicts:
        st.markdown("The same world with an i.i.d. test set (data.world test=pool), from the runs in this folder:")
        for line in L.iid_verdicts:
            _verdict(line)
    else:
        st.caption("Run the same world with an i.i.d. test set to see it here: balpm sweep --set data.world=test=pool "
                   "--policies random,bald,balpm; the measurements over many worlds are in docs/evidence.md.")
    st.page_link("views/worlds.py", label="Worlds: the regime map, where each lesson holds")


STEPS = [("The world", step_world), ("Where BALD's labels went, and why", step_bald),
         ("Where BAL-PM's labels went", step_balpm), ("The curves, with verdicts", step_curves),
         ("The ablations, with verdicts", step_ablations), ("When it stops holding", step_limits)]

i = min(max(int(st.session_state.get(STEP, 0)), 0), len(STEPS) - 1)
st.caption(f"step {i + 1} of {len(STEPS)} · the teaching world, {sum(seeds.values())} runs in {len(seeds)} policies")
st.subheader(f"{i + 1}. {STEPS[i][0]}")
STEPS[i][1]()
c = st.columns([1, 1, 6])
if c[0].button("◀ back", key="lesson_back", disabled=i == 0):
    st.session_state[STEP] = i - 1
    st.rerun()
if c[1].button("next ▶", key="lesson_next", disabled=i == len(STEPS) - 1, type="primary"):
    st.session_state[STEP] = i + 1
    st.rerun()
