"""Worlds: results over the many worlds of a ``balpm worlds`` sweep (every readable run of the runs folder).

All numbers come from :func:`balpm.evidence.worlds_report.worlds_summary` (the same function as
``balpm report --worlds``): per world and comparison the paired AULC effect of test log-likelihood as a
share of the world's headroom, verdicts under Holm across the whole table, the share of worlds with
each verdict, the regime map (effect against each world knob) and the mechanism per world.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from balpm.evidence import report, stats, worlds_report
from balpm_dashboard import state, untrusted

root, infos, ok = state.page_runs(
    "Worlds", which="usable",
    empty="No readable runs yet: sample worlds and run them with balpm worlds --n 24 --seeds 0-7 --runs-dir DIR.")


@st.cache_data(show_spinner="effects over worlds...", max_entries=8)
def _summary(root_text: str, key: tuple) -> dict:
    """:func:`balpm.evidence.worlds_report.worlds_summary` of the complete runs under the root, cached per run files
    (worlds named w<i> as in the root's worlds.yaml)."""
    loaded, skipped = report.collect([root_text])
    return worlds_report.worlds_summary(loaded, skipped=skipped, names=worlds_report.world_names([root_text]))


complete = [i for i in ok if i.state == "complete"]
if not complete:
    st.info("No complete run yet: the comparison over worlds uses complete runs only.")
    st.stop()
summary = state.attempt(_summary, str(root), tuple((i.run_id, state.run_fingerprint(root, i.run_id)) for i in complete),
                        what="worlds")
if summary is None:
    st.stop()

worlds = summary["worlds"]
table = summary["table"]
c = st.columns(4)
c[0].metric("worlds", len(worlds))
c[1].metric("runs", summary["runs"])
c[2].metric("comparisons", len(table))
c[3].metric("Holm family (m)", summary["multiplicity"]["m"])
if len(worlds) < 2:
    st.info("One world only: this page compares many. Sample worlds from the stated prior with "
            "balpm worlds --n 24 --seeds 0-7 (each world is its own setting).")
if not table:
    st.info("No comparison yet: a world needs random and at least one of bald / balpm on the same seeds.")
    st.stop()
st.caption(untrusted.md(summary["multiplicity"]["statement"]) + ". Power: MDE = (t(1−α/2, df) + t(0.8, df)) × SE, the "
           "smallest AULC difference each comparison detects with 80% power. Headroom: the Bayes-optimal test "
           "log-likelihood of the world's planted truth (truth.json) minus random's AULC (else the full runs').")

aa = summary.get("aa_pooled") or {}
if aa.get("splits"):
    st.caption(f"A/A check (random's seeds split into halves, the same rule, per world; pooled over {aa['worlds']} "
               f"worlds): {aa['calls']}/{aa['splits']} splits called a difference, false-positive rate "
               f"{aa['false_positive_rate']:.3f} (95% CI {aa['fp_ci'][0]:.3f} to {aa['fp_ci'][1]:.3f}, splits taken as "
               "independent).")
st.subheader("Share of worlds with each verdict")
rows = []
for comp, vs in summary["verdict_shares"].items():
    d = summary["distribution"][comp]
    scale = 100 if d["y"] == "effect_share" else 1
    row = {"comparison": comp, "worlds": vs["n_worlds"],
           "Holm: better / worse / none": " / ".join(str(vs["holm"][v]) for v in stats.VERDICTS),
           "per comparison: better / worse / none": " / ".join(str(vs["raw"][v]) for v in stats.VERDICTS)}
    unit = "% of headroom" if d["y"] == "effect_share" else "AULC"
    row["median effect [IQR]"] = (f"{d['median'] * scale:+.3g} [{d['q25'] * scale:+.3g}, {d['q75'] * scale:+.3g}] {unit}"
                                   if d["median"] is not None else "-")
    rows.append(row)
st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")

st.plotly_chart(worlds_report.distribution_figure(summary), key="wo_dist", config={"displaylogo": False}, theme=None)
st.caption("A point per world: the paired AULC effect (policy minus reference, mean over seeds) as a share of that "
           "world's headroom; the box spans the quartiles. ▲ better, ▼ worse, ● no detectable difference, under "
           "Holm across the whole table.")

st.subheader("Regime map")
comps = summary["comparisons"]
chosen = st.multiselect("comparisons", comps, default=comps[:3], key="wo_comps")
if chosen:
    st.plotly_chart(worlds_report.regime_figure(summary, chosen), key="wo_regime", config={"displaylogo": False},
                    theme=None)
reg_rows = []
for comp in chosen:
    mech = {f"mechanism: {k}": v for k, v in summary["regime"][comp].get("mechanism", {}).items() if v["kind"] != "constant"}
    for knob, s in {**summary["regime"][comp]["knobs"], **mech}.items():
        if s["kind"] == "spearman":
            ci = s["ci"]
            text = (f"ρ {stats.fmt_value(s['rho'], 2, True)} [{stats.fmt_value(ci[0], 2, True)}, "
                    f"{stats.fmt_value(ci[1], 2, True)}]"
                    + (f", p Holm {s['p_holm']:.3f}" if s.get("p_holm") is not None else ""))
        elif s["kind"] == "levels":
            scale = 100 if summary["regime"][comp]["y"] == "effect_share" else 1
            text = "; ".join(f"{worlds_report.knob_text(v)}: median {x['median'] * scale:+.3g} (n={x['n']})"
                             for v, x in s["levels"].items())
        else:
            text = "constant: " + ", ".join(worlds_report.knob_text(v) for v in s.get("values", []))
        reg_rows.append({"comparison": comp, "knob": knob, "summary": text, "worlds": s["n"]})
if reg_rows:
    st.dataframe(pd.DataFrame(reg_rows), hide_index=True, width="stretch")
st.caption("Per knob over the worlds: Spearman's ρ between the knob and the effect share with a 95% interval (Fisher's z, "
           "Bonett-Wright SE) when the knob takes at least 4 values over at least 5 worlds; else the median effect "
           "share per knob value (% of headroom). Mechanism rows: the same against a measure of what the policy did "
           "(its noisy share of acquired labels minus the pool's, unique prompts per batch, the β·H / U spread).")

st.subheader("Per world")
by_world = {w["setting"]: w for w in worlds}
per = []
for r in table:
    w = by_world[r["setting"]]
    pol = w["policies"].get(r["policy"], {})
    ref = w["policies"].get(r["reference"], {})
    per.append({
        "world": w["name"], "comparison": r["comparison"], "seeds": r["n"],
        "effect": r["mean"], "CI low": r["ci"][0], "CI high": r["ci"][1],
        "effect % headroom": None if r["effect_share"] is None else 100 * r["effect_share"],
        "p": r["p_value"], "p Holm": r.get("p_holm"), "verdict": r["verdict"], "Holm": r.get("holm_verdict"),
        "MDE": r["mde"], "MDE % headroom": None if r["mde_share"] is None else 100 * r["mde_share"],
        "headroom": w["headroom"], "noisy labels (policy)": pol.get("noisy_labels"),
        "noisy labels (ref)": ref.get("noisy_labels"), "noisy share of pool": w["noisy_pool"],
        "unique prompts/batch (policy)": pol.get("unique_prompts"), "βH/U spread (policy)": pol.get("beta_h_to_u"),
        "spec": w["world"],
    })
per_df = pd.DataFrame(per)
st.dataframe(per_df, hide_index=True, width="stretch", height=38 + 35 * min(len(per_df), 30),
             column_config={"effect": st.column_config.NumberColumn(format="%+.4f"),
                            "CI low": st.column_config.NumberColumn(format="%+.4f"),
                            "CI high": st.column_config.NumberColumn(format="%+.4f"),
                            "effect % headroom": st.column_config.NumberColumn(format="%+.0f%%"),
                            "MDE % headroom": st.column_config.NumberColumn(format="%.0f%%"),
                            "p": st.column_config.NumberColumn(format="%.3f"),
                            "p Holm": st.column_config.NumberColumn(format="%.3f"),
                            "MDE": st.column_config.NumberColumn(format="%.4f"),
                            "headroom": st.column_config.NumberColumn(format="%.4f"),
                            "world": st.column_config.TextColumn(pinned=True)})
st.caption("Mechanism (means over seeds): noisy labels = share of the acquired labels (after the initial set) in the "
           "noisy region, beside the pool's share; unique prompts/batch = distinct prompts per acquired batch over "
           "its size; βH/U spread = median over rounds of std(β·H) / std(U) (BAL-PM only; above 10, β·H decides).")
if summary["skipped"]:
    st.caption(f"Skipped {len(summary['skipped'])} run(s) (not complete, or duplicates): listed in the JSON.")
d = st.columns(2)
d[0].download_button("summary (JSON)", worlds_report.to_json(summary).encode(), "worlds.json", "application/json",
                     key="wo_json")
d[1].download_button("per world (CSV)", per_df.to_csv(index=False).encode(), "worlds.csv", "text/csv", key="wo_csv")
