"""Synthetic worlds: labelled as synthetic, valid tables, the promised shape, determinism; the teaching
world's design (fixed geometry, seed-drawn samples, test weights, contrasts, BALD's attractor) and its
preset (budget below a quarter of the pool). Its lessons end to end: tests/test_teaching_world.py."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from balpm.config import ModelConfig, RunConfig
from balpm.data.schema import REQUIRED_COLUMNS, validate_table
from balpm.data.synthetic import (
    TEACHING_CLUSTER_SIZES,
    TEACHING_TEST_WEIGHTS,
    paper_world,
    teaching_world,
    world_seed,
)
from balpm.engine.model import PreferenceEnsemble
from balpm.errors import ConfigError
from balpm.experiment.presets import TEACHING_PRESET, apply_preset, uses_teaching_world


@pytest.fixture(scope="module")
def teaching():
    return teaching_world(seed=0)


def _agreement(table: pd.DataFrame) -> float:
    """Share of labels that name the answer the hidden reward prefers."""
    return float((table["true_prob"] > 0.5).mean())


def _prompts(table: pd.DataFrame, split: str) -> pd.DataFrame:
    return table[table["split"] == split].drop_duplicates("prompt_id")


def test_teaching_table_is_valid_and_labelled_synthetic(teaching):
    table, feats = teaching
    validate_table(table)
    assert set(REQUIRED_COLUMNS) <= set(table.columns) and {"cluster", "true_prob", "contrast"} <= set(table.columns)
    assert (table["source"] == "synthetic").all()
    assert feats.manifest["model"] == "synthetic-teaching" and feats.manifest["source"] == "synthetic"
    assert set(table["split"]) == {"train", "valid", "test", "ood"}
    assert table["prompt"].str.startswith("synthetic prompt ").all()
    assert table["chosen"].str.match(r"answer a\d+-\d+$").all()
    assert (table["chosen"] != table["rejected"]).all()
    assert table.groupby("prompt_id").size().eq(4).all()          # several comparisons per prompt
    assert table.groupby("prompt_id")["split"].nunique().eq(1).all()  # prompt-grouped splits
    counts = table["split"].value_counts()
    assert (counts["train"], counts["valid"], counts["test"], counts["ood"]) == (2800, 400, 800, 600)


def test_teaching_features_match_table(teaching):
    table, feats = teaching
    assert np.array_equal(feats.pair_ids, table["pair_id"].to_numpy().astype(str))
    assert feats.pairs_N_2_D.shape == (len(table), 2, 64) and feats.pairs_N_2_D.dtype == np.float32
    assert feats.prompts_P_D.shape == (table["prompt_id"].nunique(), 2)
    rows = feats.prompt_rows(table["prompt_id"].to_numpy())
    assert rows.shape == (len(table), 2) and np.isfinite(feats.pairs_N_2_D).all()
    # pair features start with the (scaled) prompt position, the same for chosen and rejected
    ratio = feats.pairs_N_2_D[:, 0, :2] / rows
    assert np.allclose(ratio, ratio[0, 0]) and np.array_equal(feats.pairs_N_2_D[:, 0, :2], feats.pairs_N_2_D[:, 1, :2])
    assert len(feats.hash) == 16


def test_teaching_labels_chit_chat_is_a_coin_flip_topics_follow_a_taste(teaching):
    table, _ = teaching
    chat, topics = table[table["cluster"] == 0], table[table["cluster"] > 0]
    assert np.allclose(chat["true_prob"], 0.5)                     # no taste to learn in chit-chat
    assert 0.60 <= _agreement(topics) <= 0.75                      # like human labellers
    assert 0.60 <= _agreement(teaching_world(seed=3)[0].query("cluster > 0")) <= 0.75
    # the labels were drawn from Bradley-Terry: the chosen answer is favoured on average, not always
    assert 0.5 < topics["true_prob"].mean() < 0.8 and (topics["true_prob"] < 0.5).any()


def test_teaching_contrasts_differ_inside_every_topic_prompt(teaching):
    """The 4 comparisons of a topic prompt take the 4 contrasts once each: U has something to decide."""
    table, _ = teaching
    topics = table[table["cluster"] > 0]
    assert topics.groupby("prompt_id")["contrast"].nunique().eq(4).all()
    agree = topics.groupby("contrast")["true_prob"].apply(lambda p: float((p > 0.5).mean()))
    assert agree.is_monotonic_increasing and agree.iloc[0] < 0.6 and agree.iloc[-1] > 0.75
    # clear pairs: answers far apart in answer space; near-ties: close
    _, feats = teaching
    gap = np.linalg.norm(feats.pairs_N_2_D[:, 0] - feats.pairs_N_2_D[:, 1], axis=1)
    by = pd.Series(gap[topics.index]).groupby(topics["contrast"].to_numpy()).mean()
    assert by.is_monotonic_increasing and by.iloc[-1] > 5 * by.iloc[0]
    # chit-chat answers differ the most of all (large, varied answers)
    assert gap[table["cluster"].to_numpy() == 0].mean() > 2 * by.iloc[-1]


def test_teaching_cluster_sizes_and_test_weights(teaching):
    table, feats = teaching
    pool = pd.concat([_prompts(table, "train"), _prompts(table, "valid")])
    inside = pool["cluster"].value_counts().sort_index().to_numpy()
    np.testing.assert_allclose(inside / inside.sum(), TEACHING_CLUSTER_SIZES, atol=1 / len(pool))
    # the test set weights the clusters (default: the five topics equally, no chit-chat), not the pool's mix
    test = _prompts(table, "test")["cluster"].value_counts().reindex(range(6), fill_value=0).to_numpy()
    np.testing.assert_allclose(test / test.sum(), np.asarray(TEACHING_TEST_WEIGHTS) / sum(TEACHING_TEST_WEIGHTS),
                               atol=1 / test.sum())
    assert test[0] == 0 and test[1:].min() == test[1:].max() == 40
    ood = _prompts(table, "ood")["cluster"].value_counts().sort_index().to_numpy()
    assert ood[-1] > ood[0]                                        # the OOD set reverses the proportions
    # 2-D prompt positions: chit-chat is a tight blob at the centre, the topics sit on a ring around it
    prompts = _prompts(table, "train")
    xy = feats.prompt_rows(prompts["prompt_id"].to_numpy())
    cl = prompts["cluster"].to_numpy()
    assert np.linalg.norm(xy[cl == 0].mean(axis=0)) < 0.2
    assert all(np.linalg.norm(xy[cl == c].mean(axis=0)) > 3.0 for c in range(1, 6))
    assert xy[cl == 0].std(axis=0).max() < 0.5 * xy[cl == 1].std(axis=0).min()


def test_teaching_other_test_weights():
    table, _ = teaching_world(seed=1, test_weights=(1, 1, 1, 1, 1, 1), n_prompts=600)
    test = _prompts(table, "test")["cluster"].value_counts().sort_index().to_numpy()
    assert len(test) == 6 and test.max() - test.min() <= 1


def test_teaching_is_deterministic_in_seed_with_a_fixed_layout(teaching):
    table, feats = teaching
    again_table, again = teaching_world(seed=0)
    pd.testing.assert_frame_equal(table, again_table)
    assert np.array_equal(feats.pairs_N_2_D, again.pairs_N_2_D) and feats.hash == again.hash
    other_table, other = teaching_world(seed=1)
    assert other.hash != feats.hash and not other_table["chosen"].equals(table["chosen"])
    # the geometry stays: every cluster's centre is where it was (within sampling noise)
    def centres(t: pd.DataFrame, f) -> np.ndarray:
        p = _prompts(t, "train")
        xy = f.prompt_rows(p["prompt_id"].to_numpy())
        return np.vstack([xy[p["cluster"].to_numpy() == c].mean(axis=0) for c in range(6)])

    assert np.abs(centres(table, feats) - centres(other_table, other)).max() < 0.3
    assert not np.array_equal(feats.prompts_P_D, other.prompts_P_D)  # ... but the prompts are new draws


def test_teaching_size_and_bad_parameters():
    table, feats = teaching_world(seed=2, n=500, n_ood_prompts=10)
    assert (table["split"] != "ood").sum() == 500 and (table["split"] == "ood").sum() == 40
    validate_table(table)
    assert len(feats.pair_ids) == len(table)
    with pytest.raises(ConfigError, match="pool prompts"):
        teaching_world(n_prompts=6)
    with pytest.raises(ConfigError, match="cluster_sizes"):
        teaching_world(cluster_sizes=(1.0, -0.2))
    with pytest.raises(ConfigError, match="test_weights"):
        teaching_world(test_weights=(1.0, 1.0))
    with pytest.raises(ConfigError, match="test_weights"):
        teaching_world(test_weights=(0, 0, 0, 0, 0, 0))


def test_world_seed_is_the_run_seed():
    assert [world_seed(s) for s in range(4)] == [0, 1, 2, 3]
    assert world_seed(3, 1) != world_seed(3, 0) and world_seed(3, 1) == world_seed(3, 1)
    from balpm.experiment import loop

    cfgs = [RunConfig().replace(loop={"seed": s}, acquisition={"policy": p}) for s, p in
            ((0, "random"), (0, "bald"), (1, "random"))]
    assert [loop.data_config(c).split_seed for c in cfgs] == [0, 0, 1]
    real = RunConfig().replace(data={"paths": ("x.json",), "split_seed": 4}, loop={"seed": 7})
    assert loop.data_config(real).split_seed == 4                  # real data: the split seed stays


def test_runs_on_two_seeds_see_two_worlds_policies_on_one_seed_share_it():
    from balpm.experiment import loop

    cfg = apply_preset(RunConfig())
    w0 = loop.load_inputs(cfg.replace(loop={"seed": 0}))[1].hash
    w0b = loop.load_inputs(cfg.replace(loop={"seed": 0}, acquisition={"policy": "bald"}))[1].hash
    w1 = loop.load_inputs(cfg.replace(loop={"seed": 1}))[1].hash
    assert w0 == w0b != w1


def test_teaching_preset_fits_the_pool_below_a_quarter(teaching):
    table, _ = teaching
    cfg = apply_preset(RunConfig())
    assert uses_teaching_world(cfg)
    lp = cfg.loop
    budget = lp.initial + lp.batch_size * (lp.rounds - 1)
    pool = int((table["split"] == "train").sum())
    assert budget == 500 and budget < 0.25 * pool
    assert cfg.model.hidden == TEACHING_PRESET["model"]["hidden"] and cfg.acquisition.beta == 0.1


def test_preset_keeps_what_the_user_set_and_leaves_real_data_alone():
    cfg = apply_preset(RunConfig().replace(loop={"rounds": 4}, model={"lr": 0.01}), ["loop.rounds", "lr"])
    assert cfg.loop.rounds == 4 and cfg.model.lr == 0.01 and cfg.loop.initial == 50
    # a field set to the reference default on purpose is kept too
    assert apply_preset(RunConfig(), ["acquisition.beta"]).acquisition.beta == 0.01
    real = RunConfig().replace(data={"paths": ("data.json",)})
    assert apply_preset(real) == real
    paper = RunConfig().replace(data={"synthetic": "paper"})
    assert apply_preset(paper) == paper


def test_bald_piles_up_in_chit_chat(teaching):
    """BALD's attractor: a model of the preset trained on a random start is most uncertain in chit-chat."""
    from balpm.engine.uncertainty import bald

    table, feats = teaching
    train = np.flatnonzero(table["split"].to_numpy() == "train")
    labelled = np.random.default_rng(0).permutation(train)[:100]
    pool = np.setdiff1d(train, labelled)
    cfg = ModelConfig(**{**TEACHING_PRESET["model"], "device": "cpu", "validation": "none", "max_epochs": 10})
    model = PreferenceEnsemble(cfg, 64, seed=0)
    model.fit(feats.pairs_N_2_D[labelled])
    u = bald(model.predict_probs(feats.pairs_N_2_D[pool]))
    top = pool[np.argsort(-u)[:50]]
    assert np.mean(table["cluster"].to_numpy()[top] == 0) >= 0.9   # chit-chat holds 40% of the pool
    # inside the topics, U ranks the clear pairs above the near-ties of the same prompts
    topics = table["cluster"].to_numpy()[pool] > 0
    by = pd.Series(u[topics]).groupby(table["contrast"].to_numpy()[pool][topics]).mean()
    assert by.is_monotonic_increasing and by.iloc[-1] > 5 * by.iloc[0]


def test_paper_world_shape():
    table, feats = paper_world(n=600, d=12, seed=4, n_prompts=100)
    validate_table(table)
    inside = table[table["split"] != "ood"]
    assert len(inside) == 600 and inside["prompt_id"].nunique() == 100
    assert (table["split"] == "ood").sum() == 60 and set(table["split"]) == {"train", "valid", "test", "ood"}
    assert feats.pairs_N_2_D.shape == (660, 2, 12) and feats.prompts_P_D.shape[1] == 12
    assert feats.manifest["model"] == "synthetic-paper" and (table["source"] == "synthetic").all()
    assert 0.60 <= _agreement(table) <= 0.80
    again = paper_world(n=600, d=12, seed=4, n_prompts=100)[1]
    assert again.hash == feats.hash and np.array_equal(again.prompts_P_D, feats.prompts_P_D)
    # prompts are clustered: features of one cluster are closer to each other than to another cluster's
    prompts = table.drop_duplicates("prompt_id")
    xy = feats.prompt_rows(prompts["prompt_id"].to_numpy())
    cl = prompts["cluster"].to_numpy()
    a, b = xy[cl == 0], xy[cl == 1]
    within = np.linalg.norm(a[:, None] - a[None], axis=-1).mean()
    between = np.linalg.norm(a[:, None] - b[None], axis=-1).mean()
    assert between > 1.5 * within
    with pytest.raises(ConfigError):
        paper_world(n=10, d=4, n_prompts=20)


def test_cli_fills_the_teaching_preset_only_where_nothing_was_set(tmp_path):
    """``balpm run`` / ``sweep`` build their config through build_config: bare -> the preset; a flag, a
    ``--set`` or a YAML key wins; real data gets no preset."""
    from balpm.cli.run import build_config

    bare = build_config()
    assert bare == apply_preset(RunConfig()) and bare.loop.rounds == 10 and bare.model.hidden == (32,)
    flagged = build_config(rounds=4, sets=["model.lr=0.01"])
    assert (flagged.loop.rounds, flagged.model.lr, flagged.loop.initial) == (4, 0.01, 50)
    yml = tmp_path / "c.yaml"
    yml.write_text("acquisition:\n  beta: 0.01\nloop:\n  batch_size: 20\n")
    from_yaml = build_config(yml)
    assert (from_yaml.acquisition.beta, from_yaml.loop.batch_size, from_yaml.loop.initial) == (0.01, 20, 50)
    real = build_config(data=["some/comparisons"])
    assert real.loop.rounds == RunConfig().loop.rounds and real.acquisition.beta == RunConfig().acquisition.beta
