"""Teaching worlds as a distribution (issue 13): the knobs do what their help says, the classic world stays
bit-identical, the prior is seeded, runs record the known truth (truth.json, noisy_share), `balpm worlds`."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
import yaml

from balpm.cli import main
from balpm.config import RunConfig
from balpm.data import load_for_config
from balpm.data.synthetic import TEACHING_CLUSTER_SIZES, teaching_world
from balpm.data.worlds import (
    CLASSIC,
    PRIOR,
    WorldSpec,
    loop_settings,
    parse_world,
    pool_comparisons,
    sample_worlds,
)
from balpm.errors import ConfigError
from balpm.experiment import loop, runs
from balpm.experiment.presets import TEACHING_PRESET, apply_preset

TIMING = ["train_seconds", "eval_seconds", "select_seconds"]


def _digest(table: pd.DataFrame, features) -> tuple[str, str]:
    return (hashlib.sha256(pd.util.hash_pandas_object(table, index=True).to_numpy().tobytes()).hexdigest()[:16],
            features.hash)


# Measured on the teaching world before the world knobs existed (balpm 3672363^): the numbers of docs/teaching-world.md
# were made on exactly these tables and features.
CLASSIC_DIGESTS = {0: ("843e7381a7401183", "e13c442a1e787283"), 5: ("fa9a31424c9a84aa", "828c8dbd902f202f")}


@pytest.mark.parametrize("seed", [0, 5])
def test_classic_world_is_bit_identical_whatever_names_it(seed):
    for world in (None, "", "classic", CLASSIC.spec(), "test=topics,cpp=4"):
        assert _digest(*teaching_world(seed, world=world)) == CLASSIC_DIGESTS[seed], world


def _pair_diff_norms(table, features):
    rows = pd.Series(np.arange(len(features.pair_ids)), index=features.pair_ids)[table["pair_id"]].to_numpy()
    d = features.pairs_N_2_D[rows, 0].astype(np.float64) - features.pairs_N_2_D[rows, 1]
    return np.linalg.norm(d, axis=1)


@pytest.mark.parametrize("ratio", [1.0, 20.0])
def test_contrast_ratio_is_the_realised_ratio_of_answer_differences(ratio):
    table, features = teaching_world(1, world=f"contrast_ratio={ratio}")
    norms = _pair_diff_norms(table, features)
    noisy = table["cluster"].to_numpy() == 0
    realised = norms[noisy].mean() / norms[~noisy].mean()
    assert realised == pytest.approx(ratio, rel=0.05)
    # the classic world's ratio is the knob's default (9) as measured
    t0, f0 = teaching_world(1)
    n0 = _pair_diff_norms(t0, f0)
    assert n0[t0["cluster"] == 0].mean() / n0[t0["cluster"] > 0].mean() == pytest.approx(CLASSIC.contrast_ratio, rel=0.03)


def test_noisy_flip_moves_the_noisy_region_from_coin_flips_to_a_taste():
    coin, _ = teaching_world(2)
    assert (coin.loc[coin["cluster"] == 0, "true_prob"] == 0.5).all()
    taste, _ = teaching_world(2, world="noisy_flip=0")
    half, _ = teaching_world(2, world="noisy_flip=0.5")
    chat_taste = taste.loc[taste["cluster"] == 0, "true_prob"].to_numpy()
    chat_half = half.loc[half["cluster"] == 0, "true_prob"].to_numpy()
    topics = coin.loc[coin["cluster"] > 0, "true_prob"].to_numpy()
    agree = lambda p: np.maximum(p, 1 - p).mean()
    # the region's taste is as clear as a typical topic's; half the noise halves the distance from 0.5
    assert agree(topics) - 0.05 < agree(chat_taste) < agree(topics) + 0.08
    assert agree(chat_half) - 0.5 == pytest.approx((agree(chat_taste) - 0.5) / 2, rel=0.05)
    # the topics are untouched by the noisy region's knob
    np.testing.assert_array_equal(taste.loc[taste["cluster"] > 0, "true_prob"], topics)


def test_test_weighting_topics_pool_and_ood():
    topics, _ = teaching_world(3)
    pool, _ = teaching_world(3, world="test=pool")
    ood, f_ood = teaching_world(3, world="test=ood")

    def shares(t, split):
        prompts = t[t["split"] == split].drop_duplicates("prompt_id")
        return prompts["cluster"].value_counts(normalize=True).reindex(range(6), fill_value=0).to_numpy()

    assert shares(topics, "test")[0] == 0 and np.allclose(shares(topics, "test")[1:], 0.2, atol=0.01)
    np.testing.assert_allclose(shares(pool, "test"), TEACHING_CLUSTER_SIZES, atol=0.01)
    np.testing.assert_allclose(shares(ood, "test"), TEACHING_CLUSTER_SIZES[::-1], atol=0.01)
    # the OOD test prompts sit where the ood split's do: shifted centres
    xy = pd.DataFrame(f_ood.prompts_P_D, index=f_ood.prompt_ids)
    chat_test = ood[(ood["split"] == "test") & (ood["cluster"] == 0)]["prompt_id"].unique()
    chat_pool = ood[(ood["split"] == "train") & (ood["cluster"] == 0)]["prompt_id"].unique()
    shift = xy.loc[chat_test].mean().to_numpy() - xy.loc[chat_pool].mean().to_numpy()
    np.testing.assert_allclose(shift, [0.5, -0.4], atol=0.12)


def test_imbalance_cpp_size_and_dim():
    table, features = teaching_world(4, world="imbalance=1,cpp=2,n_prompts=400,dim=128,noisy_share=0.2")
    train = table[table["split"] == "train"]
    in_dist = table[table["split"].isin(["train", "valid"])]  # cluster counts are exact before valid is drawn
    counts = in_dist.drop_duplicates("prompt_id")["cluster"].value_counts().sort_index().to_numpy()
    assert counts[0] == pytest.approx(0.2 * counts.sum(), abs=1)
    assert counts[1:].max() - counts[1:].min() <= 1  # equal topics
    assert len(train) == pool_comparisons(parse_world("cpp=2,n_prompts=400"))
    assert table.groupby("prompt_id").size().eq(2).all()
    assert features.pairs_N_2_D.shape[1:] == (2, 128)
    # the rotation keeps distances: the native part's answer differences are still 9x in the noisy region,
    # diluted only by the 64 isotropic noise dimensions (std 0.05)
    norms = _pair_diff_norms(table, features)
    assert norms[table["cluster"] == 0].mean() / norms[table["cluster"] > 0].mean() > 7
    steep = teaching_world(4, world="imbalance=10,noisy_share=0.2")[0]
    topic_counts = steep[steep["split"].isin(["train", "valid"])].drop_duplicates("prompt_id")["cluster"].value_counts()
    assert topic_counts.drop(0).max() / topic_counts.drop(0).min() == pytest.approx(10, rel=0.15)


def test_spec_strings_round_trip_and_bad_specs_are_one_line_errors():
    w = WorldSpec(noisy_share=0.25, test="pool", cpp=2, dim=128)
    assert parse_world(w.spec()) == w and parse_world("") == CLASSIC and parse_world("classic").is_classic()
    assert parse_world(" test = pool , cpp=2 ") == WorldSpec(test="pool", cpp=2)
    assert list(w.knobs()) == ["noisy_share", "contrast_ratio", "noisy_flip", "test", "imbalance", "cpp",
                               "n_prompts", "budget", "dim"]
    for bad, msg in [("colour=3", "unknown world knob"), ("noisy_share=1.5", r"\[0.02, 0.9\]"),
                     ("cpp=2.5", "whole number"), ("test=iid", "topics, pool, ood"), ("noisy_share", "knob=value"),
                     ("cpp=2,cpp=3", "twice"), ("contrast_ratio=abc", "a number"), ("dim=32", r"\[64, 8192\]")]:
        with pytest.raises(ConfigError, match=msg) as exc:
            parse_world(bad)
        assert "\n" not in str(exc.value)


def test_prior_samples_are_seeded_inside_bounds_and_extend():
    a, b = sample_worlds(12, 0), sample_worlds(12, 0)
    assert a == b and sample_worlds(5, 0) == a[:5] and sample_worlds(12, 1) != a
    assert set(PRIOR) == set(CLASSIC.knobs())
    for w in a:
        assert parse_world(w.spec()) == w  # the spec string is the exact world
        assert 0.1 <= w.noisy_share <= 0.6 and 0.5 <= w.contrast_ratio <= 20 and w.test in ("topics", "pool", "ood")
        assert w.cpp in (1, 2, 4, 8) and 300 <= w.n_prompts <= 1500 and w.dim in (64, 128, 256)
    assert len({w.test for w in sample_worlds(24, 0)}) == 3


def test_loop_settings_rule_and_preset():
    assert loop_settings(CLASSIC) == {k: TEACHING_PRESET["loop"][k] for k in ("initial", "batch_size", "rounds")}
    assert loop_settings(parse_world("cpp=8,budget=0.25")) == {"initial": 140, "batch_size": 140, "rounds": 10}
    assert loop_settings(parse_world("cpp=1,n_prompts=100,budget=0.01"))["batch_size"] == 10  # the floor
    cfg = apply_preset(RunConfig().replace(data={"world": "cpp=2"}))
    assert (cfg.loop.initial, cfg.loop.batch_size, cfg.loop.rounds) == (25, 25, 10)
    assert cfg.model.hidden == TEACHING_PRESET["model"]["hidden"] and cfg.acquisition.beta == 0.1
    kept = apply_preset(RunConfig().replace(data={"world": "cpp=2"}, loop={"rounds": 3}), ["loop.rounds"])
    assert kept.loop.rounds == 3 and kept.loop.batch_size == 25
    # the classic world's hash is unchanged by the new field at its default; a world is its own setting
    assert "world" not in json.dumps(RunConfig().to_dict()["data"]) or RunConfig().hash() == RunConfig().replace(
        data={"world": ""}).hash()
    assert RunConfig().replace(data={"world": "cpp=2"}).hash() != RunConfig().hash()


def tiny(world: str, policy: str = "bald", seed: int = 0, rounds: int = 3) -> RunConfig:
    return RunConfig().replace(
        data={"world": world},
        model={"hidden": (8,), "ensemble_size": 3, "max_epochs": 2, "lr": 1e-2, "batch_size": 16},
        acquisition={"policy": policy, "k": 5},
        loop={"initial": 20, "batch_size": 20, "rounds": rounds, "seed": seed})


def test_a_classic_run_records_the_exact_bayes_test_ll_and_noisy_share(tmp_path):
    cfg = tiny("", seed=2)
    path = loop.run(cfg, tmp_path, progress=False)
    run = runs.open_run(tmp_path, path.name)
    truth = json.loads((path / "truth.json").read_text())
    assert truth == run.truth()
    table, _ = teaching_world(2)  # the run's world, drawn from its seed
    test = table[table["split"] == "test"]
    ood = table[table["split"] == "ood"]
    assert truth["test_log_likelihood"] == float(np.mean(np.log(test["true_prob"].to_numpy())))
    assert truth["ood_log_likelihood"] == float(np.mean(np.log(ood["true_prob"].to_numpy())))
    acc = np.where(test["true_prob"] > 0.5, 1.0, np.where(test["true_prob"] == 0.5, 0.5, 0.0)).mean()
    assert truth["test_accuracy"] == pytest.approx(acc, abs=1e-12)
    pool = run.pool().merge(table[["pair_id", "cluster"]], on="pair_id")
    assert truth["noisy_share_pool"] == pytest.approx((pool["cluster"] == 0).mean(), abs=1e-12)
    # noisy_share of round t: the labelled pairs that trained round t's model (initial + batches before t)
    acq = run.acquisitions()
    chat = set(pool.loc[pool["cluster"] == 0, "pool_index"])
    labelled = list(pool.loc[pool["initial"], "pool_index"])
    r = run.rounds()
    for t in range(3):
        assert r.loc[t, "labelled"] == len(labelled)
        assert r.loc[t, "noisy_share"] == pytest.approx(np.mean([i in chat for i in labelled]), abs=1e-12)
        labelled += acq.loc[acq["round"] == t, "pool_index"].tolist()
    assert r["test_log_likelihood"].max() < truth["test_log_likelihood"]  # nothing beats the Bayes model here


def test_resume_on_a_sampled_world_is_bit_identical(tmp_path, monkeypatch):
    cfg = tiny("noisy_share=0.3,contrast_ratio=2,noisy_flip=0.5,test=ood,cpp=2,n_prompts=300,dim=96",
               policy="balpm", seed=1, rounds=4)
    table, features = loop.load_inputs(cfg, progress=False)
    full = runs.open_run(tmp_path / "full", loop.run(cfg, tmp_path / "full", table=table, features=features,
                                                     progress=False).name)
    real = runs.RunWriter.commit_round

    def dying(self, rnd, *args, **kw):
        if rnd == 2:
            raise RuntimeError("simulated kill")
        return real(self, rnd, *args, **kw)

    monkeypatch.setattr(runs.RunWriter, "commit_round", dying)
    with pytest.raises(RuntimeError):
        loop.run(cfg, tmp_path / "part", table=table, features=features, progress=False)
    monkeypatch.setattr(runs.RunWriter, "commit_round", real)
    loop.run(cfg, tmp_path / "part", resume=True, progress=False)  # the worker reloads the world itself
    part = runs.open_run(tmp_path / "part", runs.default_run_id(cfg))
    pd.testing.assert_frame_equal(part.acquisitions(), full.acquisitions())
    pd.testing.assert_frame_equal(part.rounds().drop(columns=TIMING), full.rounds().drop(columns=TIMING))
    assert part.truth() == full.truth() and part.rounds()["noisy_share"].notna().all()
    assert part.config.data.world == cfg.data.world


def test_tables_without_truth_write_no_truth_and_a_noisy_column_counts(tmp_path):
    res = load_for_config(RunConfig().replace(data={"synthetic_size": 400}).data)
    cfg = tiny("", policy="random").replace(data={"synthetic_size": 400})
    plain = res.table.drop(columns=["true_prob"])
    path = loop.run(cfg, tmp_path / "a", table=plain, features=res.features, progress=False)
    assert not (path / "truth.json").exists() and runs.open_run(tmp_path / "a", path.name).truth() is None
    marked = res.table.assign(noisy=res.table["prompt_id"].str.endswith("7"))
    path = loop.run(cfg, tmp_path / "b", table=marked, features=res.features, progress=False)
    run = runs.open_run(tmp_path / "b", path.name)
    pool = run.pool().merge(marked[["pair_id", "noisy"]], on="pair_id")
    assert run.truth()["noisy_share_pool"] == pytest.approx(pool["noisy"].mean(), abs=1e-12)
    assert run.rounds().loc[0, "noisy_share"] == pytest.approx(pool.loc[pool["initial"], "noisy"].mean(), abs=1e-12)


def test_world_with_data_paths_or_paper_world_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="takes no data paths"):
        load_for_config(RunConfig().replace(data={"world": "cpp=2", "paths": ("x.json",)}).data)
    with pytest.raises(ConfigError, match="teaching-world knobs"):
        load_for_config(RunConfig().replace(data={"world": "cpp=2", "synthetic": "paper"}).data)


def test_balpm_worlds_dry_run_runs_records_and_resumes(tmp_path, capsys):
    main(["worlds", "--n", "3", "--seed", "0", "--dry-run"])
    out = capsys.readouterr().out
    assert out.count("world ") == 3 and "3 worlds, 72 runs" in out  # 3 policies x 8 seeds each and "nothing written" in out
    for w in sample_worlds(3, 0):
        assert w.spec() in out
    root = tmp_path / "w"
    args = ["worlds", "--world", "cpp=1,n_prompts=200", "--world", "test=pool,cpp=1,n_prompts=200",
            "--policies", "random,bald", "--seeds", "0", "--workers", "1", "-q", "--runs-dir", str(root),
            "--set", "model.hidden=8", "--set", "model.ensemble_size=2", "--set", "model.max_epochs=1",
            "--set", "loop.rounds=2"]
    main(args)
    doc = yaml.safe_load((root / "worlds.yaml").read_text())
    specs = [parse_world("cpp=1,n_prompts=200").spec(), parse_world("test=pool,cpp=1,n_prompts=200").spec()]
    assert [w["spec"] for w in doc["worlds"]] == specs and doc["prior"] is None and doc["seeds"] == [0]
    infos = runs.list_runs(root)
    assert len(infos) == 4 and all(i.state == "complete" for i in infos)
    configs = [runs.open_run(root, i.run_id).config for i in infos]
    assert sorted(c.data.world for c in configs) == sorted(specs * 2)
    assert all(c.loop.rounds == 2 and c.loop.batch_size == 10 for c in configs)  # --set over the world's sizes
    mtimes = {i.run_id: (root / i.run_id / "status.json").stat().st_mtime_ns for i in infos}
    main(args)  # re-issued: complete runs are skipped, untouched
    assert {i.run_id: (root / i.run_id / "status.json").stat().st_mtime_ns for i in runs.list_runs(root)} == mtimes
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["worlds", "--world", "cpp=2", "--seeds", "0", "--runs-dir", str(root), "-q"])
    assert exc.value.code == 2 and "other worlds" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["worlds", "--world", "noisy_share=2", "--dry-run"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and "noisy_share" in err
