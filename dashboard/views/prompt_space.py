"""Prompt space: the pool on a 2-D map, acquisitions coloured by round, and a pick-by-pick replay."""
from __future__ import annotations

import streamlit as st

from balpm_dashboard import frames, plots, state, untrusted

from balpm.acquisition import registry

root, infos, runs_cmp = state.page_runs("Prompt space")

ctl = st.columns([1, 2, 1, 1])
seeds = sorted({i.seed for i in runs_cmp})
seed = ctl[0].selectbox("seed", seeds, key="ps_seed")
at_seed = [i for i in runs_cmp if i.seed == seed]
names = {i.run_id: i.label for i in at_seed}
# the ceiling run (policy full) acquires nothing: selectable, but never among the default maps
default = list(dict.fromkeys({i.label: i.run_id for i in at_seed if i.policy != "full"}.values()))[:3]
shown = ctl[1].multiselect("policies side by side (up to 3)", list(names), default=default,
                           format_func=lambda r: names[r], max_selections=3, key="ps_runs")
method = ctl[2].selectbox("map", ["auto", "umap", "pca"], key="ps_method",
                          help="auto = UMAP (PCA when too few prompts); 2-D features are shown raw")
# the last round of a run never acquires: the colour bar and this control end at the last round that did
max_round = max((frames.last_acquiring_round(i.last_round, i.rounds) for i in at_seed), default=0)
upto = ctl[3].number_input("acquired up to round", 0, max(max_round, 0), max(max_round, 0), key="ps_upto")


def shared_ranges(run_ids: list[str]) -> tuple[list[float], list[float]] | None:
    """One axis range for the side maps and the replay: the whole 2-D projection of the runs' datasets."""
    coords = []
    for r in run_ids:
        data_hash = state.config(root, r)[1].get("data_hash")
        proj = state.attempt(state.projection, root, data_hash, method, what=r) if data_hash else None
        if proj is not None:
            coords.append(proj.coords_P_2)
    return frames.projection_ranges(coords) if coords else None


if not shown:
    st.caption("Pick at least one run.")
else:
    maps = []
    for rid in shown:
        got = state.attempt(state.coords, root, rid, method, what=rid)
        if got is None:
            continue
        xy, used = got
        acq = state.attempt(state.acquisitions, root, rid, what=rid)
        pool = state.attempt(state.pool, root, rid, what=rid)
        if acq is None or pool is None:
            continue
        maps.append((rid, frames.map_frame(xy, pool, acq, int(upto)), used))
    if maps:
        hashes = {state.config(root, r)[1].get("data_hash") for r, _, _ in maps}
        if len(hashes) > 1:
            st.warning("These runs use different datasets; their maps are not comparable.")
        ranges = shared_ranges([r for r, _, _ in maps]) or frames.axis_ranges([m for _, m, _ in maps])
        used = maps[0][2]
        st.caption({"raw": "The prompt features are 2-D (the synthetic teaching world): shown as they are.",
                    "umap": "UMAP of the prompt features (fitted once per dataset, cached under _datasets/).",
                    "pca": "First two principal components of the prompt features."}.get(used, untrusted.md(used))
                   + " Light grey: the pool; dark diamonds: the initial set; coloured: acquired, by round. "
                   "Click a point (or pick the box / lasso tool) to inspect it.")
        cols = st.columns(len(maps))
        for col, (rid, mf, used) in zip(cols, maps):
            with col:
                n_acq = int((mf["round"] >= 0).sum())
                fig = plots.prompt_map(mf, title=f"{names[rid]} · seed {seed} · {n_acq} acquired", method=used,
                                       ranges=ranges, max_round=max_round, colorbar=True,
                                       legend=False, height=500)
                event = st.plotly_chart(fig, on_select="rerun", selection_mode=("points", "box", "lasso"),
                                        key=f"ps_map_{rid}", config={"displaylogo": False}, theme=None)
                picked = state.selected_points(event)
                if picked:
                    state.add_selection(rid, picked)
                    st.caption(f"{len(picked)} point(s) selected")
                    st.page_link("views/inspect.py", label=f"Inspect {len(picked)} selected")

# ---- replay ------------------------------------------------------------------------------------
st.subheader("Step-through replay")
replayable = [i for i in runs_cmp if state.pool_score_rounds(root, i.run_id)]
if not replayable:
    st.info("No run saved per-round pool scores (loop.save_pool_scores), so there is nothing to replay.")
    st.stop()
rnames = {i.run_id: f"{i.label} · seed {i.seed}" for i in replayable}
pref = next((i.run_id for i in replayable if registry.has_ability(i.policy, "replay") and i.seed == seed),
            replayable[0].run_id)  # a policy whose picks replay step by step (its registry entry says so)
rc = st.columns([2, 1, 2])
rid = rc[0].selectbox("run", list(rnames), index=list(rnames).index(pref), format_func=lambda r: rnames[r],
                      key="rp_run")
score_rounds = state.pool_score_rounds(root, rid)
if len(score_rounds) > 1:
    rnd = rc[1].select_slider("round", score_rounds, value=score_rounds[0], key="rp_round")
else:
    rnd = score_rounds[0]
    rc[1].markdown(f"round **{untrusted.md(rnd)}**")
color_by = rc[2].radio("colour the pool by", frames.SCORE_CHOICES, format_func=lambda s: frames.SCORE_LABELS[s],
                       horizontal=True, key="rp_color")

cfg, _ = state.config(root, rid)
scores, inc = state.pool_scores(root, rid, rnd)
acq = state.acquisitions(root, rid)
picks = acq[acq["round"] == rnd].sort_values("step").reset_index(drop=True)
got = state.attempt(state.coords, root, rid, method, what=rid)
if scores is None or got is None or not len(picks):
    st.warning(f"round {rnd} of {untrusted.md(rid)} has no pool scores or no picks")
    st.stop()
xy, used = got
inc_pos = state.replay_index(root, rid, rnd)
ranges = shared_ranges(list(dict.fromkeys(list(shown) + [rid]))) or frames.axis_ranges([xy])
acfg = cfg.acquisition
sign = frames.score_sign(acfg.minimize_entropy)
rounds_df = state.attempt(state.rounds, root, rid, what=rid)
beta_r = frames.round_beta(rounds_df, rnd, acfg.beta)  # beta_mode=scaled: this round's effective beta
spreads = frames.round_spreads(rounds_df, rnd, scores, beta_r)
if registry.records(acfg.policy, "beta_h"):  # a policy with an entropy term (its declared columns)
    msg = frames.diversity_message(spreads)
    if msg:
        st.warning(msg)
    st.caption(f"Round {rnd} over the pool: U std {frames.fmt_num(spreads['u_std'])}, IQR "
               f"{frames.fmt_num(spreads['u_iqr'])} · β·H std {frames.fmt_num(spreads['beta_h_std'])}, IQR "
               f"{frames.fmt_num(spreads['beta_h_iqr'])} · β = {frames.fmt_num(beta_r)}"
               + (f" (beta_mode scaled, configured {acfg.beta:g})" if getattr(acfg, "beta_mode", "fixed") == "scaled"
                  else ""))
n_steps = len(picks)
step_key = f"rp_step::{rid}::{rnd}"
if step_key not in st.session_state:
    st.session_state[step_key] = 1
play_key = "rp_playing"
anchor_key = "rp_play_anchor"  # (wall time, step) when play was pressed: the position follows the clock
PLAY_RATE = 1.0  # picks per second of wall time
playing = bool(st.session_state.get(play_key, False))
pool_df = state.pool(root, rid)
lab_before = state.attempt(lambda: frames.map_frame(xy, pool_df, acq, rnd - 1), what=rid)
lab_before = lab_before[lab_before["round"].notna()] if lab_before is not None else None


def _advance(delta: int) -> None:
    st.session_state[step_key] = int(min(max(st.session_state[step_key] + delta, 1), n_steps))


def _set_play(on: bool) -> None:
    # idempotent (not a toggle): a click whose rerun is coalesced with a fragment tick stays one click
    if on and not st.session_state.get(play_key, False):
        if st.session_state[step_key] >= n_steps:
            st.session_state[step_key] = 0  # start over: the first tick shows pick 1
        st.session_state[anchor_key] = (frames.play_clock(), int(st.session_state[step_key]))
    st.session_state[play_key] = on


b = st.columns([1, 1, 1, 5])
b[0].button("◀ prev", key="rp_prev", on_click=_advance, args=(-1,), disabled=playing)
b[1].button("next ▶", key="rp_next", on_click=_advance, args=(1,), disabled=playing)
b[2].button("⏸ pause" if playing else "▶ play", key="rp_play", type="primary", on_click=_set_play,
            args=(not playing,))
b[3].caption(f"play shows {PLAY_RATE:g} pick per second of wall time (when a redraw takes longer than that, "
             "picks are skipped so the rate holds); only the replay below is redrawn")


@st.fragment(run_every=0.5 if playing else None)
def replay_panel() -> None:
    """One greedy step of the selection; while playing it re-executes by itself (a fragment, not a page
    rerun) and shows the pick that the wall clock has reached since play was pressed (PLAY_RATE)."""
    if st.session_state.get(play_key, False):
        if st.session_state[step_key] >= n_steps:
            st.session_state[play_key] = False
            st.rerun(scope="app")  # stop the timer
        t0, s0 = st.session_state.get(anchor_key, (frames.play_clock(), int(st.session_state[step_key])))
        st.session_state[step_key] = frames.play_position(s0, t0, frames.play_clock(), PLAY_RATE, n_steps)
    st.slider("greedy step (pick number in this batch)", 1, n_steps, key=step_key,
              disabled=bool(st.session_state.get(play_key, False)))
    s = int(st.session_state[step_key]) - 1
    rep = frames.replay_step(scores, inc, picks, s, beta=beta_r, d=acfg.d, sign=sign, inc_pos=inc_pos)
    pk = rep.pick
    title = (f"{rnames[rid]} · round {rnd} · pick {s + 1}/{n_steps}: pool {int(pk['pool_index'])} "
             f"(prompt {untrusted.one_line(pk['prompt_id'], 60)})")  # plain text: plots escapes titles
    fig = plots.replay_map(xy, rep.frame, color_by=color_by, title=title, method=used, ranges=ranges,
                           labelled=lab_before)
    event = st.plotly_chart(fig, on_select="rerun", selection_mode=("points", "box", "lasso"), key="rp_map",
                            config={"displaylogo": False}, theme=None)
    picked = state.selected_points(event)
    if picked:
        state.add_selection(rid, picked)
    cur = rep.frame[rep.frame["status"] == "current"]
    m = st.columns(6)
    m[0].metric("current pick", f"pool {int(pk['pool_index'])}")
    m[1].metric("U", frames.fmt_num(pk["u"]))
    m[2].metric("β·H", frames.fmt_num(pk["beta_h"]))
    m[3].metric("score", frames.fmt_num(pk["score"]))
    m[4].metric("n (labelled in radius)", f"{int(cur['n'].iloc[0])}" if len(cur) and cur['n'].iloc[0] == cur['n'].iloc[0] else "–")
    m[5].metric("counts raised", int(rep.frame["raised"].sum()))
    if len(cur):
        c0 = cur.iloc[0]
        st.markdown(f"**Share of this pick's score** (of |U| + |β·dist| + |β·count|): U **{frames.fmt_share(c0['u_share'])}**"
                    f" · β·distance {frames.fmt_share(c0['dist_share'])} · β·count {frames.fmt_share(c0['count_share'])}")
    if not rep.exact:
        st.caption("H is shown as at the start of the round: this policy or estimator records no per-pick counts.")
    else:
        st.caption("H at this step = log(2r+floor) − ψ(n+1)/d with n replayed from the round's increments; "
                   "the cyan rings are the items whose count this pick raises.")


replay_panel()
