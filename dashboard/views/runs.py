"""Runs: every run folder found, its status, config and hashes; pick runs to compare; start new ones."""
from __future__ import annotations

import json

import streamlit as st
from balpm_dashboard import frames, jobs, state, untrusted

from balpm.config import POLICIES, RunConfig
from balpm.errors import BalpmError
from balpm.experiment import runs
from balpm.experiment.presets import apply_preset

root = state.runs_root()
infos = state.run_infos(root)

st.title("Runs")
st.caption(f"Every run folder in {untrusted.code(root)}, read through `balpm.experiment.runs`. "
           "Pick the runs the other pages compare, or start new ones in the background.")

# ---- overview --------------------------------------------------------------------------------
counts = {s: sum(i.state == s for i in infos) for s in ("complete", "running", "failed", "broken")}
c = st.columns(5)
c[0].metric("run folders", len(infos))
for col, s in zip(c[1:], ("complete", "running", "failed", "broken")):
    col.metric(s, counts[s])

if not infos:
    st.info(f"No runs in {untrusted.code(root)} yet. Start one below, or from a terminal: "
            f"`balpm demo` or {untrusted.code(f'balpm run --runs-dir {root}')}.")
else:
    table = frames.runs_frame(infos)
    # "2026-12-01T17:31:22+0000" -> "2026-12-01 17:31:22" (the zone is the server's; the full text was cut)
    table["updated"] = table["updated"].astype(str).str.slice(0, 19).str.replace("T", " ", regex=False)
    st.dataframe(
        untrusted.frame(table), hide_index=True, width="stretch",
        # what a reader scans first, then the hashes (which may scroll): "updated" was cut off at the right
        column_order=("run", "state", "policy", "seed", "rounds done", "progress", "updated", "problem", "data",
                      "features", "config"),
        column_config={
            "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0, format="percent",
                                                        width="small"),
            "problem": st.column_config.TextColumn("problem", width="medium"),
            "updated": st.column_config.TextColumn("updated", width="medium", help="last status.json write"),
            "data": st.column_config.TextColumn("data", width="small"),
            "features": st.column_config.TextColumn("features", width="small"),
            "config": st.column_config.TextColumn("config", width="small"),
            "setting": None,
        },
        key="runs_table",
    )
    bad = [i for i in infos if i.state in ("broken", "failed") or (i.state == "running" and i.alive is False)]
    if bad:
        with st.expander(f"{len(bad)} run(s) need attention", expanded=True):
            for i in bad:
                # run ids and error texts come from the run folders: escaped, never rendered as markdown
                if i.state == "broken":
                    st.warning(f"**{untrusted.md(i.run_id)}** is broken: {untrusted.md(i.reason)}")
                elif i.state == "failed":
                    st.error(f"**{untrusted.md(i.run_id)}** failed after round {i.last_round}: {untrusted.md(i.error)}")
                else:
                    st.warning(f"**{untrusted.md(i.run_id)}** stopped at round {i.last_round} (process gone): "
                               + untrusted.code(f"balpm run --resume --run-id {i.run_id} --runs-dir {root}"))

# ---- what to compare -------------------------------------------------------------------------
st.subheader("Compare")
ok = state.usable(infos)
if not ok:
    st.caption("Runs appear here once they have completed a round.")
else:
    groups: dict[str | None, list[runs.RunInfo]] = {}
    for i in ok:  # by setting: a synthetic world is drawn per seed, so the data hash differs between seeds
        groups.setdefault(i.setting, []).append(i)
    keys = sorted(groups, key=lambda k: -len(groups[k]))

    def _group_name(k: str | None) -> str:
        g = groups[k]
        cfg, _ = state.config(root, g[0].run_id)
        lp = cfg.loop
        hashes = sorted({str(i.data_hash or "?") for i in g})
        data = f"data {hashes[0][:16]}" if len(hashes) == 1 else f"{len(hashes)} data draws (one per seed)"
        return (f"{data} · {len(g)} runs · rounds {lp.rounds} · batch {lp.batch_size} · "
                f"initial {lp.initial} · K {cfg.model.ensemble_size}")

    current = state.compared(infos)
    cur_key = current[0].setting if current else keys[0]
    gi = st.selectbox("setting (same data, model and loop; runs differ in policy and seed)", range(len(keys)),
                      index=keys.index(cur_key) if cur_key in keys else 0, format_func=lambda j: _group_name(keys[j]),
                      key="cmp_group")
    group = groups[keys[gi]]
    labels = sorted({i.label for i in group})
    seeds = sorted({i.seed for i in group})
    cur_ids = {i.run_id for i in current}
    default_labels = sorted({i.label for i in group if i.run_id in cur_ids}) or labels
    default_seeds = sorted({i.seed for i in group if i.run_id in cur_ids}) or seeds
    cc = st.columns(2)
    pick_labels = cc[0].multiselect("policies", labels, default=default_labels, key="cmp_labels")
    pick_seeds = cc[1].multiselect("seeds", seeds, default=default_seeds, key="cmp_seeds")
    chosen = [i.run_id for i in group if i.label in pick_labels and i.seed in pick_seeds]
    st.session_state[state.COMPARE] = chosen
    st.caption(f"{len(chosen)} run(s) compared on the other pages: " + ", ".join(untrusted.code(r) for r in chosen))

# ---- one run in detail -----------------------------------------------------------------------
if infos:
    st.subheader("Details")
    ids = [i.run_id for i in infos]
    rid = st.selectbox("run", ids, key="detail_run", format_func=untrusted.one_line)  # plain text, one line
    info = next(i for i in infos if i.run_id == rid)
    d1, d2 = st.columns(2)
    with d1:
        st.markdown(f"**state** `{info.state}` · **rounds done** {info.last_round + 1}/{info.rounds}")
        st.markdown(f"**data hash** {untrusted.code(info.data_hash)} · **feature hash** {untrusted.code(info.feature_hash)} · "
                    f"**config hash** {untrusted.code(info.config_hash)}")
        if info.reason or info.error:
            st.error(untrusted.md(info.reason or info.error))
        try:
            status_text = state.read_text(root, rid, "status.json")
        except BalpmError as exc:
            st.error(untrusted.md(exc))
        else:
            if status_text is not None:
                try:
                    st.json(untrusted.tree(json.loads(status_text)), expanded=False)
                except ValueError:
                    st.warning("status.json is not valid JSON (half-written?)")
    with d2:
        try:
            cfg_text = state.read_text(root, rid, "config.yaml")
        except BalpmError as exc:
            st.error(untrusted.md(exc))
        else:
            if cfg_text is not None:
                st.code(untrusted.text(state.config_for_display(cfg_text)), language="yaml", height=360)
            else:
                st.warning("config.yaml missing")

    with st.expander("Open a file by path (inside the runs folder only)"):
        typed = st.text_input("path relative to the runs folder", key="typed_path",
                              placeholder=f"{rid}/status.json")
        if typed:
            try:
                p = runs.safe_path(root, typed)
            except BalpmError as exc:
                st.error(untrusted.md(exc))
            else:
                if p.is_file() and p.suffix in (".json", ".yaml", ".yml", ".txt") and p.stat().st_size < 2_000_000:
                    st.code(untrusted.text(p.read_text(errors="replace")))
                elif p.is_dir():
                    st.code(untrusted.text("\n".join(sorted(x.name for x in p.iterdir())[:200])), language="text")
                else:
                    st.info("not a readable text file (json, yaml, txt) inside the runs folder")

# ---- start new runs --------------------------------------------------------------------------
st.subheader("Start a run or a sweep")
bases = {"synthetic teaching world (teaching preset)": None}
for i in ok:
    bases.setdefault(f"config of {i.run_id}", i.run_id)
with st.form("new_run"):
    base_name = st.selectbox("start from", list(bases), key="new_base")
    conf_file = st.text_input("... or a config YAML inside the runs folder (optional)", key="new_conf",
                              help="its data files and feature cache must lie inside the runs folder too, unless "
                                   "the dashboard was started with --allow-outside-data")
    f1, f2, f3 = st.columns(3)
    policies = f1.multiselect("policies", list(POLICIES), default=["random", "bald", "balpm"], key="new_policies")
    seeds_text = f2.text_input("seeds", "0", key="new_seeds", help="e.g. 0,1,2 or 0-4")
    workers = f3.number_input("parallel processes", 1, 16, 1, key="new_workers")
    st.caption("Rounds, batch size and initial labels: 0 keeps the base config's value (said in the message "
               "after starting).")
    g1, g2, g3 = st.columns(3)
    rounds_n = g1.number_input("rounds (0 = keep the base's)", 0, 500, 0, key="new_rounds")
    batch_n = g2.number_input("batch size (0 = keep the base's)", 0, 100_000, 0, key="new_batch")
    initial_n = g3.number_input("initial labels (0 = keep the base's)", 0, 100_000, 0, key="new_initial")
    submitted = st.form_submit_button("Start in the background", type="primary")


def _small_teaching() -> RunConfig:
    """A teaching-world run at the teaching preset (balpm/experiment/presets.py), as a bare ``balpm run`` makes it."""
    return apply_preset(RunConfig())


if submitted:
    try:
        cwd = None
        if conf_file:
            base = RunConfig.from_yaml(runs.safe_path(root, conf_file))
            if state.allow_outside_data():
                cwd = jobs.launch_dir()  # relative paths mean what they meant where the dashboard started
            else:
                outside = jobs.outside_paths(root, base)
                if outside:
                    raise BalpmError(f"this config reads {', '.join(outside)} outside the runs folder {root}; "
                                     "copy the data into it, or restart with balpm dashboard --allow-outside-data")
        elif bases[base_name] is None:
            base = _small_teaching()
        else:
            base, _ = state.config(root, bases[base_name])
        loop_changes = {k: v for k, v in (("rounds", rounds_n), ("batch_size", batch_n), ("initial", initial_n)) if v}
        if loop_changes:
            base = base.replace(loop=loop_changes)
        seed_list = frames.parse_seeds(seeds_text)
        if not policies:
            raise BalpmError("pick at least one policy")
        if len(policies) == 1 and len(seed_list) == 1:
            job = jobs.start_run(root, base.replace(acquisition={"policy": policies[0]}, loop={"seed": seed_list[0]}),
                                 cwd=cwd)
        else:
            job = jobs.start_sweep(root, base, policies, seed_list, workers=int(workers), cwd=cwd)
        state.job_registry()[job.job_id] = job
        lp = base.loop
        kept = [k for k, v in (("rounds", rounds_n), ("batch size", batch_n), ("initial", initial_n)) if not v]
        st.success(f"started {untrusted.md(job.title)} ({len(job.run_ids)} run(s)): rounds {lp.rounds}, batch size "
                   f"{lp.batch_size}, initial {lp.initial}" + (f" ({', '.join(kept)} kept from the base)" if kept else "")
                   + (" · inputs from the runs folder's snapshot" if job.inputs.startswith("snapshot") else ""))
    except (BalpmError, ValueError, OSError) as exc:
        st.error(untrusted.md(exc))

my_jobs = state.jobs_for(root)
active = any(not j.finished for j in my_jobs)


@st.fragment(run_every=2.0 if active else None)
def _jobs_panel() -> None:
    js = state.jobs_for(root)
    if not js:
        return
    st.markdown("**Background jobs**")
    for j in js[:8]:
        p = jobs.progress(j)
        label = jobs.status_text(j, p)
        n_done = sum(v == "complete" for v in p["states"].values())
        st.progress(p["fraction"], text=f"{untrusted.md(j.title)}: {untrusted.md(label)} · {n_done}/{len(j.run_ids)} runs"
                                        f" · {p['done_rounds']}/{p['total_rounds']} rounds")
        if p["failed"]:
            st.error(untrusted.md(f"{j.title}: {label}"))
            st.code(untrusted.text(jobs.log_tail(j)), language="text")
    if active and all(j.finished for j in js):
        st.rerun()  # refresh the run table once everything is done


_jobs_panel()
