"""Inspect a triple: the prompt, both answers, the human label, each member's probability, U, H and
its terms, and when it was picked, for points selected on any map (or typed here)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from balpm_dashboard import frames, plots, state, untrusted

root, infos, ok = state.page_runs("Inspect a triple", which="usable",
                                  empty="No readable runs yet: start one on the Runs page.")

cmp_ids = [i.run_id for i in state.compared(infos)]
sel = st.session_state.get(state.SELECTION, [])
sel_runs = list(dict.fromkeys(s["run"] for s in sel))
order = sorted(ok, key=lambda i: (i.run_id not in sel_runs, i.run_id not in cmp_ids, i.run_id))
names = {i.run_id: f"{i.label} · seed {i.seed} ({i.run_id})" for i in order}
rid = st.selectbox("run", list(names), format_func=lambda r: names[r], key="in_run")

cfg, meta = state.config(root, rid)
pool = state.attempt(state.pool, root, rid, what=rid)
acq = state.attempt(state.acquisitions, root, rid, what=rid)
ds = state.attempt(state.dataset, root, meta.get("data_hash", ""), what=rid)
if pool is None or acq is None or ds is None:
    st.stop()
table = ds[0]

from_maps = [s["pool_index"] for s in sel if s["run"] == rid]
c = st.columns([3, 1])
with c[0]:
    method = st.session_state.get("ps_method", "auto")
    got = state.attempt(state.coords, root, rid, method, what=rid)
    if got is not None:
        xy, used = got
        mf = frames.map_frame(xy, pool, acq)
        event = st.plotly_chart(plots.prompt_map(mf, title="click a point, or pick the box / lasso tool", method=used,
                                                 ranges=frames.axis_ranges([mf]), highlight=from_maps),
                                on_select="rerun", selection_mode=("points", "box", "lasso"), key="in_map",
                                config={"displaylogo": False}, theme=None)
        picked = state.selected_points(event)
        if picked and set(picked) != set(from_maps):
            state.add_selection(rid, picked)
            st.rerun()  # redraw the map with the selection ringed
with c[1]:
    st.markdown("**or choose items**")
    acquired_opts = acq.sort_values(["round", "step"])["pool_index"].astype(int).tolist()
    typed = st.multiselect("acquired items (round, step order)", acquired_opts, key="in_typed",
                           format_func=lambda i: f"pool {i}")
    if st.button("clear map selection", key="in_clear"):
        st.session_state[state.SELECTION] = [s for s in sel if s["run"] != rid]
        from_maps = []
wanted = list(dict.fromkeys([int(i) for i in from_maps] + [int(i) for i in typed]))
if not wanted:
    st.caption("Nothing selected yet: select points on a map here or on the Prompt space page, or choose items.")
    st.stop()

score_rounds = state.pool_score_rounds(root, rid)
picked_rounds = set(acq.loc[acq["pool_index"].isin(wanted), "round"].astype(int))
need = sorted(picked_rounds | ({score_rounds[-1]} if score_rounds else set()))
scores = {}
for r in need:
    s, _ = state.pool_scores(root, rid, r)
    if s is not None:
        scores[r] = s
rows = frames.inspect_rows(wanted, pool, table, acq, scores, beta=cfg.acquisition.beta)
st.subheader(f"{len(rows)} selected item(s)")
st.caption("`chosen` is the answer the human preferred; p0..pK−1 are each ensemble member's probability that the "
           "human's choice is preferred, from the round the item was scored in (U, H and its terms likewise; "
           "`*_at_pick` are the values at the greedy step that picked it).")
# every row visible (no inner scroll cutting the last ones off); the short columns (when picked, U, H, the
# members' probabilities) first, in narrow 4-decimal columns, and the long texts last: they were pushing
# the scores out of view. The full texts are in the expanders below and in the CSV.
TEXTS = [c for c in ("prompt", "chosen", "rejected") if c in rows.columns]
COUNTS = ("round_picked", "pick_in_batch", "step_picked", "scores_from_round", "n", "n0")
num_cfg = {c: st.column_config.NumberColumn(c, format="%d" if c in COUNTS else "%.4f", width="small")
           for c in rows.columns if c not in TEXTS and rows[c].dtype.kind in "fi"}
st.dataframe(untrusted.frame(rows), hide_index=True, width="stretch", height=min(38 + 35 * max(len(rows), 1), 640),
             column_order=[c for c in rows.columns if c not in TEXTS] + TEXTS,
             column_config={**num_cfg, **{c: st.column_config.TextColumn(c, width="medium") for c in TEXTS},
                            "pool_index": st.column_config.NumberColumn("pool", width="small")})
st.download_button("selection (CSV)", rows.to_csv(index=False).encode(), f"selection-{rid}.csv", "text/csv",
                   key="in_csv")

for _, r in rows.head(5).iterrows():
    title = f"pool {r['pool_index']} · prompt {untrusted.md(r.get('prompt_id'), 80)}"  # ids come from the data
    if pd.notna(r.get("round_picked")):
        title += " · initial set" if r["round_picked"] == -1 else f" · picked in round {int(r['round_picked'])}, pick {int(r['pick_in_batch'])} of its batch (step_picked {int(r['step_picked'])})"
    with st.expander(title, expanded=len(rows) == 1):
        st.markdown("**prompt**")
        st.text(untrusted.text(r.get("prompt", "")))  # plain; control characters shown as escapes
        a1, a2 = st.columns(2)
        a1.markdown("**chosen** (the human's choice)")
        a1.text(untrusted.text(r.get("chosen", "")))
        a2.markdown("**rejected**")
        a2.text(untrusted.text(r.get("rejected", "")))
        probs = [r[k] for k in r.index if k[:1] == "p" and k[1:].isdigit() and pd.notna(r[k])]
        if probs:
            st.markdown("member probabilities that the human's choice wins: "
                        + ", ".join(f"`{p:.3f}`" for p in probs) + f" · mean `{np.mean(probs):.3f}`")
        parts = {k: r.get(k) for k in ("u", "h", "log_dist", "count_term", "n0", "radius", "score")}
        st.markdown(" · ".join(f"{k} `{v:.4f}`" for k, v in parts.items() if isinstance(v, float) and np.isfinite(v))
                    or "no scores: the initial set is labelled before any scoring")
