"""Anatomy of a batch: what each pick's score is made of, the U/score ratio, and batch redundancy."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from balpm_dashboard import frames, plots, state, untrusted

from balpm.acquisition import registry

root, infos, runs_cmp = state.page_runs("Anatomy of a batch")

with_picks = [i for i in runs_cmp if i.last_round >= 1 or (i.state == "complete" and i.rounds > 1)]
names = {i.run_id: f"{i.label} · seed {i.seed}" for i in runs_cmp}
pref = next((i.run_id for i in runs_cmp if registry.records(i.policy, "beta_h")), runs_cmp[0].run_id)
c = st.columns([2, 1])
rid = c[0].selectbox("run", list(names), index=list(names).index(pref), format_func=lambda r: names[r], key="ba_run")
acq = state.attempt(state.acquisitions, root, rid, what=rid)
cfg, _ = state.config(root, rid)
if acq is None or not len(acq):
    st.info(f"{untrusted.md(names[rid])} has no acquisitions yet (a batch is acquired after each round but the last).")
else:
    rounds_avail = sorted(acq["round"].unique().tolist())
    if len(rounds_avail) > 1:
        rnd = c[1].select_slider("round", rounds_avail, value=rounds_avail[0], key="ba_round")
    else:
        rnd = rounds_avail[0]
        c[1].markdown(f"round **{untrusted.md(rnd)}**")
    picks = acq[acq["round"] == rnd]
    a = cfg.acquisition
    rounds_df = state.attempt(state.rounds, root, rid, what=rid)
    beta_r = frames.round_beta(rounds_df, rnd, a.beta)  # beta_mode=scaled: this round's effective beta
    anat = frames.anatomy_frame(picks, beta=beta_r, sign=frames.score_sign(a.minimize_entropy))
    sign_txt = "U − β·H" if a.minimize_entropy else "U + β·H"
    beta_txt = (f"β={frames.fmt_num(beta_r)}, scaled from {a.beta:g}" if getattr(a, "beta_mode", "fixed") == "scaled"
                else f"β={a.beta:g}")
    entropy_term = registry.records(a.policy, "beta_h")  # its registry entry declares the U + beta*H columns
    if entropy_term:
        spreads = frames.round_spreads(rounds_df, rnd)
        if not spreads["u_std"] == spreads["u_std"]:  # an older run: compute them from the round's pool scores
            scores_r, _ = state.pool_scores(root, rid, rnd)
            spreads = frames.round_spreads(None, rnd, scores_r, beta_r)
        msg = frames.diversity_message(spreads)
        if msg:
            st.warning(msg)
    st.plotly_chart(plots.anatomy_bars(anat, title=f"{names[rid]} · round {rnd}: each pick's score = {sign_txt} "
                                                   f"({beta_txt}, d={a.d:g}, k={a.k})"),
                    key="ba_bars", config={"displaylogo": False}, theme=None)
    if not entropy_term:
        st.caption(f"{untrusted.md(cfg.acquisition.policy)} has no entropy term: the bars are its uncertainty alone.")
    else:
        st.caption(f"Over this batch's picks: median U {frames.fmt_num(anat['u'].median())} "
                   f"(median share {frames.fmt_share(anat['u_share'].median())}), median β·H "
                   f"{frames.fmt_num(anat['beta_h'].median())}. The lower panel shows each part's share, so a "
                   "tiny U stays visible.")
    with st.expander("the numbers behind the bars"):
        num = st.column_config.NumberColumn
        st.dataframe(untrusted.frame(anat), hide_index=True, width="stretch", column_config={
            **{c: num(c, format="%.3e") for c in ("u", "dist", "count", "beta_h", "score")},
            **{c: num(c, format="percent") for c in ("u_share", "dist_share", "count_share")}})

# ---- across rounds and policies ----------------------------------------------------------------
st.subheader("Across rounds")
groups = state.by_label(runs_cmp)
colors = plots.policy_colors(list(groups))
ratios: dict[str, pd.DataFrame] = {}
redundancy: dict[str, pd.DataFrame] = {}
for label, members in groups.items():
    rparts, dparts = [], []
    for info in members:
        acq_i = state.attempt(state.acquisitions, root, info.run_id, what=info.run_id)
        if acq_i is None or not len(acq_i):
            continue
        rparts.append(acq_i)
        _, meta = state.config(root, info.run_id)
        ds = state.attempt(state.dataset, root, meta.get("data_hash", ""), what=info.run_id)
        ids, feats = (ds[1], ds[2]) if ds is not None else (None, None)
        red = frames.redundancy_frame(acq_i, ids, feats)
        red["seed"] = info.seed
        dparts.append(red)
    if rparts:
        ratios[label] = frames.u_share_by_round(pd.concat(rparts, ignore_index=True))
    if dparts:
        redundancy[label] = pd.concat(dparts, ignore_index=True)

if not ratios:
    st.info("No acquisitions yet in the compared runs.")
    st.stop()
st.plotly_chart(plots.ratio_figure(ratios, colors, title="U's share of each pick's score, |U| / (|U| + |β·H|) "
                                                          "(median and max per round, all compared seeds)",
                                   ytitle="U's share of the score", share=True),
                key="ba_ratio", config={"displaylogo": False}, theme=None)
st.caption("Near 100%: the uncertainty drives the pick; near 0%: the entropy term does. A share, as the bars above, "
           "so it never explodes (the paper's U / score does as a score nears 0).")
st.plotly_chart(plots.redundancy_figure(redundancy, colors), key="ba_redundancy", config={"displaylogo": False}, theme=None)
st.caption("Redundancy of each batch: unique prompts, comparisons per prompt and the mean pairwise distance of the "
           "batch's prompt features (raw features; duplicates count as 0), mean over the compared seeds.")
summary = pd.concat([df.assign(policy=label) for label, df in redundancy.items()], ignore_index=True)
st.download_button("redundancy numbers (CSV)", summary.to_csv(index=False).encode(), "redundancy.csv", "text/csv",
                   key="ba_csv")
