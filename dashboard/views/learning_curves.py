"""Learning curves: test and OOD log-likelihood and accuracy vs labelled-set size, mean +/- SEM over
seeds, the "X% fewer labels than the baseline" bracket (exact and paper-compatible, with bootstrap CIs)
and the area under each curve."""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from balpm import metrics
from dashboard import frames, plots, state

root, infos, runs_cmp = state.page_runs("Learning curves")

groups = state.by_label(runs_cmp)
labels = list(groups)
curves = []
for label, members in groups.items():
    for info in members:
        rd = state.attempt(state.rounds, root, info.run_id, what=info.run_id)
        if rd is not None and len(rd):
            curves.append((label, int(info.seed), rd))
if not curves:
    st.info("The compared runs have no complete round yet.")
    st.stop()

has_ood = any(c[2]["ood_log_likelihood"].notna().any() for c in curves)
c = st.columns([2, 1, 1, 1])
options = ["test_log_likelihood", "test_accuracy"] + (["ood_log_likelihood", "ood_accuracy"] if has_ood else []) \
    + ["test_brier", "test_ece"]
chosen = c[0].multiselect("metrics", options, default=options[:4], format_func=lambda m: frames.METRICS[m],
                          key="lc_metrics")
smooth3 = c[1].toggle("3-round smoothing (as the paper)", value=False, key="lc_smooth")
window = 3 if smooth3 else 1
baseline = c[2].selectbox("baseline", labels, index=labels.index("random") if "random" in labels else 0, key="lc_base")
others = [lab for lab in labels if lab != baseline] or labels
policy = c[3].selectbox("policy", others, index=others.index("balpm") if "balpm" in others else 0, key="lc_policy")
if not chosen:
    st.stop()

stats = {m: frames.curve_stats(curves, m, smooth=window) for m in chosen}


def _matrix(label: str, metric: str) -> tuple[np.ndarray | None, np.ndarray]:
    long = frames.curve_table([cv for cv in curves if cv[0] == label], metric)
    return frames.seed_matrix(long, 1)


@st.cache_data(show_spinner=False, max_entries=256)
def _efficiency(b_mat: np.ndarray, p_mat: np.ndarray, xs: np.ndarray, paper: bool, window: int,
                higher: bool) -> tuple:
    """Point estimate (seed-mean curves) and bootstrap CI of the label-efficiency figure (cached)."""
    point = metrics.label_efficiency(xs, metrics.smooth(b_mat.mean(0), window), metrics.smooth(p_mat.mean(0), window),
                                     paper=paper, higher_is_better=higher)
    ci = metrics.label_efficiency_ci(b_mat, p_mat, xs, paper=paper, window=window, higher_is_better=higher,
                                     n_boot=1000, seed=0)
    return point, ci


eff_rows, brackets = [], {}
for m in chosen:
    higher = m.endswith(("log_likelihood", "accuracy"))
    b_mat, bx = _matrix(baseline, m)
    p_mat, px = _matrix(policy, m)
    if b_mat is None or p_mat is None or baseline == policy:
        continue
    xs = np.intersect1d(bx, px)
    if len(xs) == 0:
        continue
    b_mat = b_mat[:, np.isin(bx, xs)]
    p_mat = p_mat[:, np.isin(px, xs)]
    if not (np.isfinite(b_mat).all() and np.isfinite(p_mat).all()):
        continue
    for paper in (False, True):
        point, ci = _efficiency(b_mat, p_mat, xs, paper, window, higher)
        eff_rows.append({"metric": frames.METRICS[m], "method": "paper-compatible" if paper else "exact",
                         "fewer labels": point.saving, "CI low": ci.low, "CI high": ci.high,
                         "reached in resamples": ci.reached_fraction, "policy reaches at": point.x_reached,
                         "baseline final size": point.x_final, "target": point.target, "seeds": ci.n_seeds})
        if not paper and m in ("test_log_likelihood", "ood_log_likelihood"):
            text = (f"{point.saving:.0%} fewer labels than {baseline}" if point.reached
                    else f"{policy} does not reach {baseline}'s final value")
            brackets[m] = {"target": point.target, "x_policy": point.x_reached if point.reached else None,
                           "x_baseline": point.x_final, "text": text}

colors = plots.policy_colors(labels)
fig = plots.learning_curves_figure(stats, colors, brackets,
                                   title=f"mean ± SEM over seeds{' · 3-round trailing average' if window > 1 else ''}")
st.plotly_chart(fig, key="lc_fig", config={"displaylogo": False}, theme=None)

st.subheader(f"{policy} vs {baseline}: labels saved")
if eff_rows:
    eff = pd.DataFrame(eff_rows)
    st.dataframe(eff, hide_index=True, width="stretch",
                 column_config={k: st.column_config.NumberColumn(k, format="percent") for k in
                                ("fewer labels", "CI low", "CI high", "reached in resamples")})
    st.caption("Exact: the policy's curve interpolated in labelled-set size, first size reaching the baseline's "
               "final value. Paper-compatible: the paper's round-index formula (off by one round, REFERENCE flaw 6). "
               "95% percentile bootstrap over seeds (paired when both have the same seeds); a low of −∞ means the "
               "target was missed in over 2.5% of resamples.")
else:
    st.caption("Pick a baseline and a different policy with complete rounds at the same labelled-set sizes.")

st.subheader("Area under the learning curve")
aulc_rows = []
for m in chosen:
    long = frames.curve_table(curves, m)
    for label, g in long.groupby("label", sort=False):
        mat, xs = frames.seed_matrix(g, window)
        if mat is None or len(xs) == 0:
            continue
        per_seed = np.array([metrics.aulc(xs, row) for row in mat])
        mean, sem = metrics.mean_sem(per_seed)
        ci = metrics.bootstrap_ci(per_seed, np.mean, n_boot=1000, seed=0)
        aulc_rows.append({"metric": frames.METRICS[m], "policy": label, "AULC": mean, "SEM": sem,
                          "CI low": ci.low, "CI high": ci.high, "seeds": len(per_seed),
                          "final": float(np.nanmean(mat[:, -1])), "labels at end": int(xs[-1])})
aulc_df = pd.DataFrame(aulc_rows)
st.dataframe(aulc_df, hide_index=True, width="stretch")
st.caption("AULC: trapezoid area over the labelled-set sizes divided by their range (the curve's mean height).")

long_all = pd.concat([s.assign(metric=m) for m, s in stats.items() if len(s)], ignore_index=True)
d = st.columns(3)
d[0].download_button("figure (HTML)", fig.to_html(include_plotlyjs=True, full_html=True).encode(),
                     "learning_curves.html", "text/html", key="lc_html")
d[1].download_button("curves (CSV)", long_all.to_csv(index=False).encode(), "learning_curves.csv", "text/csv",
                     key="lc_csv")
summary = pd.concat([aulc_df.assign(table="aulc"), pd.DataFrame(eff_rows).assign(table="label_efficiency")],
                    ignore_index=True)
d[2].download_button("AULC and label efficiency (CSV)", summary.to_csv(index=False).encode(), "summary.csv",
                     "text/csv", key="lc_summary_csv")
