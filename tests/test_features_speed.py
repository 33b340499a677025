"""Featurization does only the work a run needs: identical texts embedded once (same bits, same cache key),
an ETA before and during the work, and runs with a pool_size featurize only the rows they read."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from balpm.config import FeatureConfig, RunConfig
from balpm.features import featurize, table_texts
from balpm.features.encoder import Encoder

# the keys the features of _repeats() had before de-duplication (commit 026854b): the prompts (no repeats,
# computed as before) keep theirs; the pairs (repeats, embedded once: other batches, values may differ in the
# last float32 bit) get a new one
OLD_KEYS = {"pairs": "db3e191027996b20b66f59d8db7b162b6a7e1bbdcf42ae96ddf727fb200154f6",
            "prompts": "729f0579f76ce775e56044b452ab8677f1a010943bcbb93dc4b0ff8be7e77a2f"}


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _repeats() -> pd.DataFrame:
    rows = [("p1", "tldr", "Rent went up.", "Rent up.", "Rent up."), ("p1", "tldr", "Rent went up.", "Rent up.", "Landlord."),
            ("p2", "tldr", "Cat ignores me.", "Cat.", "Rent up.")]
    return pd.DataFrame([{"pair_id": f"c{i}", "prompt_id": p, "source": s, "prompt": q, "chosen": c, "rejected": r,
                          "split": "train"} for i, (p, s, q, c, r) in enumerate(rows)])


def test_identical_texts_are_embedded_once_with_the_same_bits_and_key(tmp_path, monkeypatch):
    seen: list[int] = []
    original = Encoder.encode_ids

    def spy(self, ids, **kw):
        seen.append(len(ids))
        return original(self, ids, **kw)

    monkeypatch.setattr(Encoder, "encode_ids", spy)
    table = _repeats()
    feats = featurize(table, FeatureConfig(cache_dir=str(tmp_path / "c"), batch_size=2), progress=False)
    _, _, _, pair_texts, _ = table_texts(table)
    assert len(pair_texts) == 6 and len(set(pair_texts)) == 4
    assert seen == [2, 4]  # 2 prompts; 4 distinct pair texts of 6
    assert feats.manifest["prompts"]["key"] == OLD_KEYS["prompts"] and feats.manifest["pairs"]["key"] != OLD_KEYS["pairs"]
    assert np.array_equal(feats.pairs_N_2_D[0, 0], feats.pairs_N_2_D[1, 0])  # "Rent up." twice for p1
    # what encoding every text (repeats included) gives, to float32 rounding
    from balpm.features import load_encoder

    enc = load_encoder("minilm", device="cpu")
    every = original(enc, enc.tokenize(pair_texts, 256).ids, batch_size=2, progress=False)
    np.testing.assert_allclose(feats.pairs_N_2_D, every.reshape(2, 3, -1).transpose(1, 0, 2), rtol=0, atol=1e-6)


def test_eta_is_printed_before_and_on_the_bar(tmp_path, capsys):
    table = _repeats()
    featurize(table, FeatureConfig(cache_dir=str(tmp_path / "c"), batch_size=1), progress=True)
    err = capsys.readouterr().err
    assert "featurize pairs: 4 distinct texts of 6 with minilm on cpu" in err
    assert "featurize pairs: about " in err and "for 4 texts (" in err and "first batch" in err
    assert "4/4 texts" in err  # the bar counts texts beside the padded tokens it times


def test_pool_size_featurizes_only_the_rows_the_run_reads(tmp_path, monkeypatch):
    from balpm.experiment import loop

    path = tmp_path / "qa.csv"
    lines = ["prompt,chosen,rejected"] + [f"question {i}?,good answer {i},bad answer {i}" for i in range(300)]
    path.write_text("\n".join(lines) + "\n")
    asked: list[int] = []

    def fake(table, cfg=None, *, progress=True, **kw):  # random features in the real Features container
        asked.append(len(table))
        rng = np.random.default_rng(0)
        firsts = ~table["prompt_id"].duplicated()
        from balpm.features.featurize import Features

        return Features(prompt_ids=table.loc[firsts, "prompt_id"].to_numpy().astype(str),
                        prompts_P_D=rng.normal(size=(int(firsts.sum()), 8)).astype(np.float32),
                        pair_ids=table["pair_id"].to_numpy().astype(str),
                        pairs_N_2_D=rng.normal(size=(len(table), 2, 8)).astype(np.float32), manifest={},
                        hash=f"fake{len(table)}")

    monkeypatch.setattr("balpm.features.featurize", fake)
    cfg = RunConfig().replace(data={"paths": (str(path),)}, loop={"pool_size": 40, "initial": 8, "batch_size": 8,
                                                                  "rounds": 2, "save_pool_scores": False},
                              model={"ensemble_size": 2, "hidden": (8,), "max_epochs": 1},
                              acquisition={"policy": "random"})
    table, feats = loop.load_inputs(cfg, only_used=True, progress=False)
    held_out = int(table["split"].isin(["valid", "test", "ood"]).sum())
    assert len(table) == 300 and asked == [40 + held_out] and len(feats.pair_ids) == 40 + held_out
    inputs = loop.prepare(cfg, table, feats)
    assert (inputs.pair_rows_T[inputs.pool_rows_N] >= 0).all() and (inputs.pair_rows_T < 0).sum() == 300 - 40 - held_out
    full_pool = loop.prepare(cfg, table, fake(table)).pool_rows_N  # the same pool as with every row featurized
    assert np.array_equal(inputs.pool_rows_N, full_pool)
    run_dir = loop.run(cfg, tmp_path / "runs", progress=False)
    from balpm.experiment import runs

    assert runs.open_run(tmp_path / "runs", run_dir.name).meta["feature_rows"] == "used"
    assert asked[-1] == 40 + held_out


def test_demo_says_first_time_only_on_a_cache_miss_and_never_guesses_the_time(tmp_path, capsys):
    """The demo's up-front line comes from featurize's on_compute hook: once per part computed, with the
    distinct texts; the time comes only from the first batch measured here; a cache hit says nothing up front."""
    from balpm.cli import demo

    cfg = FeatureConfig(cache_dir=str(tmp_path / "c"), batch_size=1)
    calls = []
    hook = demo._first_time_note()
    featurize(_repeats(), cfg, progress=True, on_compute=lambda *a: (calls.append(a), hook(*a)))
    out, err = capsys.readouterr()
    assert calls == [("prompts", 2, 2), ("pairs", 4, 6)]
    assert "featurizing the pairs with the default MiniLM encoder: 4 distinct texts (of 6), first time only" in out
    assert " min" not in out and "texts/s" not in out  # no constant-rate guess
    assert "featurize pairs: about " in err and "first batch" in err  # the estimate measured on the first batch
    calls.clear()
    featurize(_repeats(), cfg, progress=True, on_compute=lambda *a: (calls.append(a), hook(*a)))
    out, err = capsys.readouterr()
    assert calls == [] and "first time" not in out and "about" not in err


def test_a_sweep_featurizes_once_for_all_its_runs_even_with_pool_size(tmp_path, monkeypatch):
    """prefetch featurizes every row once; the workers must reuse it, not featurize their own subsets again."""
    from balpm.experiment import runs, sweep
    from balpm.features.featurize import Features

    path = tmp_path / "qa.csv"
    lines = ["prompt,chosen,rejected"] + [f"question {i}?,good answer {i},bad answer {i}" for i in range(300)]
    path.write_text("\n".join(lines) + "\n")
    cache: dict[int, Features] = {}
    computed: list[int] = []

    def fake(table, cfg=None, *, progress=True, **kw):  # a content cache keyed by the rows asked for
        key = hash(tuple(table["pair_id"]))
        if key not in cache:
            computed.append(len(table))
            rng = np.random.default_rng(0)
            firsts = ~table["prompt_id"].duplicated()
            cache[key] = Features(prompt_ids=table.loc[firsts, "prompt_id"].to_numpy().astype(str),
                                  prompts_P_D=rng.normal(size=(int(firsts.sum()), 8)).astype(np.float32),
                                  pair_ids=table["pair_id"].to_numpy().astype(str),
                                  pairs_N_2_D=rng.normal(size=(len(table), 2, 8)).astype(np.float32), manifest={},
                                  hash=f"fake{key & 0xFFFF}")
        return cache[key]

    monkeypatch.setattr("balpm.features.featurize", fake)
    base = RunConfig().replace(data={"paths": (str(path),)}, loop={"pool_size": 40, "initial": 8, "batch_size": 8,
                                                                   "rounds": 2, "save_pool_scores": False},
                               model={"ensemble_size": 2, "hidden": (8,), "max_epochs": 1})
    configs = sweep.expand(base, ["random", "bald"], [0, 1])
    results = sweep.sweep(configs, tmp_path / "runs", workers=1, progress=False)
    assert [r.state for r in results] == ["complete"] * 4
    assert computed == [300], computed  # every row once (the prefetch); no run featurized its own subset
    assert {runs.open_run(tmp_path / "runs", r.run_id).meta["feature_rows"] for r in results} == {"all"}
