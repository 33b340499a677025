"""The lesson page and its engine (balpm.evidence.lesson) on teaching-world runs the engine writes here, and the
ablation preset of ``balpm sweep --ablations``.

Every number the lesson states is checked against an independent computation from the run folders
(acquisitions joined to the dataset snapshot's cluster column), and the page's words are checked to
change when the runs do (a folder without seed 1, a folder without BALD).
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from balpm.config import RunConfig
from balpm.evidence import lesson, report, story
from balpm.experiment import ablations, loop, runs, sweep
from balpm.experiment.presets import apply_preset

APP = REPO / "dashboard" / "app.py"
TINY = RunConfig().replace(
    model={"hidden": (16,), "ensemble_size": 3, "max_epochs": 3, "lr": 3e-3, "batch_size": 16, "device": "cpu"},
    loop={"initial": 20, "batch_size": 20, "rounds": 3},
)
NO_U = next(v for v in ablations.PAPER if v.short == "no U")


@pytest.fixture(scope="module")
def private_tmp():
    """This module's folder outside pytest's ``pytest-N`` folders, which concurrent pytest runs delete (only the
    3 newest are kept) while a dashboard still reads them. Removed at teardown."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="balpm-lesson-test-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def runs_root(private_tmp) -> Path:
    root = private_tmp / "lesson-runs"
    root.mkdir()
    for seed in (0, 1):
        cfg = TINY.replace(loop={"seed": seed})
        table, features = loop.load_inputs(cfg, progress=False)  # the teaching world is drawn per seed
        for policy in ("random", "bald", "balpm"):
            loop.run(cfg.replace(acquisition={"policy": policy}), root, table=table, features=features, progress=False)
        for variant in ablations.variant_configs(cfg, "paper", [seed]):
            if variant.name == ablations.NAME_PREFIX + NO_U.short:
                loop.run(variant, root, table=table, features=features, progress=False)
    return root


def _plain(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text).replace("\u2060", "")


def _page_text(at: AppTest) -> str:
    parts = [e.value for e in (*at.markdown, *at.success, *at.error, *at.info, *at.caption)]
    return " ".join(_plain(p) for p in parts)


def _noisy_share_by_hand(root: Path, policy: str) -> float:
    """Share of ``policy``'s acquired labels in cluster 0 (chit-chat), mean over its seeds, from the files."""
    shares = []
    for info in runs.list_runs(root):
        run = runs.open_run(root, info.run_id)
        if info.policy != policy or ablations.is_variant(run.config):
            continue
        table = pd.read_parquet(root / "_datasets" / run.meta["data_hash"] / "table.parquet")
        cluster = table.set_index("pair_id")["cluster"]
        acq = run.acquisitions()
        shares.append(float((acq["pair_id"].map(cluster) == 0).mean()))
    return sum(shares) / len(shares)


def _walk(root: Path, monkeypatch) -> list[str]:
    """Every step of the lesson in AppTest, by its "next" button: the page's text per step."""
    monkeypatch.setenv("BALPM_RUNS_DIR", str(root))
    at = AppTest.from_file(str(APP), default_timeout=180)
    at.run()
    at.switch_page("views/lesson.py").run()
    texts = []
    while True:
        assert not at.exception, [e.message for e in at.exception]
        texts.append(_page_text(at))
        nxt = next(b for b in at.button if b.key == "lesson_next")
        if nxt.disabled:
            return texts
        nxt.click().run()


def _step(root: Path, monkeypatch, step: int) -> str:
    """One step of the lesson (0-based), opened directly: its text."""
    monkeypatch.setenv("BALPM_RUNS_DIR", str(root))
    at = AppTest.from_file(str(APP), default_timeout=180)
    at.session_state["lesson_step"] = step
    at.run()
    at.switch_page("views/lesson.py").run()
    assert not at.exception, [e.message for e in at.exception]
    return _page_text(at)


def test_lesson_facts_come_from_the_runs(runs_root):
    facts = lesson.build(runs_root)
    assert facts.teaching
    assert facts.regions[0] == "chit-chat" and facts.noisy_region == 0  # named and found from the data
    shares = facts.shares.set_index(["label", "cluster"])["share"]
    assert shares[("bald", 0)] == pytest.approx(_noisy_share_by_hand(runs_root, "bald"))
    assert shares[("random", 0)] == pytest.approx(_noisy_share_by_hand(runs_root, "random"))
    # the verdicts are the report's on the policy runs (the variant left out), worded by balpm.evidence.story
    loaded, _ = report.collect([runs_root])
    policy = [r for r in loaded if not ablations.is_variant(runs.open_run(runs_root, r.run_id).config)]
    assert len(policy) == 6
    assert facts.verdicts == story.verdict_lines(report.summarize(policy), facts.setting)
    [nou] = facts.ablation_verdicts
    assert nou["variant"] == "no U" and nou["n"] == 2 and nou["paired"]


def test_lesson_walks_every_step_and_its_words_follow_the_runs(runs_root, private_tmp, monkeypatch):
    tmp_path = private_tmp / "walk"
    steps = _walk(runs_root, monkeypatch)
    assert len(steps) == 6
    bald = _noisy_share_by_hand(runs_root, "bald")
    assert f"BALD put {bald:.0%} of its acquired labels in chit-chat" in steps[1]
    assert "topic 1" in steps[0] and "chit-chat" in steps[0]
    assert "no U:" in steps[4] and "2 paired seeds" in steps[4]
    assert all(f"{n} 2 seeds" in steps[3] for n in ("BALD", "BAL-PM", "random"))

    # other runs, other words: seed 0 only
    one_seed = tmp_path / "seed0"
    shutil.copytree(runs_root, one_seed, ignore=lambda d, names: [n for n in names if re.match(r".*-s1-", n)])
    bald0 = _noisy_share_by_hand(one_seed, "bald")
    step1 = _step(one_seed, monkeypatch, 1)
    assert f"BALD put {bald0:.0%} of its acquired labels" in step1 and step1 != steps[1]
    step3 = _step(one_seed, monkeypatch, 3)
    assert all(f"{n} 1 seed," in step3 or f"{n} 1 seed)" in step3 for n in ("BALD", "BAL-PM", "random"))
    # and without BALD the step says so instead of a number
    no_bald = tmp_path / "nobald"
    shutil.copytree(runs_root, no_bald, ignore=lambda d, names: [n for n in names if n.startswith("bald-")])
    assert "No BALD runs in this folder" in _step(no_bald, monkeypatch, 1)


def test_cluster_names_never_print_as_numbers():
    assert lesson.cluster_name(0.0, ["chit-chat", "topic 1"]) == "chit-chat"
    assert lesson.cluster_name(3.0) == "cluster 3"
    assert lesson.cluster_name("news") == "news"


def test_sweep_ablations_paper_preset_covers_every_seed():
    base = apply_preset(RunConfig())
    configs = sweep.with_ablations(sweep.expand(base, ["random"], [0, 1]), base, "paper", [0, 1])
    names = {c.name for c in configs if c.name}
    want = {ablations.NAME_PREFIX + v.short for v in ablations.PAPER} - {ablations.NAME_PREFIX + "β=0.1"}
    assert names == want  # the base's own beta (0.1, the teaching preset) is the base, not a variant
    for name in want:
        assert sorted(c.loop.seed for c in configs if c.name == name) == [0, 1]
    bases = [c for c in configs if c.acquisition.policy == "balpm" and not c.name]
    assert sorted(c.loop.seed for c in bases) == [0, 1]  # the paired reference is part of the sweep
    assert all(ablations.is_variant(c) for c in configs if c.name)
    assert not any(ablations.is_variant(c) for c in bases)


def test_sweep_unknown_ablation_preset_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "balpm", "sweep", "--ablations", "nope", "--seeds", "0", "--runs-dir",
                           str(tmp_path)], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: unknown ablation preset 'nope'; choose one of paper"
    assert not [p for p in tmp_path.iterdir() if not p.name.startswith((".", "_"))]  # nothing was run


def test_ablations_page_switches_finished_variants_and_runs_a_missing_one_for_every_seed(runs_root, private_tmp,
                                                                                        monkeypatch):
    import time

    root = private_tmp / "ablation-runs"
    shutil.copytree(runs_root, root)
    monkeypatch.setenv("BALPM_RUNS_DIR", str(root))
    at = AppTest.from_file(str(APP), default_timeout=180)
    at.run()
    # variants stay out of the other pages' default comparisons
    at.switch_page("views/learning_curves.py").run()
    assert "balpm uncertainty=none" not in at.selectbox(key="lc_base").options
    at.switch_page("views/ablations.py").run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.get("button_group")[0].options == ["no U"]  # the finished variant, one click away
    verdict = _plain(" ".join(b.value for b in (*at.success, *at.error, *at.info)))
    assert "no U against balpm" in verdict and "2 paired seeds" in verdict
    at.selectbox(key="abl_set_missing").set_value("H minimiser").run()
    next(b for b in at.button if b.key == "abl_set_run").click().run()
    assert not at.exception, [e.message for e in at.exception]
    want = [c for c in ablations.variant_configs(runs.open_run(root, runs.default_run_id(
        TINY.replace(acquisition={"policy": "balpm"}))).config, "paper", [0, 1]) if c.name.endswith("H minimiser")]
    t0 = time.time()
    while time.time() - t0 < 300 and not all(
            (root / runs.default_run_id(c)).is_dir() and runs.inspect_run(root / runs.default_run_id(c)).state
            in ("complete", "failed") for c in want):
        time.sleep(1)
    for c in want:  # every base seed, each on its own seed's world (the base's data hash)
        run = runs.open_run(root, runs.default_run_id(c))
        base = runs.open_run(root, runs.default_run_id(TINY.replace(acquisition={"policy": "balpm"},
                                                                    loop={"seed": c.loop.seed})))
        assert runs.inspect_run(run.path).state == "complete"
        assert run.meta["data_hash"] == base.meta["data_hash"] and run.pool().equals(base.pool())
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    at.get("button_group")[0].set_value("H minimiser").run()
    verdict = _plain(" ".join(b.value for b in (*at.success, *at.error, *at.info)))
    assert "H minimiser against balpm" in verdict and "2 paired seeds" in verdict


def test_inspector_names_the_region_and_counts_picks_as_the_replay():
    from balpm_dashboard import frames

    pool = pd.DataFrame({"pool_index": [0, 1], "pair_id": ["a", "b"], "prompt_id": ["q0", "q1"], "initial": [False, False]})
    table = pd.DataFrame({"pair_id": ["a", "b"], "prompt_id": ["q0", "q1"], "prompt": ["P0", "P1"], "chosen": ["c", "c"],
                          "rejected": ["r", "r"], "source": ["synthetic"] * 2, "cluster": [0.0, 3.0]})
    acq = pd.DataFrame({"round": [4], "step": [2], "pool_index": [1], "pair_id": ["b"], "prompt_id": ["q1"],
                        "score": [1.0], "u": [0.5], "log_dist": [1.0], "count_term": [0.5], "h": [0.5],
                        "beta_h": [0.5], "ratio": [0.5], "n": [3.0]})
    rows = frames.inspect_rows([0, 1], pool, table, acq, {}).set_index("pool_index")
    assert rows.loc[0, "cluster"] == "chit-chat" and rows.loc[1, "cluster"] == "topic 3"
    assert rows.loc[1, "step_picked"] == 2 and rows.loc[1, "pick_in_batch"] == 3  # "pick 3/" in the replay


def test_verdict_cells_are_coloured_by_verdict():
    from balpm_dashboard import frames

    assert "#15803d" in frames.verdict_css("better")
    assert "#b91c1c" in frames.verdict_css("worse (unpaired)")
    assert "#4b5563" in frames.verdict_css("no detectable difference")
    assert frames.verdict_css("(baseline)") == ""
    shown = pd.DataFrame({"policy": ["bald", "balpm"], "verdict (AULC)": ["worse", "better"], "final verdict": ["", "better"]})
    ctx = frames.verdict_styled(shown)._compute().ctx  # (row, column) -> CSS the table cell gets
    colour = {k: dict(v).get("color") for k, v in ctx.items()}
    assert colour == {(0, 1): "#b91c1c", (1, 1): "#15803d", (1, 2): "#15803d"}


def test_u_share_of_the_score_stays_in_0_1_where_u_over_score_explodes():
    from balpm_dashboard import frames, plots

    # second pick: score 1e-6 (U and -beta*H nearly cancel, the minimiser): U / score = 5e5
    acq = pd.DataFrame({"round": [0, 0, 1], "u": [0.3, 0.5, 0.2], "beta_h": [0.1, -0.499999, 0.6],
                        "score": [0.4, 1e-6, 0.8], "ratio": [0.75, 5e5, 0.25]})
    assert frames.ratio_by_round(acq)["max"].iloc[0] == pytest.approx(5e5)
    share = frames.u_share_by_round(acq).set_index("round")
    assert share.loc[0, "max"] == pytest.approx(0.75) and share.loc[0, "median"] == pytest.approx((0.75 + 0.5 / 0.999999) / 2)
    assert share.loc[1, "max"] == pytest.approx(0.25)
    fig = plots.ratio_figure({"balpm": share.reset_index()}, share=True, ytitle="U's share")
    assert list(fig.layout.yaxis.range) == [0, 1.05] and not fig.layout.annotations  # nothing clipped
