"""Dashboard data preparation (dashboard.frames) and figures (dashboard.plots), without Streamlit.

The replay is checked against the engine itself: a BAL-PM selection on random data with duplicated
prompts, replayed from its step-0 pool table and increments, must reproduce every pick's score,
count and entropy and make every pick the argmax of the replayed scores.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.io as pio
import pytest
from scipy.spatial.distance import pdist

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from balpm.evidence import metrics
from balpm.acquisition import greedy_select, prepare_balpm
from balpm_dashboard import frames, plots


def _engine_round(minimize: bool = False, d: float = 1.0, beta: float = 0.5, seed: int = 0):
    """One BAL-PM round on random data as the loop would record it (pool_scores, increments, picks)."""
    rng = np.random.default_rng(seed)
    n_prompts = 120
    prompts = rng.normal(size=(n_prompts, 3))
    which = rng.integers(0, n_prompts, size=400)  # ~3 comparisons per prompt: duplicated rows
    pool = prompts[which]
    labelled = prompts[rng.integers(0, n_prompts, size=40)]
    u = rng.uniform(0, 0.3, size=len(pool))
    rnd = prepare_balpm(u, pool, labelled, 25, beta=beta, k=7, d=d, minimize=minimize)
    sel = greedy_select(rnd, 25)
    offset = 1000  # pool_index differs from position, as in a later round of a real run
    table = rnd.pool_table()
    scores = pd.DataFrame({"pool_index": np.arange(len(pool)) + offset, "pair_id": [f"p{i}" for i in range(len(pool))],
                           "prompt_id": [f"q{w}" for w in which]})
    for c in table.columns:
        scores[c] = table[c].to_numpy()
    inc = pd.DataFrame({"step": sel.increments["step"], "pool_index": sel.increments["index"] + offset})
    picks = sel.steps.rename(columns={"index": "pos"}).assign(round=3)
    picks["pool_index"] = picks["pos"] + offset
    picks["prompt_id"] = [f"q{which[p]}" for p in picks["pos"]]
    return scores, inc, picks, sel


@pytest.mark.parametrize("minimize,d", [(False, 1.0), (True, 2.0)])
def test_replay_reproduces_every_greedy_pick_of_the_engine(minimize, d):
    beta = 0.5
    scores, inc, picks, sel = _engine_round(minimize=minimize, d=d, beta=beta)
    sign = frames.score_sign(minimize)
    inc_pos = frames.increments_by_position(scores, inc)
    assert len(inc_pos) == len(inc) > 0
    for s in range(len(picks)):
        rep = frames.replay_step(scores, inc, picks, s, beta=beta, d=d, sign=sign, inc_pos=inc_pos)
        assert rep.exact and rep.step == s
        f = rep.frame
        cur = f[f["status"] == "current"]
        assert len(cur) == 1 and int(cur["pool_index"].iloc[0]) == int(picks["pool_index"].iloc[s])
        row = sel.steps.iloc[s]
        np.testing.assert_allclose(cur["final"].iloc[0], row["score"], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(cur["h"].iloc[0], row["h"], rtol=1e-12, atol=1e-12)
        assert int(cur["n"].iloc[0]) == int(row["n"])
        # the pick is the argmax of the replayed scores over the items still in the pool
        alive = f[f["status"] != "picked"]
        assert alive["final"].max() == pytest.approx(cur["final"].iloc[0], abs=1e-12)
        assert (f["status"] == "picked").sum() == s
        # "raised" are exactly the increments of this step
        raised = set(f.loc[f["raised"], "pool_index"])
        assert raised == set(inc.loc[inc["step"] == s, "pool_index"])
    # step 0 equals the engine's own pool table
    rep0 = frames.replay_step(scores, inc, picks, 0, beta=beta, d=d, sign=sign)
    np.testing.assert_allclose(rep0.frame["final"], scores["score"], rtol=1e-12)


def test_replay_without_increments_shows_the_round_start_scores():
    scores, _, picks, _ = _engine_round()
    rep = frames.replay_step(scores, None, picks, 5, beta=0.5, d=1.0)
    assert not rep.exact
    np.testing.assert_allclose(rep.frame["h"], scores["h"])
    assert (rep.frame["status"] == "picked").sum() == 5
    # a step past the end is clamped to the last pick
    assert frames.replay_step(scores, None, picks, 999, beta=0.5, d=1.0).step == len(picks) - 1


@pytest.mark.parametrize("minimize", [False, True])
def test_anatomy_parts_sum_to_the_score(minimize):
    beta = 0.5
    _, _, picks, sel = _engine_round(minimize=minimize, beta=beta)
    anat = frames.anatomy_frame(picks, beta=beta, sign=frames.score_sign(minimize))
    np.testing.assert_allclose(anat["u"] + anat["dist"] + anat["count"], sel.steps["score"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(anat["dist"] + anat["count"], frames.score_sign(minimize) * sel.steps["beta_h"],
                               rtol=1e-10, atol=1e-12)
    # the count term never raises the score of a maximiser (digamma(n+1) >= digamma(1) ... with n >= 1 it is >= 0)
    if not minimize:
        assert (anat.loc[anat["n"] >= 1, "count"] <= 0).all()
    assert list(anat["pick"]) == list(range(1, len(picks) + 1))


def test_anatomy_of_a_policy_without_entropy_is_its_uncertainty():
    picks = pd.DataFrame({"round": 0, "step": [1, 0], "pool_index": [5, 9], "prompt_id": ["a", "b"],
                          "score": [0.2, 0.3], "u": [0.2, 0.3], "log_dist": np.nan, "count_term": np.nan,
                          "h": np.nan, "beta_h": np.nan, "ratio": np.nan, "n": np.nan, "radius": np.nan})
    anat = frames.anatomy_frame(picks, beta=0.01)
    assert list(anat["pool_index"]) == [9, 5]
    assert (anat["dist"] == 0).all() and (anat["count"] == 0).all()
    np.testing.assert_allclose(anat["u"], anat["score"])


def test_ratio_by_round_is_median_and_max():
    rng = np.random.default_rng(4)
    acq = pd.DataFrame({"round": np.repeat([0, 1, 2], 11), "ratio": rng.uniform(-1, 1, 33),
                        "u": 0.0, "score": 1.0})
    out = frames.ratio_by_round(acq)
    for r in range(3):
        vals = acq.loc[acq["round"] == r, "ratio"]
        row = out[out["round"] == r].iloc[0]
        assert row["median"] == pytest.approx(np.median(vals)) and row["max"] == pytest.approx(vals.max())
    # without a ratio column (BALD), U/score is used
    bald = pd.DataFrame({"round": [0, 0], "ratio": np.nan, "u": [0.2, 0.1], "score": [0.4, 0.1]})
    np.testing.assert_allclose(frames.ratio_by_round(bald)[["median", "max"]].to_numpy(), [[0.75, 1.0]])


def test_redundancy_counts_and_distances():
    rng = np.random.default_rng(5)
    feats = rng.normal(size=(10, 4))
    ids = [f"q{i}" for i in range(10)]
    acq = pd.DataFrame({"round": [0, 0, 0, 0, 1, 1, 1],
                        "step": [0, 1, 2, 3, 0, 1, 2],
                        "prompt_id": ["q1", "q1", "q2", "q3", "q3", "q4", "q4"]})
    red = frames.redundancy_frame(acq, ids, feats)
    assert red["unique_prompts"].tolist() == [3, 2]
    assert red["cumulative_unique_prompts"].tolist() == [3, 4]
    assert red["comparisons_per_prompt"].tolist() == pytest.approx([4 / 3, 1.5])
    assert red["cumulative_comparisons_per_prompt"].tolist() == pytest.approx([4 / 3, 7 / 4])
    assert red["mean_pairwise_distance"].iloc[0] == pytest.approx(pdist(feats[[1, 1, 2, 3]]).mean())
    assert red["mean_pairwise_distance"].iloc[1] == pytest.approx(pdist(feats[[3, 4, 4]]).mean())


def test_curve_stats_mean_sem_and_smoothing():
    rng = np.random.default_rng(6)
    curves = []
    raw = {}
    for seed in range(4):
        y = rng.normal(size=6)
        raw[seed] = y
        curves.append(("balpm", seed, pd.DataFrame({"round": range(6), "labelled": np.arange(6) * 10 + 10,
                                                     "test_log_likelihood": y})))
    st = frames.curve_stats(curves, "test_log_likelihood")
    mat = np.vstack([raw[s] for s in range(4)])
    np.testing.assert_allclose(st["mean"], mat.mean(0))
    np.testing.assert_allclose(st["sem"], mat.std(0, ddof=1) / 2.0)
    sm = frames.curve_stats(curves, "test_log_likelihood", smooth=3)
    smoothed = np.vstack([metrics.smooth(raw[s], 3) for s in range(4)])
    np.testing.assert_allclose(sm["mean"], smoothed.mean(0))
    assert sm["mean"].iloc[2] == pytest.approx(mat[:, :3].mean())
    # a seed that is behind (running) restricts the curve to the sizes every seed has
    curves.append(("balpm", 9, pd.DataFrame({"round": [0, 1], "labelled": [10, 20], "test_log_likelihood": [0.0, 0.0]})))
    assert frames.curve_stats(curves, "test_log_likelihood")["labelled"].tolist() == [10, 20]


def test_picks_diff_entered_left_shared():
    base = pd.DataFrame({"round": [0, 0, 1], "prompt_id": ["a", "b", "c"]})
    variant = pd.DataFrame({"round": [0, 1, 1, 1], "prompt_id": ["a", "d", "e", "b"]})
    summary, detail = frames.picks_diff(base, variant)
    ch = dict(zip(detail["prompt_id"], detail["change"]))
    assert ch == {"a": "shared", "b": "shared", "c": "left", "d": "entered", "e": "entered"}
    assert summary.set_index("round").loc[1, "entered"] == 2
    assert summary.set_index("round").loc[1, "left"] == 1


def test_inspect_rows_join_texts_scores_and_pick():
    pool = pd.DataFrame({"pool_index": [0, 1, 2], "pair_id": ["p0", "p1", "p2"], "prompt_id": ["q0", "q1", "q1"],
                         "initial": [True, False, False]})
    table = pd.DataFrame({"pair_id": ["p0", "p1", "p2"], "prompt_id": ["q0", "q1", "q1"],
                          "prompt": ["P0", "P1", "P1"], "chosen": ["c0", "c1", "c2"], "rejected": ["r0", "r1", "r2"]})
    acq = pd.DataFrame({"round": [0], "step": [4], "pool_index": [2], "pair_id": ["p2"], "prompt_id": ["q1"],
                        "score": [1.0], "u": [0.5], "log_dist": [1.0], "count_term": [0.5], "h": [0.5],
                        "beta_h": [0.5], "ratio": [0.5], "n": [3.0], "radius": [0.1]})
    sc = pd.DataFrame({"pool_index": [1, 2], "u": [0.4, 0.5], "radius": 0.1, "n0": 1, "log_dist": 1.0,
                       "count_term": 0.5, "h": 0.5, "score": [0.9, 1.0], "p0": [0.2, 0.7], "p1": [0.4, 0.9]})
    rows = frames.inspect_rows([2, 0, 1], pool, table, acq, {0: sc}, beta=0.01).set_index("pool_index")
    assert rows.loc[2, "chosen"] == "c2" and rows.loc[2, "round_picked"] == 0 and rows.loc[2, "step_picked"] == 4
    assert rows.loc[2, "p_mean"] == pytest.approx(0.8) and rows.loc[2, "n_at_pick"] == 3.0
    assert rows.loc[0, "round_picked"] == -1 and np.isnan(rows.loc[0, "u"])  # initial: never scored
    assert rows.loc[1, "u"] == pytest.approx(0.4) and pd.isna(rows.loc[1, "step_picked"])
    assert rows.loc[2, "beta_h"] == pytest.approx(0.005)


def test_parse_seeds():
    assert frames.parse_seeds("0, 2, 5-7") == [0, 2, 5, 6, 7]
    for bad in ("", "a", "3-1", "-2"):
        with pytest.raises(ValueError):
            frames.parse_seeds(bad)


def _map_frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rnd = np.full(n, np.nan)
    rnd[:20] = -1
    rnd[20:60] = rng.integers(0, 5, 40)
    return pd.DataFrame({"pool_index": np.arange(n), "prompt_id": [f"q{i}" for i in range(n)],
                         "x": rng.normal(size=n).astype(np.float32), "y": rng.normal(size=n).astype(np.float32),
                         "round": rnd})


def test_prompt_map_is_webgl_with_pool_indices_and_binary_arrays():
    mf = _map_frame(92_000)
    fig = plots.prompt_map(mf, title="t")
    assert all(t.type == "scattergl" for t in fig.data)
    assert sum(len(t.x) for t in fig.data) == 92_000
    ids = np.concatenate([np.asarray(t.customdata) for t in fig.data])
    assert sorted(ids.tolist()) == list(range(92_000))
    acquired = fig.data[2]
    assert len(acquired.x) == 40 and np.all(np.diff(np.asarray(acquired.marker.color)) >= 0)
    spec = pio.to_json(fig, validate=False)
    assert '"bdata"' in spec and len(spec) < 4_000_000  # typed binary arrays, not 92k JSON numbers each


def test_replay_map_rings_the_current_pick():
    scores, inc, picks, _ = _engine_round()
    coords = pd.DataFrame({"pool_index": scores["pool_index"], "prompt_id": scores["prompt_id"],
                           "x": np.arange(len(scores), dtype=np.float32), "y": np.zeros(len(scores), np.float32)})
    rep = frames.replay_step(scores, inc, picks, 4, beta=0.5, d=1.0)
    fig = plots.replay_map(coords, rep.frame, color_by="beta_h")
    names = [t.name for t in fig.data]
    cur = fig.data[names.index("current pick")]
    assert list(cur.customdata) == [int(picks["pool_index"].iloc[4])]
    assert cur.x[0] == float(coords.set_index("pool_index").loc[int(picks["pool_index"].iloc[4]), "x"])
    earlier = fig.data[names.index("picked earlier in this batch")]
    assert sorted(earlier.customdata) == sorted(picks["pool_index"].iloc[:4])
    cand = fig.data[names.index("candidates")]
    col = np.asarray(cand.marker.color, dtype=float)
    assert np.all(np.diff(col) >= 0)  # highest score drawn last
    assert len(cand.x) == len(scores) - 5


def test_learning_curves_figure_draws_band_and_bracket():
    st = pd.DataFrame({"label": ["random"] * 3 + ["balpm"] * 3, "labelled": [10, 20, 30] * 2,
                       "mean": [0.1, 0.2, 0.3, 0.15, 0.3, 0.35], "sem": [0.01] * 6, "seeds": 3})
    br = {"test_log_likelihood": {"target": 0.3, "x_policy": 20.0, "x_baseline": 30.0, "text": "33% fewer"}}
    fig = plots.learning_curves_figure({"test_log_likelihood": st, "test_accuracy": st}, brackets=br)
    fills = [t for t in fig.data if t.fill == "toself"]
    assert len(fills) == 4
    band = fills[0]
    assert max(band.y) == pytest.approx(0.31) and min(band.y) == pytest.approx(0.09)
    bracket = [t for t in fig.data if t.mode == "lines+markers" and list(t.x) == [20.0, 20.0, 30.0, 30.0]]
    assert len(bracket) == 1
    assert any(a.text == "33% fewer" for a in fig.layout.annotations)
    assert "no complete rounds" in plots.learning_curves_figure({}).layout.annotations[0].text


def test_other_figures_build():
    _, _, picks, _ = _engine_round()
    anat = frames.anatomy_frame(picks, beta=0.5)
    fig = plots.anatomy_bars(anat)
    assert fig.layout.barmode == "relative" and len(fig.data) == 7  # 3 parts x (values, shares) + score
    ratio = frames.ratio_by_round(picks)
    assert len(plots.ratio_figure({"balpm": ratio}).data) == 2
    red = frames.redundancy_frame(picks).assign(seed=0)
    assert len(plots.redundancy_figure({"balpm": red}).data) == 3  # distance panel empty without features
    summary, _ = frames.picks_diff(picks, picks.iloc[:10])
    assert len(plots.diff_figure(summary).data) == 3
    colors = plots.policy_colors(["random", "bald", "balpm", "balpm beta=0.1"])
    assert colors["balpm"] == plots.BASE_COLORS["balpm"] and len(set(colors.values())) == 4


def test_background_runs_start_in_the_runs_folder_unless_outside_data_is_allowed(tmp_path, monkeypatch):
    """A job whose inputs are not in a snapshot runs ``balpm run`` in the runs folder (a typed config's
    relative paths were checked against it); only with ``--allow-outside-data`` does the Runs page pass the
    folder the dashboard was started in. Jobs never run from the checkout or wherever Python happens to be."""
    import sys

    from balpm.config import RunConfig
    from balpm_dashboard import jobs

    launch = tmp_path / "project"
    launch.mkdir()
    root = tmp_path / "runs"
    monkeypatch.setenv("BALPM_LAUNCH_DIR", str(launch))
    cfg = RunConfig().replace(data={"paths": ("data/x.jsonl",)})
    job = jobs.start_run(root, cfg, launch=False)
    assert job.cwd == root.resolve() and job.inputs == "cli" and job.cmd[1:4] == ["-m", "balpm", "run"]
    assert jobs.start_run(root, cfg, launch=False, cwd=jobs.launch_dir()).cwd == launch
    probe = jobs.Job(job_id="j", kind="run", title="cwd probe", root=root, run_ids=[],
                     cmd=[sys.executable, "-c", "import os; print(os.getcwd())"], log=root / "log.txt")
    jobs._launch(probe, job.cwd).proc.wait(timeout=60)
    assert probe.log.read_text().strip() == str(root.resolve())


def test_one_colour_per_policy_and_ablation_whatever_else_the_folder_holds():
    """A label's colour depends on the label alone: the same in any subset and order of labels (two runs
    folders), in another process (another hash seed), BAL-PM red on real data and in the teaching world, an
    ablation one colour whatever its base's knobs."""
    import itertools
    import json
    import subprocess

    from balpm.experiment import runs
    from balpm.config import RunConfig
    from balpm.experiment.presets import apply_preset

    teaching = apply_preset(RunConfig())
    label = {name: runs.policy_label(cfg) for name, cfg in {
        "real balpm": RunConfig().replace(data={"paths": ("x.json",)}),
        "teaching balpm": teaching,
        "teaching no U": teaching.replace(acquisition={"uncertainty": "none"}),
        "real no U": RunConfig().replace(acquisition={"uncertainty": "none"}),
        "teaching minimiser": teaching.replace(acquisition={"minimize_entropy": True}),
        "teaching beta grid": teaching.replace(acquisition={"beta": 0.2}),
    }.items()}
    assert label["teaching balpm"] == "balpm beta=0.1" and label["teaching no U"] == "balpm beta=0.1 uncertainty=none"
    labels = ["random", "bald", "full", *label.values(), "softmax_bald coldness=3", "my variant"]
    alone = {lab: plots.policy_colors([lab])[lab] for lab in labels}
    for r in (2, 3):
        for subset in itertools.permutations(labels, r):
            assert plots.policy_colors(list(subset)) == {lab: alone[lab] for lab in subset}
    assert plots.policy_colors(labels[::-1]) == plots.policy_colors(labels) == alone
    red = plots.BASE_COLORS["balpm"]
    assert alone[label["real balpm"]] == red
    r, g, b = (int(alone[label["teaching balpm"]][i:i + 2], 16) for i in (1, 3, 5))
    assert r > 2 * max(g, b)  # the teaching world's BAL-PM is red too (darker, so a beta grid keeps both apart)
    assert alone[label["teaching no U"]] == alone[label["real no U"]] == plots.ABLATION_COLORS["uncertainty=none"]
    assert alone[label["teaching minimiser"]] == plots.ABLATION_COLORS["minimize_entropy=True"]
    used = set(plots.BASE_COLORS.values()) | set(plots.ABLATION_COLORS.values())
    assert alone["my variant"] in plots.EXTRA_COLORS and alone[label["teaching beta grid"]] not in used
    # another interpreter with another str-hash seed gives the same colours (no order, no salted hash)
    code = ("import json, sys; sys.path.insert(0, '.'); from balpm_dashboard import plots; "
            f"print(json.dumps(plots.policy_colors({labels!r})))")
    other = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120,
                           cwd=Path(__file__).resolve().parents[1], env={**__import__("os").environ, "PYTHONHASHSEED": "7"})
    assert json.loads(other.stdout) == alone, other.stderr
