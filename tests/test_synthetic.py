"""Synthetic worlds: labelled as synthetic, valid tables, the promised shape, determinism."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from balpm.config import ModelConfig
from balpm.data.schema import REQUIRED_COLUMNS, validate_table
from balpm.data.synthetic import TEACHING_CLUSTER_SIZES, paper_world, teaching_world
from balpm.errors import ConfigError
from balpm.model import PreferenceEnsemble


@pytest.fixture(scope="module")
def teaching():
    return teaching_world(seed=0)


def _agreement(table: pd.DataFrame) -> float:
    """Share of labels that name the answer the hidden reward prefers."""
    return float((table["true_prob"] > 0.5).mean())


def test_teaching_table_is_valid_and_labelled_synthetic(teaching):
    table, feats = teaching
    validate_table(table)
    assert set(REQUIRED_COLUMNS) <= set(table.columns) and {"cluster", "true_prob"} <= set(table.columns)
    assert (table["source"] == "synthetic").all()
    assert feats.manifest["model"] == "synthetic-teaching" and feats.manifest["source"] == "synthetic"
    assert set(table["split"]) == {"train", "valid", "test", "ood"}
    assert table["prompt"].str.startswith("synthetic prompt ").all()
    assert table["chosen"].str.match(r"answer a\d+-\d+$").all()
    assert (table["chosen"] != table["rejected"]).all()
    assert table.groupby("prompt_id").size().eq(4).all()          # several comparisons per prompt
    assert len(table[table["split"] != "ood"]) == 3200


def test_teaching_features_match_table(teaching):
    table, feats = teaching
    assert np.array_equal(feats.pair_ids, table["pair_id"].to_numpy().astype(str))
    assert feats.pairs_N_2_D.shape == (len(table), 2, 16) and feats.pairs_N_2_D.dtype == np.float32
    assert feats.prompts_P_D.shape == (table["prompt_id"].nunique(), 2)
    rows = feats.prompt_rows(table["prompt_id"].to_numpy())
    assert rows.shape == (len(table), 2) and np.isfinite(feats.pairs_N_2_D).all()
    # pair features start with the (scaled) prompt position, the same for chosen and rejected
    ratio = feats.pairs_N_2_D[:, 0, :2] / rows
    assert np.allclose(ratio, ratio[0, 0]) and np.array_equal(feats.pairs_N_2_D[:, 0, :2], feats.pairs_N_2_D[:, 1, :2])
    assert len(feats.hash) == 16


def test_teaching_agreement_like_humans(teaching):
    table, _ = teaching
    assert 0.60 <= _agreement(table) <= 0.75
    assert 0.60 <= _agreement(teaching_world(seed=3)[0]) <= 0.75
    # the labels were drawn from Bradley-Terry: the chosen answer is favoured on average, not always
    assert 0.5 < table["true_prob"].mean() < 0.8 and (table["true_prob"] < 0.5).any()


def test_teaching_cluster_sizes(teaching):
    table, _ = teaching
    prompts = table.drop_duplicates("prompt_id")
    inside = prompts[prompts["split"] != "ood"]["cluster"].value_counts().sort_index().to_numpy()
    np.testing.assert_allclose(inside / inside.sum(), TEACHING_CLUSTER_SIZES, atol=1 / len(prompts))
    ood = prompts[prompts["split"] == "ood"]["cluster"].value_counts().sort_index().to_numpy()
    assert ood[-1] > ood[0]                                        # the OOD set reverses the proportions
    # 2-D prompt positions: the largest cluster is a separate blob at the centre
    _, feats = teaching
    xy = feats.prompt_rows(prompts["prompt_id"].to_numpy())
    centre = xy[prompts["cluster"].to_numpy() == 0].mean(axis=0)
    assert np.linalg.norm(centre) < 0.5
    assert np.linalg.norm(xy[prompts["cluster"].to_numpy() == 3].mean(axis=0)) > 3.0


def test_teaching_is_deterministic(teaching):
    table, feats = teaching
    again_table, again = teaching_world(seed=0)
    pd.testing.assert_frame_equal(table, again_table)
    assert np.array_equal(feats.pairs_N_2_D, again.pairs_N_2_D) and feats.hash == again.hash
    other_table, other = teaching_world(seed=1)
    assert other.hash != feats.hash and not other_table["chosen"].equals(table["chosen"])


def test_teaching_size_and_bad_parameters():
    table, feats = teaching_world(seed=2, n=500, n_ood_prompts=10)
    assert (table["split"] != "ood").sum() == 500 and (table["split"] == "ood").sum() == 40
    validate_table(table)
    assert len(feats.pair_ids) == len(table)
    with pytest.raises(ConfigError):
        teaching_world(n_prompts=3)
    with pytest.raises(ConfigError):
        teaching_world(cluster_sizes=(1.0, -0.2))


def test_bald_piles_up_in_the_largest_cluster(teaching):
    """The world's purpose: BALD's top-B of a model trained on a random start lands in one region."""
    from balpm.uncertainty import bald

    table, feats = teaching
    train = np.flatnonzero(table["split"].to_numpy() == "train")
    labelled = np.random.default_rng(0).permutation(train)[:100]
    pool = np.setdiff1d(train, labelled)
    model = PreferenceEnsemble(ModelConfig(hidden=(64, 16), validation="none", device="cpu"), 16, seed=0)
    model.fit(feats.pairs_N_2_D[labelled])
    top = pool[np.argsort(-bald(model.predict_probs(feats.pairs_N_2_D[pool])))[:50]]
    share = np.mean(table["cluster"].to_numpy()[top] == 0)
    assert share >= 0.9                                             # the cluster holds 50% of the pool


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
