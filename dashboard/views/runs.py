"""Runs: every run folder found, its status, config and hashes; pick runs to compare; start new ones."""
from __future__ import annotations

import json

import streamlit as st

from balpm import runs
from balpm.config import POLICIES, RunConfig
from balpm.errors import BalpmError
from dashboard import frames, jobs, state

root = state.runs_root()
infos = state.run_infos(root)

st.title("Runs")
st.caption(f"Every run folder in `{root}`, read through `balpm.runs`. "
           "Pick the runs the other pages compare, or start new ones in the background.")

# ---- overview --------------------------------------------------------------------------------
counts = {s: sum(i.state == s for i in infos) for s in ("complete", "running", "failed", "broken")}
c = st.columns(5)
c[0].metric("run folders", len(infos))
for col, s in zip(c[1:], ("complete", "running", "failed", "broken")):
    col.metric(s, counts[s])

if not infos:
    st.info(f"No runs in `{root}` yet. Start one below, or from a terminal: "
            f"`balpm demo` or `balpm run --runs-dir {root}`.")
else:
    table = frames.runs_frame(infos)
    st.dataframe(
        table, hide_index=True, width="stretch",
        column_config={
            "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0, format="percent"),
            "problem": st.column_config.TextColumn("problem", width="large"),
            "setting": None,
        },
        key="runs_table",
    )
    bad = [i for i in infos if i.state in ("broken", "failed") or (i.state == "running" and i.alive is False)]
    if bad:
        with st.expander(f"{len(bad)} run(s) need attention", expanded=True):
            for i in bad:
                if i.state == "broken":
                    st.warning(f"**{i.run_id}** is broken: {i.reason}")
                elif i.state == "failed":
                    st.error(f"**{i.run_id}** failed after round {i.last_round}: {i.error}")
                else:
                    st.warning(f"**{i.run_id}** stopped at round {i.last_round} (process gone): "
                               f"`balpm run --resume --config {i.path}/config.yaml --runs-dir {root}`")

# ---- what to compare -------------------------------------------------------------------------
st.subheader("Compare")
ok = state.usable(infos)
if not ok:
    st.caption("Runs appear here once they have completed a round.")
else:
    groups: dict[tuple, list[runs.RunInfo]] = {}
    for i in ok:
        groups.setdefault((i.data_hash, i.setting), []).append(i)
    keys = sorted(groups, key=lambda k: -len(groups[k]))

    def _group_name(k: tuple) -> str:
        g = groups[k]
        cfg, _ = state.config(root, g[0].run_id)
        lp = cfg.loop
        return (f"data {k[0] or '?'} · {len(g)} runs · rounds {lp.rounds} · batch {lp.batch_size} · "
                f"initial {lp.initial} · K {cfg.model.ensemble_size}")

    current = state.compared(infos)
    cur_key = (current[0].data_hash, current[0].setting) if current else keys[0]
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
    st.caption(f"{len(chosen)} run(s) compared on the other pages: " + ", ".join(f"`{r}`" for r in chosen))

# ---- one run in detail -----------------------------------------------------------------------
if infos:
    st.subheader("Details")
    ids = [i.run_id for i in infos]
    rid = st.selectbox("run", ids, key="detail_run")
    info = next(i for i in infos if i.run_id == rid)
    d1, d2 = st.columns(2)
    with d1:
        st.markdown(f"**state** `{info.state}` · **rounds done** {info.last_round + 1}/{info.rounds}")
        st.markdown(f"**data hash** `{info.data_hash}` · **feature hash** `{info.feature_hash}` · "
                    f"**config hash** `{info.config_hash}`")
        if info.reason or info.error:
            st.error(info.reason or info.error)
        status_path = info.path / "status.json"
        if status_path.is_file():
            try:
                st.json(json.loads(status_path.read_text()), expanded=False)
            except ValueError:
                st.warning("status.json is not valid JSON (half-written?)")
    with d2:
        cfg_path = info.path / "config.yaml"
        if cfg_path.is_file():
            st.code(cfg_path.read_text(errors="replace"), language="yaml", height=360)
        else:
            st.warning("config.yaml missing")

    with st.expander("Open a file by path (inside the runs folder only)"):
        typed = st.text_input("path relative to the runs folder", key="typed_path",
                              placeholder=f"{rid}/status.json")
        if typed:
            try:
                p = runs.safe_path(root, typed)
            except BalpmError as exc:
                st.error(str(exc))
            else:
                if p.is_file() and p.suffix in (".json", ".yaml", ".yml", ".txt") and p.stat().st_size < 2_000_000:
                    st.code(p.read_text(errors="replace"))
                elif p.is_dir():
                    st.write(sorted(x.name for x in p.iterdir())[:200])
                else:
                    st.info("not a readable text file (json, yaml, txt) inside the runs folder")

# ---- start new runs --------------------------------------------------------------------------
st.subheader("Start a run or a sweep")
bases = {"synthetic teaching world (small)": None}
for i in ok:
    bases.setdefault(f"config of {i.run_id}", i.run_id)
with st.form("new_run"):
    base_name = st.selectbox("start from", list(bases), key="new_base")
    conf_file = st.text_input("... or a config YAML inside the runs folder (optional)", key="new_conf")
    f1, f2, f3 = st.columns(3)
    policies = f1.multiselect("policies", list(POLICIES), default=["random", "bald", "balpm"], key="new_policies")
    seeds_text = f2.text_input("seeds", "0", key="new_seeds", help="e.g. 0,1,2 or 0-4")
    workers = f3.number_input("parallel processes", 1, 16, 1, key="new_workers")
    g1, g2, g3 = st.columns(3)
    rounds_n = g1.number_input("rounds", 0, 500, 0, key="new_rounds", help="0: keep the base config's")
    batch_n = g2.number_input("batch size", 0, 100_000, 0, key="new_batch", help="0: keep the base config's")
    initial_n = g3.number_input("initial", 0, 100_000, 0, key="new_initial", help="0: keep the base config's")
    submitted = st.form_submit_button("Start in the background", type="primary")


def _small_teaching() -> RunConfig:
    """A teaching-world run that finishes in about a minute on a laptop (tiny reward model)."""
    return RunConfig().replace(model={"hidden": (32, 8), "ensemble_size": 3, "max_epochs": 20, "lr": 3e-3,
                                      "batch_size": 16, "init_std": 0.1},
                               loop={"initial": 30, "batch_size": 30, "rounds": 6})


if submitted:
    try:
        if conf_file:
            base = RunConfig.from_yaml(runs.safe_path(root, conf_file))
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
            job = jobs.start_run(root, base.replace(acquisition={"policy": policies[0]}, loop={"seed": seed_list[0]}))
        else:
            job = jobs.start_sweep(root, base, policies, seed_list, workers=int(workers))
        state.job_registry()[job.job_id] = job
        st.success(f"started {job.title} ({len(job.run_ids)} run(s))")
    except (BalpmError, ValueError, OSError) as exc:
        st.error(" ".join(str(exc).split()))

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
        if p["finished"]:
            label = "done" if p["returncode"] == 0 else f"exited with code {p['returncode']}"
        else:
            label = "running"
        st.progress(p["fraction"], text=f"{j.title}: {label} · {p['done_rounds']}/{p['total_rounds']} rounds")
        if p["finished"] and p["returncode"] not in (0, None):
            st.code(jobs.log_tail(j), language="text")
    if active and all(j.finished for j in js):
        st.rerun()  # refresh the run table once everything is done


_jobs_panel()
