"""Learning curves: each quality metric against labelled-set size (mean +/- SEM over seeds), with the
chance line and, when ``full`` runs exist, the ceiling line; every policy's verdict against the
baseline from :func:`balpm.evidence.stats.evidence` (the same function and defaults as ``balpm report``, so the
numbers are those of ``balpm report --json``); the "fewer labels" bracket only behind a ``better``
AULC verdict. Smoothing only changes the drawn curves, never a number in the tables."""
from __future__ import annotations

from collections import Counter

import pandas as pd
import streamlit as st

from balpm.evidence import stats
from balpm_dashboard import frames, plots, state, untrusted

root, infos, runs_cmp = state.page_runs("Learning curves")

all_runs, duplicates = frames.curve_runs(runs_cmp, lambda i: state.attempt(state.rounds, root, i.run_id, what=i.run_id))
curve_runs = [r for r in all_runs if r.policy != stats.CEILING_POLICY]
if not curve_runs:
    st.info("The compared runs have no complete round yet (ceiling runs alone draw no curve).")
    st.stop()
labels = list(dict.fromkeys(r.label for r in curve_runs))
curves = [(r.label, r.seed, r.rounds) for r in curve_runs]

has_ood = any("ood_log_likelihood" in r.rounds and r.rounds["ood_log_likelihood"].notna().any() for r in curve_runs)
present = set().union(*(set(r.rounds.columns) for r in curve_runs))
options = [m for m in stats.quality_metrics(present) if has_ood or not m.startswith("ood_")]
default = [m for m in ("test_log_likelihood", "test_accuracy", "ood_log_likelihood", "ood_accuracy") if m in options]
# the metric chips get the whole width (they were cut in a quarter-width column)
chosen = st.multiselect("metrics", options, default=default, key="lc_metrics",
                        format_func=lambda m: frames.METRICS.get(m, stats.METRIC_NAMES.get(m, m)))
c = st.columns(3)
smooth3 = c[0].toggle("3-round smoothing (display only)", value=False, key="lc_smooth",
                      help="a trailing 3-round average of each seed's curve, as the paper draws them; "
                           "the verdicts and numbers below never use it")
window = 3 if smooth3 else 1
baseline = c[1].selectbox("baseline", labels, index=labels.index("random") if "random" in labels else 0, key="lc_base")
others = [lab for lab in labels if lab != baseline] or labels
balpm_like = [i for i, lab in enumerate(others) if lab.split(" ")[0] == "balpm"]  # "balpm beta=0.2" too
policy = c[2].selectbox("bracket for policy", others, index=balpm_like[0] if balpm_like else 0, key="lc_policy")
if not chosen:
    st.stop()


@st.cache_data(show_spinner="statistics over seeds...", max_entries=64)
def _evidence(key: tuple, baseline: str, _runs: list) -> dict:
    """:func:`dashboard.frames.page_evidence`, cached per (runs and their files, baseline)."""
    return frames.page_evidence(_runs, baseline)


key = tuple((r.run_id, state.run_fingerprint(root, r.run_id)) for r in all_runs)
ev = _evidence(key, baseline, all_runs)
main_setting = Counter(r.setting for r in curve_runs).most_common(1)[0][0]
if len(ev["settings"]) > 1:
    st.warning(f"The compared runs span {len(ev['settings'])} settings (data, model or loop sizes differ); each "
               "policy is compared with the baseline of its own setting, as balpm report does.")
if duplicates:
    st.caption(f"Counted once: {len(duplicates)} run(s) repeating a policy and seed already shown ("
               + ", ".join(untrusted.code(d["run_id"]) for d in duplicates[:5]) + ").")

entry = next((e for e in ev["policies"] if e["label"] == policy and e["setting"] == main_setting), None)
brackets = {}
for m in chosen:
    vs = ((entry or {}).get("vs_baseline") or {}).get(m) or {}
    fl = vs.get("fewer_labels")
    if vs.get("verdict") == "better" and fl:  # only behind a "better" AULC verdict, only when reached
        brackets[m] = {"target": fl["target"], "x_policy": fl["x_policy"], "x_baseline": fl["x_baseline"],
                       "text": f"{policy}: {fl['exact']['value']:.0%} fewer labels than {baseline}"}

curve_data = {m: frames.curve_stats(curves, m, smooth=window) for m in chosen}
ceilings = frames.ceiling_lines(ev, chosen, main_setting)
colors = plots.policy_colors(labels)
fig = plots.learning_curves_figure(
    curve_data, colors, brackets, chance={m: stats.chance_level(m) for m in chosen}, ceilings=ceilings,
    title=f"mean ± SEM over seeds{' · 3-round trailing average (display only)' if window > 1 else ''}")
st.plotly_chart(fig, key="lc_fig", config={"displaylogo": False}, theme=None)
st.caption("Dotted grey: chance (a coin flip: −log 2, accuracy 0.5, Brier 0.25). "
           + ("Dashed black: the ceiling, the same model trained once on the whole pool (mean over seeds). "
              if ceilings else "No ceiling runs: add them with balpm sweep ... --ceiling. ")
           + "The bracket (3-round averages, as the paper) is drawn only when the AULC verdict is 'better' "
             "and the policy reaches the baseline's final value.")
for m in chosen:
    w = (ceilings.get(m) or {}).get("warning")
    if w:
        st.warning(untrusted.md(f"{frames.METRICS.get(m, m)}: {w}"))

st.subheader(f"Every policy against {untrusted.md(baseline)}")
st.markdown(untrusted.md(stats.aa_line(ev["aa_check"].get(main_setting), baseline)))
table = frames.verdict_frame(ev, chosen)
table = table[table["setting"] == main_setting] if len(ev["settings"]) > 1 else table
shown = frames.verdict_display(table)
# every row visible: height for all rows (the table used to hide its last rows behind a scroll)
# verdicts coloured (better green, worse red, none grey) and in columns wide enough never to be cut
st.dataframe(frames.verdict_styled(untrusted.frame(shown)), hide_index=True, width="stretch",
             height=38 + 35 * max(1, len(shown)),
             column_config={"seeds": st.column_config.NumberColumn(width="small"),
                            "policy": st.column_config.TextColumn(pinned=True),
                            **{c: st.column_config.TextColumn(c, width="large") for c in frames.SHOWN_VERDICTS}})
st.caption("Per seed: AULC (trapezoid of the unsmoothed curve over labelled-set size / its range) and final value; "
           "diff = policy minus baseline over the seeds both have (paired by seed; 'unpaired' = Welch). "
           "Verdict from the 95% Student-t interval of the AULC difference (lower is better for Brier and ECE); the "
           "percentile bootstrap CI is shown beside it but does not decide: at 4-10 seeds it calls noise a "
           "difference too often. Fewer labels (secondary): exact / paper-compatible with a 95% bootstrap CI, only "
           "behind 'better'; 'never': the target was missed in over 2.5% of resamples.")

long_all = pd.concat([s.assign(metric=m) for m, s in curve_data.items() if len(s)], ignore_index=True)
d = st.columns(3)
d[0].download_button("figure (HTML)", fig.to_html(include_plotlyjs=True, full_html=True).encode(),
                     "learning_curves.html", "text/html", key="lc_html")
d[1].download_button("curves (CSV)", long_all.to_csv(index=False).encode(), "learning_curves.csv", "text/csv",
                     key="lc_csv")
d[2].download_button("verdicts (CSV)", table.to_csv(index=False).encode(), "verdicts.csv", "text/csv",
                     key="lc_summary_csv")
