"""Prompt-grouped, seeded splits on the real TL;DR files; load_for_config."""
from __future__ import annotations

import sys
import types

import numpy as np
import pandas as pd
import pytest

import balpm.data
from balpm.config import DataConfig
from balpm.data import assign_splits, load_for_config, load_table, validate_table
from balpm.data.splits import map_original, split_prompt_ids
from balpm.errors import ConfigError, DataError

TLDR_FILES = ("batch13.json", "batch18.json", "edit_b2_eval_test.json")


@pytest.fixture(scope="module")
def tldr(comparisons_dir):
    return load_table([comparisons_dir / n for n in TLDR_FILES], ood_paths=[comparisons_dir / "batch0_cnndm.json"])


def test_no_prompt_in_two_splits(tldr):
    table = tldr.table
    assert table.groupby("prompt_id")["split"].nunique().max() == 1
    assert table.groupby("prompt")["split"].nunique().max() == 1  # also by text, not only by id
    sets = {s: set(g["prompt_id"]) for s, g in table.groupby("split")}
    for a, ids_a in sets.items():
        for b, ids_b in sets.items():
            assert a == b or not (ids_a & ids_b)


def test_ratios_are_fractions_of_prompts(tldr):
    table = tldr.table[tldr.table["split"] != "ood"]
    prompts = table.groupby("split")["prompt_id"].nunique()
    total = prompts.sum()
    assert total == 1006
    for name, ratio in zip(("train", "valid", "test"), (0.7, 0.1, 0.2)):
        assert abs(prompts[name] / total - ratio) < 1.5 / total


def test_split_is_deterministic_and_seed_dependent(tldr):
    base = tldr.table
    again = assign_splits(base, seed=0)
    pd.testing.assert_series_equal(again["split"], base["split"])
    other = assign_splits(base, seed=1)
    assert (other["split"] != base["split"]).any()
    assert other.groupby("prompt_id")["split"].nunique().max() == 1
    # row order does not matter: the split is a function of the prompt ids and the seed
    shuffled = base.sample(frac=1.0, random_state=np.random.default_rng(3).integers(1 << 31))
    resplit = assign_splits(shuffled, seed=0).set_index("pair_id")["split"]
    pd.testing.assert_series_equal(resplit.sort_index(), base.set_index("pair_id")["split"].sort_index())


def test_ood_rows_are_never_resplit(tldr):
    out = assign_splits(tldr.table, ratios=(1, 0, 0), seed=5)
    assert (out.loc[tldr.table["split"] == "ood", "split"] == "ood").all()
    assert set(out.loc[tldr.table["split"] != "ood", "split"]) == {"train"}


def test_custom_ratios_through_load_table(comparisons_dir):
    result = load_table([comparisons_dir / "batch18.json"], ratios=(0.5, 0.25, 0.25), seed=7)
    prompts = result.table.groupby("split")["prompt_id"].nunique()
    assert prompts.sum() == 110
    assert abs(prompts["train"] - 55) <= 1 and abs(prompts["valid"] - 27.5) <= 1
    assert result.report["split"] == {"method": "seeded", "ratios": [0.5, 0.25, 0.25], "seed": 7}


@pytest.mark.parametrize("ratios", [(0.5, 0.5), (-0.1, 0.6, 0.5), (0, 0, 0), (float("nan"), 0.5, 0.5), ("a", 1, 1)])
def test_bad_ratios_are_config_errors(ratios):
    with pytest.raises(ConfigError):
        split_prompt_ids(["a", "b"], ratios)


def test_map_original_rules():
    openai = map_original(pd.Series(["train", "valid1", "valid2", None]))
    assert openai.tolist()[:3] == ["train", "valid", "test"] and pd.isna(openai.iloc[3])
    carper = pd.Series(["train", "valid1", "valid2", "test", "validation"])
    assert map_original(carper).tolist() == ["train", "valid", "valid", "test", "valid"]


def test_keep_original_moves_a_shared_prompt_to_the_held_out_split():
    table = pd.DataFrame({
        "pair_id": ["a", "b", "c", "d"], "prompt_id": ["p", "p", "q", "r"], "prompt": ["P", "P", "Q", "R"],
        "chosen": ["x"] * 4, "rejected": ["y"] * 4, "split": ["train"] * 4, "source": ["custom"] * 4,
        "orig_split": ["train", "test", "train", None],
    })
    from balpm.data.splits import original_splits

    out, moved = original_splits(table, seed=0)
    assert moved == 1
    assert out["split"].tolist()[:3] == ["test", "test", "train"]
    assert out["split"].iloc[3] in ("train", "valid", "test")
    validate_table(out)


def test_load_for_config_reads_paths(comparisons_dir):
    cfg = DataConfig(paths=(str(comparisons_dir / "batch18.json"),), ood_paths=(str(comparisons_dir / "batch0_cnndm.json"),),
                     split_ratios=(0.6, 0.2, 0.2), split_seed=3)
    result = load_for_config(cfg)
    assert result.report["rows"] == 674 + 437 and result.features is None
    direct = load_table([comparisons_dir / "batch18.json"], ood_paths=[comparisons_dir / "batch0_cnndm.json"],
                        ratios=(0.6, 0.2, 0.2), seed=3)
    pd.testing.assert_frame_equal(result.table, direct.table)


def test_load_for_config_without_paths_builds_the_synthetic_world(monkeypatch):
    calls = []
    table = pd.DataFrame({
        "pair_id": ["s0", "s1"], "prompt_id": ["p0", "p1"], "prompt": ["a", "b"], "chosen": ["c", "d"],
        "rejected": ["e", "f"], "split": ["train", "test"], "source": ["synthetic"] * 2,
    })

    def teaching_world(seed=0):
        calls.append(("teaching", seed))
        return table, "features"

    def paper_world(n=100, d=8, seed=0):
        calls.append(("paper", n, seed))
        return table, "features"

    fake = types.ModuleType("balpm.data.synthetic")
    fake.teaching_world, fake.paper_world = teaching_world, paper_world
    monkeypatch.setitem(sys.modules, "balpm.data.synthetic", fake)
    monkeypatch.setattr(balpm.data, "synthetic", fake, raising=False)
    result = load_for_config(DataConfig(split_seed=4))
    assert calls == [("teaching", 4)] and result.features == "features" and result.report["rows"] == 2
    load_for_config(DataConfig(synthetic="paper", synthetic_size=50, split_seed=2))
    assert calls[-1] == ("paper", 50, 2)
    with pytest.raises(ConfigError):
        load_for_config(DataConfig(synthetic="teaching", synthetic_size=50))  # the teaching world has a fixed size here
    with pytest.raises(ConfigError):
        load_for_config(DataConfig(synthetic="nope"))


def test_no_paths_is_an_error():
    with pytest.raises(DataError):
        load_table([])
