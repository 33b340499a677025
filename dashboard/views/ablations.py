"""Ablations: flip one knob of a run, run (or reuse, by config hash) the variant for every seed of the
base (the same initial sets) through the engine in the background with progress, and compare: the
verdict paired by seed, the curves with their bands, and the picks at the base's seed."""
from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import streamlit as st
from balpm_dashboard import frames, jobs, plots, state, untrusted

from balpm.acquisition import registry
from balpm.config import UNCERTAINTIES, RunConfig
from balpm.errors import BalpmError
from balpm.evidence import stats
from balpm.experiment import ablations, runs

VARIANT = "abl_variant"
root, infos, ok = state.page_runs(
    "Ablations", which="usable",
    empty="No readable runs yet: an ablation starts from an existing run (start one on the Runs page).")

cmp_ids = [i.run_id for i in state.compared(infos)]
candidates = sorted(ok, key=lambda i: (i.run_id not in cmp_ids, i.policy != ablations.POLICY, i.run_id))
names = {i.run_id: f"{i.label} · seed {i.seed} ({i.run_id})" for i in candidates}
base_id = st.selectbox("base run", list(names), format_func=lambda r: names[r], key="abl_base")
base_cfg, _ = state.config(root, base_id)
a = base_cfg.acquisition
st.caption("Each change gives a config that differs from the base only in the acquisition knobs: same data, "
           "model, seed and therefore the same initial set. A variant already on disk (same config hash) is "
           "reused; otherwise it runs for every seed of the base in the background (`balpm sweep`).")

# ---- the paper's ablation set: finished variants switched instantly, missing ones run for every seed -----
base_info = next(i for i in ok if i.run_id == base_id)
VERDICT_BOX = {"better": st.success, "worse": st.error}


def _variant_groups() -> dict[str, list[runs.RunInfo]]:
    """Variant short label -> its runs (same setting as the base, any seed), in the paper's order.

    What :func:`balpm.experiment.ablations.variant_of` decides per run, as one table: the config hash of every paper
    variant at every seed of the setting (seeds x variants hashes), then one hash per run. Asking
    ``variant_of`` per run hashed seeds x variants configs for each run: 0.59 s of every toggle with the
    88 runs of ``balpm sweep --ablations paper --seeds 0-7``."""
    cand = [i for i in ok if i.setting == base_info.setting and i.label != base_info.label and i.policy == ablations.POLICY]
    want: dict[str, str] = {}
    for seed in sorted({int(i.seed) for i in cand}):
        at_seed = base_cfg.replace(loop={"seed": seed})
        for v in ablations.PAPER:
            h = ablations.variant_config(at_seed, v).hash()
            if h != at_seed.hash():
                want.setdefault(h, v.short)
    found: dict[str, list[runs.RunInfo]] = {}
    for i in cand:
        h = state.attempt(lambda rid: state.config(root, rid)[0].hash(), i.run_id, what=i.run_id)
        if h in want:
            found.setdefault(want[h], []).append(i)
    order = [v.short for v in ablations.PAPER]
    return {k: found[k] for k in sorted(found, key=order.index)}


def variant_evidence(name: str, label: str, base_runs: dict[int, str], variant_runs: dict[int, str], what: str,
                     *, key: str) -> None:
    """A variant against the base over their seeds: the verdict paired by seed on the test log-likelihood
    AULC (balpm.evidence.stats, coloured) and both curves as mean +/- SEM bands (``*_runs``: seed -> run id)."""
    metric = stats.HEADLINE_METRIC
    base_curve, name_curve = f"base: {base_info.label}", name
    stamp = tuple((r, state.run_fingerprint(root, r)) for r in (*base_runs.values(), *variant_runs.values()))
    cmp, curve_stats = _evidence(str(root), tuple(base_runs.items()), tuple(variant_runs.items()), base_curve,
                                 name_curve, metric, stamp)
    sentence = (f"{name} against {base_info.label}: {cmp['verdict']} (test log-likelihood AULC "
                f"{stats.fmt_value(cmp['mean'], 4, True)}, 95% CI {stats.fmt_interval(cmp['ci'], 4, cmp['n'])}, "
                f"{cmp['n']} {'paired ' if cmp['paired'] else ''}seeds)")
    VERDICT_BOX.get(cmp["verdict"], st.info)(untrusted.md(sentence, limit=4000))
    if what:
        st.caption(untrusted.md(what))
    colors = {base_curve: plots.label_color(base_info.label), name_curve: plots.label_color(label or name)}
    st.plotly_chart(plots.learning_curves_figure({metric: curve_stats}, colors),
                    key=key, config={"displaylogo": False}, theme=None)


@st.cache_data(show_spinner=False, max_entries=64)
def _evidence(root_text: str, base_runs: tuple, variant_runs: tuple, base_curve: str, variant_curve: str, metric: str,
              stamp: tuple) -> tuple[dict, pd.DataFrame]:
    """The verdict of :func:`variant_evidence` (seed AULCs compared by :func:`balpm.evidence.stats.compare_values`) and
    its mean +/- SEM curves, once per set of run files (``stamp``): a toggle back to a variant reads nothing."""
    root_path = Path(root_text)
    base_r = {s: state.rounds(root_path, r) for s, r in base_runs}
    var_r = {s: state.rounds(root_path, r) for s, r in variant_runs}
    _, base_aulc = stats.seed_aulcs([SimpleNamespace(seed=k, rounds=v) for k, v in base_r.items()], metric)
    _, var_aulc = stats.seed_aulcs([SimpleNamespace(seed=k, rounds=v) for k, v in var_r.items()], metric)
    cmp = stats.compare_values(var_aulc, base_aulc, stats.metric_direction(metric))
    curves = [(base_curve, s, r) for s, r in base_r.items()] + [(variant_curve, s, r) for s, r in var_r.items()]
    return cmp, frames.curve_stats(curves, metric)


@st.fragment
def ablation_set() -> None:
    """The ablation set of the base's label: one click shows a finished variant's curve (mean +/- SEM band
    over its seeds) and its verdict paired by seed against the base; nothing is re-run."""
    base_group = [i for i in ok if i.label == base_info.label and i.setting == base_info.setting and i.state == "complete"]
    base_seeds = sorted({int(i.seed) for i in base_group})
    memo_key = (base_id, tuple((i.run_id, i.state, i.last_round) for i in ok))
    memo = st.session_state.get("abl_groups_memo")
    if memo is None or memo[0] != memo_key:  # once per set of runs: a toggle reruns this fragment only
        memo = st.session_state["abl_groups_memo"] = (memo_key, {k: [i.run_id for i in g] for k, g in _variant_groups().items()})
    by_id = {i.run_id: i for i in ok}
    groups = {k: [by_id[r] for r in g] for k, g in memo[1].items()}
    done = {k: [i for i in g if i.state == "complete"] for k, g in groups.items()}
    done = {k: g for k, g in done.items() if g}
    st.subheader(f"Ablation set of {untrusted.md(base_info.label)} ({len(base_seeds)} seeds)")
    if not done:
        st.caption("No finished variant of this base yet: run the paper's set with balpm sweep --ablations paper "
                   "(same seeds), or one variant for every seed below.")
    else:
        pick = st.segmented_control("variant", list(done), default=list(done)[0], key="abl_set_variant")
        if pick:
            vg = done[pick]
            what = next((v.what for v in ablations.PAPER if v.short == pick), "")
            variant_evidence(pick, vg[0].label, {int(i.seed): i.run_id for i in base_group},
                             {int(i.seed): i.run_id for i in vg}, what, key="abl_set_curves")
    missing = [v for v in ablations.PAPER if v.short not in groups
               and ablations.variant_config(base_cfg, v).hash() != base_cfg.replace(acquisition={"policy": "balpm"}).hash()]
    partial = {k: g for k, g in groups.items() if len({int(i.seed) for i in g if i.state == "complete"}) < len(base_seeds)}
    if missing or partial:
        c = st.columns([2, 1])
        names = [v.short for v in missing] + [k for k in partial if k not in {v.short for v in missing}]
        if names:
            want = c[0].selectbox("variant not on disk (or not for every seed)", names, key="abl_set_missing")
            if c[1].button(f"run it for all {len(base_seeds)} seeds", key="abl_set_run"):
                v = next(x for x in ablations.PAPER if x.short == want)
                cfg = ablations.variant_config(base_cfg, v).validate()
                try:
                    job = jobs.start_sweep(root, cfg, ["balpm"], base_seeds, title=f"ablation {v.short} x {len(base_seeds)} seeds")
                    state.job_registry()[job.job_id] = job
                    st.session_state["abl_set_job"] = job.job_id
                    st.rerun()  # the progress fragment below starts ticking
                except BalpmError as exc:
                    st.error(untrusted.md(exc))


def job_progress(job: jobs.Job | None, done_key: str) -> None:
    """Live progress of a background job (runs done / total, rounds over all its runs), its log when it
    failed, and one full rerun of the page once it is done (so that its runs show)."""
    if job is None:
        return

    @st.fragment(run_every=2.0 if not job.finished else None)
    def panel() -> None:
        p = jobs.progress(job)
        n_done = sum(s == "complete" for s in p["states"].values())
        text = f"{job.title}: {n_done}/{len(job.run_ids)} runs done ({p['done_rounds']}/{p['total_rounds']} rounds)"
        if not p["finished"]:
            st.progress(p["fraction"], text=untrusted.md(text))
        elif p["failed"]:
            st.error(untrusted.md(f"{job.title}: {jobs.status_text(job, p)}"))
            st.code(untrusted.text(jobs.log_tail(job)), language="text")
        elif st.session_state.get(done_key) != job.job_id:
            st.session_state[done_key] = job.job_id
            st.rerun()
        else:
            st.caption(untrusted.md(text))

    panel()


ablation_set()
job_progress(state.job_registry().get(st.session_state.get("abl_set_job") or ""), "abl_set_done")


def base_seeds() -> list[int]:
    """The seeds of the base: every seed with a complete run of the base's label and setting, and its own."""
    return sorted({int(i.seed) for i in ok if i.label == base_info.label and i.setting == base_info.setting
                   and i.state == "complete"} | {int(base_info.seed)})


def seed_runs(cfg: RunConfig, complete: bool = True) -> dict[int, str]:
    """Seed -> the run of ``cfg`` at that seed (same config hash), for each of :func:`base_seeds`."""
    have = {i.config_hash: i.run_id for i in infos if i.state != "broken" and (i.state == "complete" or not complete)}
    out = {}
    for s in base_seeds():
        h = cfg.replace(loop={"seed": s}).hash()
        if h in have:
            out[s] = have[h]
    return out


def run_variant_for_every_seed(changed: dict) -> None:
    """The base with the ``changed`` acquisition knobs, for EVERY seed of the base (never one): reused when
    all its runs are on disk (same config hash), else one background sweep over the base's seeds (runs on
    disk are reused by it) whose progress the page follows. The variant is named ``ablation: ...`` so that
    it stays out of the other pages' default comparisons and of ``balpm report``."""
    try:
        variant_cfg = base_cfg.replace(acquisition=changed).validate() if changed else base_cfg
        if variant_cfg.hash() == base_cfg.hash():
            st.info("Nothing changed: this is the base run's own config.")
            return
        paper = ablations.variant_of(variant_cfg, base_cfg)
        short = paper.short if paper is not None else " ".join(
            f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in changed.items())
        variant_cfg = variant_cfg.replace(name=ablations.NAME_PREFIX + short)
        seeds = base_seeds()
        done = seed_runs(variant_cfg)
        cur = {"base": base_id, "variant": runs.default_run_id(variant_cfg), "job": None}
        if len(done) == len(seeds):
            cur["variant"] = done[int(base_info.seed)]
            st.success(untrusted.md(f"reusing the {len(seeds)} runs of this variant on disk, one per seed of the base "
                                    f"(same config hashes, e.g. {variant_cfg.hash()[:8]})"))
        else:
            ids = {runs.default_run_id(variant_cfg.replace(loop={"seed": s})) for s in seeds}
            running = next((j for j in state.jobs_for(root) if ids <= set(j.run_ids) and not j.finished), None)
            job = running or jobs.start_sweep(root, variant_cfg, [variant_cfg.acquisition.policy], seeds,
                                              title=f"ablation {short} x {len(seeds)} seeds")
            state.job_registry()[job.job_id] = job
            cur["job"] = job.job_id
            st.success(untrusted.md(f"started {job.title} in the background ({len(seeds) - len(done)} of "
                                    f"{len(seeds)} runs to compute; the others are reused)"))
        st.session_state[VARIANT] = cur
    except BalpmError as exc:
        st.error(untrusted.md(exc))


st.divider()
st.subheader("One knob, every seed of the base")
KNOB_LABELS = {"pool_radius": "pool radius (KSG-style)", "kl": "KL"}


def knob_widget(where: st.delta_generator.DeltaGenerator, name: str, f: dataclasses.Field, tp: type, value: object) -> object:
    """One knob's widget, from its field (balpm.knobs metadata): choices -> select box, bool -> checkbox,
    numbers -> number input with the field's bounds; its help is the field's help."""
    meta, key, helptext = f.metadata, f"abl_{name}", f.metadata.get("help") or None
    if meta.get("choices"):
        opts = list(meta["choices"])
        return where.selectbox(name, opts, index=opts.index(value) if value in opts else 0, key=key, help=helptext,
                               format_func=lambda e: KNOB_LABELS.get(e, e))
    if tp is bool:
        return where.checkbox(name, value=bool(value), key=key, help=helptext)
    lo = meta.get("ge") if meta.get("ge") is not None else meta.get("gt")
    if tp is int:
        return int(where.number_input(name, min_value=None if lo is None else int(lo), value=int(value), step=1,
                                      key=key, help=helptext))
    return float(where.number_input(name, min_value=None if lo is None else float(lo), value=float(value),
                                    format="%g", key=key, help=helptext))


# the widgets come from the base policy's knob class (its registry entry): a plugin policy's knobs show here too
entry = a.entry
knob_types = typing.get_type_hints(entry.knobs)
with st.form("ablation"):
    r1 = st.columns(4)
    policies = list(registry.names())
    policy = r1[0].selectbox("policy", policies, index=policies.index(a.policy), key="abl_policy",
                             help="the base's policy; another policy keeps the knobs it shares with this one")
    uncertainty = r1[1].selectbox("uncertainty", list(UNCERTAINTIES), index=list(UNCERTAINTIES).index(a.uncertainty),
                                  key="abl_unc", help=dict(dataclasses.fields(a)[1].metadata).get("help"))
    cols = st.columns(4)
    knob_values = {name: knob_widget(cols[i % 4], name, f, knob_types[name], getattr(a.knobs, name))
                   for i, (name, f) in enumerate(entry.knob_fields().items())}
    go_btn = st.form_submit_button("Run or reuse this variant", type="primary")

if go_btn:  # another policy: the knobs it shares with the base's (a knob it does not own is not carried)
    own = registry.policy_entry(policy).knob_fields()
    changes = dict(policy=policy, uncertainty=uncertainty, **{k: v for k, v in knob_values.items() if k in own})
    changed = {f: v for f, v in changes.items() if getattr(a, f) != v}
    run_variant_for_every_seed(changed)

# ---- variants of this base already on disk ------------------------------------------------------
siblings = [i for i in infos if i.run_id != base_id and i.state != "broken" and i.seed == base_info.seed
            and i.data_hash == base_info.data_hash and i.setting == base_info.setting]
if siblings:
    def _diff(info: runs.RunInfo) -> str:
        cfg, _ = state.config(root, info.run_id)
        mine, theirs = a.to_dict(), cfg.acquisition.to_dict()
        return ", ".join(f"{k}={theirs.get(k)}" for k in dict.fromkeys([*mine, *theirs])
                         if theirs.get(k) != mine.get(k)) or "(same)"
    sib = pd.DataFrame([{"run": i.run_id, "state": i.state, "rounds done": i.last_round + 1, "differs in": _diff(i)}
                        for i in siblings])
    with st.expander(f"{len(siblings)} variant(s) of this base on disk (same seed and setting)"):
        st.dataframe(untrusted.frame(sib), hide_index=True, width="stretch")
        pick = st.selectbox("compare with", ["—"] + sib["run"].tolist(), key="abl_pick")
        if pick != "—":
            st.session_state[VARIANT] = {"base": base_id, "variant": pick, "job": None}

cur = st.session_state.get(VARIANT)
if not cur or cur.get("base") != base_id:
    st.caption("Change a knob and press the button to see a variant.")
    st.stop()

job_progress(state.job_registry().get(cur["job"]) if cur.get("job") else None, "abl_done_job")


def variant_over_seeds(vcfg: RunConfig, vinfo: runs.RunInfo) -> None:
    """The variant's complete runs at the base's seeds against the base's: paired verdict and bands."""
    var_runs, base_runs = seed_runs(vcfg), seed_runs(base_cfg)
    if not var_runs:
        return
    n = len(base_seeds())
    if len(var_runs) < n:
        st.caption(f"{len(var_runs)} of the base's {n} seeds complete so far; the verdict and bands use those")
    name = str(vcfg.name)[len(ablations.NAME_PREFIX):] if ablations.is_variant(vcfg) and str(vcfg.name) else vinfo.label
    variant_evidence(name or vinfo.label, vinfo.label, base_runs, var_runs, "", key="abl_curves")

vid = cur["variant"]
vinfo = next((i for i in state.run_infos(root) if i.run_id == vid), None)
if vinfo is None or vinfo.state == "broken" or vinfo.last_round < 0:
    st.caption(f"waiting for {untrusted.code(vid)} to complete its first round...")
    st.stop()

vcfg, _ = state.config(root, vid)
_mine, _theirs = a.to_dict(), vcfg.acquisition.to_dict()
diff = {k: (_mine.get(k), _theirs.get(k)) for k in dict.fromkeys([*_mine, *_theirs]) if _mine.get(k) != _theirs.get(k)}
st.subheader(f"{untrusted.md(base_info.label)}  →  {untrusted.md(vinfo.label)}")
st.caption("changed: " + ", ".join(f"**{k}** {untrusted.md(v0)} → {untrusted.md(v1)}" for k, (v0, v1) in diff.items())
           + f" · seed {base_info.seed} · variant {untrusted.code(vid)} ({vinfo.state}, {vinfo.last_round + 1}/{vinfo.rounds} rounds)")

variant_over_seeds(vcfg, vinfo)

st.subheader("Which prompts entered or left")
summary, detail = frames.picks_diff(state.acquisitions(root, base_id), state.acquisitions(root, vid))
st.plotly_chart(plots.diff_figure(summary, title="prompts acquired by only one of the two runs, per round"),
                key="abl_diff", config={"displaylogo": False}, theme=None)
n_in, n_out = int((detail["change"] == "entered").sum()), int((detail["change"] == "left").sum())
n_sh = int((detail["change"] == "shared").sum())
st.caption(f"{n_in} prompt(s) entered, {n_out} left, {n_sh} acquired by both.")
_, bmeta = state.config(root, base_id)
ds = state.attempt(state.dataset, root, bmeta.get("data_hash", ""), what="dataset")
if ds is not None and len(detail):
    table = ds[0]
    extra = ["prompt"] + (["cluster"] if "cluster" in table.columns else [])
    first = table.drop_duplicates("prompt_id").set_index("prompt_id")[extra]
    detail = detail.join(first, on="prompt_id")
show = st.radio("show", ["entered", "left", "shared"], horizontal=True, key="abl_show")
shown = detail[detail["change"] == show].copy()
for col in ("base_round", "variant_round"):  # "-" where the run never acquired the prompt (not "None")
    shown[col] = [("-" if pd.isna(r) else str(int(r))) for r in shown[col]]
st.dataframe(untrusted.frame(shown), hide_index=True, width="stretch")
st.download_button("picks diff (CSV)", detail.to_csv(index=False).encode(), f"diff-{base_id}-{vid}.csv", "text/csv",
                   key="abl_csv")
