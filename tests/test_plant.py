"""balpm plant: planted worlds on real texts (issue 13).

The real-text tests plant on the first comparisons of the real TL;DR file batch13.json and on a small
HH-format file written here, with the bundled MiniLM encoder (max_length 64 to keep them fast) and a
feature cache in a temporary folder.
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from balpm.cli import main
from balpm.config import RunConfig
from balpm.data.plant import (
    MANIFEST_FILE,
    OOD_FILE,
    RUN_FILE,
    TABLE_FILE,
    Recipe,
    load_recipe,
    plant,
    plant_table,
    solve_strength,
)
from balpm.errors import BalpmError, ConfigError, DataError
from balpm.features import Features

SMALL = {"features.max_length": 64, "loop.initial": 8, "loop.batch_size": 8, "loop.rounds": 2,
         "model.ensemble_size": 2, "model.max_epochs": 1, "model.hidden": "16", "loop.save_pool_scores": False}


def _tldr_slice(comparisons_dir: Path, folder: Path, n: int = 50) -> Path:
    path = folder / "tldr-slice.json"
    with open(comparisons_dir / "batch13.json", encoding="utf-8") as fh:
        lines = [next(fh) for _ in range(n)]
    path.write_text("".join(lines), encoding="utf-8")
    return path


def _recipe(**changes) -> tuple[Recipe, Path]:
    rec, path = load_recipe("tldr")
    return Recipe(**{**rec.knobs(), "split_ratios": rec.split_ratios, "run_set": {**rec.run_set, **SMALL},
                     **changes}), path


@pytest.fixture(scope="module")
def planted(comparisons_dir, tmp_path_factory):
    """A planted world on 50 real TL;DR comparisons: (source file, out dir, manifest, cache dir)."""
    root = tmp_path_factory.mktemp("plant")
    src = _tldr_slice(comparisons_dir, root)
    rec, path = _recipe(clusters=6)
    out = root / "world"
    manifest = plant([str(src)], out, recipe=rec, recipe_file=path, seed=3, cache_dir=str(root / "cache"), progress=False)
    return src, out, manifest, root / "cache", rec, path


def test_plant_is_deterministic_to_the_byte(planted):
    src, out, _manifest, cache, rec, path = planted
    before = {name: (out / name).read_bytes() for name in (TABLE_FILE, RUN_FILE, MANIFEST_FILE)}
    with pytest.raises(ConfigError, match="already holds a planted world"):
        plant([str(src)], out, recipe=rec, recipe_file=path, seed=3, cache_dir=str(cache), progress=False)
    assert {name: (out / name).read_bytes() for name in before} == before  # nothing written is lost
    plant([str(src)], out, recipe=rec, recipe_file=path, seed=3, cache_dir=str(cache), progress=False, overwrite=True)
    assert {name: (out / name).read_bytes() for name in before} == before
    other = out.parent / "other-seed"
    plant([str(src)], other, recipe=rec, recipe_file=path, seed=4, cache_dir=str(cache), progress=False)
    assert (other / TABLE_FILE).read_bytes() != before[TABLE_FILE]
    assert not (out / OOD_FILE).exists()  # the slice has no OOD rows


def test_ceiling_is_mean_log_true_prob_on_test_rows(planted):
    _, out, manifest, *_ = planted
    table = pd.read_parquet(out / TABLE_FILE)
    test = table.loc[table["split"] == "test", "true_prob"].to_numpy()
    assert len(test) >= 5
    assert manifest["ceilings"]["test_log_likelihood"] == pytest.approx(float(np.mean(np.log(test))), abs=1e-9)
    assert manifest["ceilings"]["test_log_likelihood"] < 0
    pool = table["split"] == "train"
    assert manifest["ceilings"]["noisy_share_pool"] == pytest.approx(float(table.loc[pool, "noisy"].mean()))
    # chosen/rejected: swapped exactly where plant_swapped says, against the real file's own labels
    by_text = {}
    for line in Path(planted[0]).read_text().splitlines():
        rec = json.loads(line)
        texts = [s["text"] for s in rec["summaries"]]
        by_text[(rec["info"]["post"], texts[1 - rec["choice"]])] = texts[rec["choice"]]
    for row in table.itertuples():
        human_chosen = by_text.get((row.prompt, row.rejected if not row.plant_swapped else row.chosen))
        assert human_chosen == (row.chosen if not row.plant_swapped else row.rejected)


def test_noisy_rule_takes_whole_clusters(planted):
    _, out, manifest, *_ = planted
    table = pd.read_parquet(out / TABLE_FILE)
    per_cluster = table.groupby("plant_cluster")["noisy"].agg(["min", "max"])
    assert (per_cluster["min"] == per_cluster["max"]).all()  # a cluster is noisy as a whole or not at all
    noisy = manifest["noisy"]
    assert sorted(per_cluster.index[per_cluster["max"]].tolist()) == noisy["noisy_clusters"]
    assert (table.loc[table["noisy"], "true_prob"] == 0.5).all()
    assert (table.loc[~table["noisy"], "true_prob"] != 0.5).all()
    # the taken prefix of the stated order is the one whose prompt share is closest to the target
    prompts = table.drop_duplicates("prompt_id")
    share = prompts["plant_cluster"].value_counts().reindex(range(noisy["clusters"]), fill_value=0) / len(prompts)
    assert share.to_numpy() == pytest.approx(noisy["cluster_prompt_share"], abs=1e-6)
    gap = np.abs(np.cumsum(share.to_numpy()[noisy["order"]]) - 0.3333)
    take = len(noisy["noisy_clusters"])
    assert sorted(noisy["order"][:take]) == noisy["noisy_clusters"]
    assert take - 1 == int(np.flatnonzero(gap <= gap.min() + 1e-12)[0])  # the closest prefix, the shorter on a tie
    prompt_share = table.drop_duplicates("prompt_id")["noisy"].mean()
    assert prompt_share == pytest.approx(noisy["prompt_share"], abs=1e-6)


def test_planted_table_runs_and_hits_the_feature_cache(planted, tmp_path):
    _, out, manifest, *_ = planted
    cfg = RunConfig.from_yaml(out / RUN_FILE)
    from balpm.data import load_for_config
    from balpm.features import featurize

    loaded = load_for_config(cfg.data).table
    feats = featurize(loaded, cfg.features, progress=False)
    assert feats.cache_hits == {"prompts": True, "pairs": True}
    assert loaded["true_prob"].dtype == np.float64 and loaded["noisy"].dtype == bool
    main(["run", "-c", str(out / RUN_FILE), "--runs-dir", str(tmp_path), "--policy", "bald", "--seed", "1"])
    (run_dir,) = [p for p in tmp_path.iterdir() if (p / "rounds.parquet").is_file()]
    rounds = pd.read_parquet(run_dir / "rounds.parquet")
    assert len(rounds) == 2 and np.isfinite(rounds["test_log_likelihood"]).all()
    truth = json.loads((run_dir / "truth.json").read_text())
    assert truth["test_log_likelihood"] == pytest.approx(manifest["ceilings"]["test_log_likelihood"], abs=1e-9)
    assert truth["noisy_share_pool"] == pytest.approx(manifest["ceilings"]["noisy_share_pool"], abs=1e-9)


def _fake_features(n: int, d: int, seed: int) -> tuple[pd.DataFrame, Features]:
    rng = np.random.default_rng(seed)
    prompts = n // 4
    prompt_N = rng.integers(0, prompts, n)
    table = pd.DataFrame({"pair_id": [f"p{i}" for i in range(n)], "prompt_id": [f"q{j}" for j in prompt_N],
                          "prompt": [f"post {j}" for j in prompt_N], "chosen": [f"a{i}" for i in range(n)],
                          "rejected": [f"b{i}" for i in range(n)], "source": "custom",
                          "split": np.where(prompt_N % 5 == 0, "test", np.where(prompt_N % 5 == 1, "valid", "train"))})
    centers = rng.standard_normal((prompts, d)).astype(np.float32)
    pairs = (centers[prompt_N][:, None, :] + 0.5 * rng.standard_normal((n, 2, d))).astype(np.float32)
    firsts = ~table["prompt_id"].duplicated()
    ids = table.loc[firsts, "prompt_id"].to_numpy()
    feats = Features(prompt_ids=ids, prompts_P_D=centers[[int(s[1:]) for s in ids]], pair_ids=table["pair_id"].to_numpy(),
                     pairs_N_2_D=pairs, manifest={}, hash="fake")
    return table, feats


def test_labels_follow_the_planted_probabilities():
    table, feats = _fake_features(20_000, 24, seed=0)
    out = plant_table(table, feats, Recipe(agreement=0.8, components=12, noisy_share=0.3, clusters=8), seed=11).table
    # the probability that the source's first answer wins, recovered from the output
    p_first = np.where(out["plant_swapped"], 1 - out["true_prob"], out["true_prob"]).astype(np.float64)
    kept = (~out["plant_swapped"]).to_numpy()
    clean = ~out["noisy"].to_numpy()
    assert 0.2 < out["noisy"].mean() < 0.4
    # calibration in deciles of p over the non-noisy rows: every bin within 4.5 standard errors
    edges = np.quantile(p_first[clean], np.linspace(0, 1, 11))
    bins = np.clip(np.searchsorted(edges, p_first[clean], side="right") - 1, 0, 9)
    for b in range(10):
        p, k = p_first[clean][bins == b], kept[clean][bins == b]
        se = math.sqrt(float((p * (1 - p)).sum())) / len(p)
        assert abs(k.mean() - p.mean()) < 4.5 * se + 1e-12, (b, k.mean(), p.mean())
    # and the bins span a wide range, so a label rule that ignored p (or used 1 - p) fails above
    assert p_first[clean][bins == 0].mean() < 0.3 and p_first[clean][bins == 9].mean() > 0.7
    # noisy rows are coin flips
    n_noisy = int((~clean).sum())
    assert abs(kept[~clean].mean() - 0.5) < 4.5 * 0.5 / math.sqrt(n_noisy)
    # the agreement outside noisy rows is the recipe's
    assert np.maximum(p_first[clean], 1 - p_first[clean]).mean() == pytest.approx(0.8, abs=1e-9)


def test_strength_solves_the_agreement():
    g = np.random.default_rng(1).standard_normal(500)
    for target in (0.6, 0.75, 0.95):
        s = solve_strength(g, target)
        assert float((0.5 * (1 + np.tanh(0.5 * s * np.abs(g)))).mean()) == pytest.approx(target, abs=1e-9)
    assert solve_strength(g, 0.5) == 0.0
    with pytest.raises(DataError, match="same value"):
        solve_strength(np.zeros(10), 0.7)


def _hh_file(path: Path, n_prompts: int = 24) -> Path:
    topics = ["bake bread", "fix a bike chain", "learn the violin", "plant tomatoes", "write a cover letter",
              "train a puppy", "paint a fence", "brew green tea"]
    rows = []
    for i in range(n_prompts):
        topic = topics[i % len(topics)]
        prompt = f"\n\nHuman: How do I {topic}? (question {i})\n\nAssistant:"
        for j in range(3):
            good = f" Here is a careful step-by-step answer about how to {topic}, version {j}."
            bad = f" I am not sure, maybe ask someone else about {topic} ({j})."
            rows.append({"chosen": prompt + good, "rejected": prompt + bad})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_hh_recipe_plants_an_hh_format_file(tmp_path):
    src = _hh_file(tmp_path / "hh-train.jsonl")
    out = tmp_path / "hh-world"
    main(["plant", "--data", str(src), "--recipe", "hh", "--seed", "2", "--out", str(out), "--cache-dir",
          str(tmp_path / "cache"), "--clusters", "4", "--no-progress"])
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    table = pd.read_parquet(out / TABLE_FILE)
    assert manifest["recipe_name"] == "hh" and set(table["source"]) == {"hh"}
    assert len(table) == 72 and manifest["rows"]["test"] > 0
    assert manifest["sources"][0]["format"] == "hh"
    assert manifest["sources"][0]["sha256"] == __import__("hashlib").sha256(src.read_bytes()).hexdigest()
    assert table["prompt"].str.startswith("\n\nHuman:").all() and table["prompt"].str.endswith("Assistant:").all()
    cfg = RunConfig.from_yaml(out / RUN_FILE)
    assert cfg.acquisition.beta == 0.01 and cfg.data.paths == (str(out / TABLE_FILE),)


@pytest.mark.parametrize("args, message", [
    (["--recipe", "nope"], "unknown recipe 'nope'"),
    (["--agreement", "1.2"], "agreement must be in [0.5, 1)"),
    (["--noisy-share", "1"], "noisy_share must be in [0, 1)"),
    (["--noisy-pick", "largest"], "noisy_pick 'largest' is unknown"),
    (["--seed", "-1"], "--seed must be >= 0"),
])
def test_bad_input_is_one_line(tmp_path, capsys, args, message):
    src = _hh_file(tmp_path / "hh.jsonl", n_prompts=4)
    with pytest.raises(SystemExit) as exit_info:
        main(["plant", "--data", str(src), "--out", str(tmp_path / "w"), "--cache-dir", str(tmp_path / "c"), *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not (tmp_path / "w").exists()


def test_a_source_without_test_rows_is_refused(tmp_path):
    src = _hh_file(tmp_path / "hh.jsonl", n_prompts=4)
    rec = Recipe(split_ratios=(1.0, 0.0, 0.0), run_base="", run_set={"features.max_length": 64})
    with pytest.raises(BalpmError, match="no test rows"):
        plant([str(src)], tmp_path / "w", recipe=rec, seed=0, cache_dir=str(tmp_path / "c"), progress=False)
    assert not (tmp_path / "w" / TABLE_FILE).exists()


def test_shipped_recipes_load():
    for name in ("tldr", "cnndm", "hh"):
        rec, path = load_recipe(name)
        assert path.name == f"plant-{name}.yaml" and rec.run_base == "tldr-real.yaml"
        assert 0.5 < rec.agreement < 1 and 0 < rec.noisy_share < 1
    rec, _ = load_recipe("cnndm", noisy_pick="contrast")
    assert rec.noisy_pick == "contrast" and rec.run_set["loop.rounds"] == 8


def test_copy_of_world_reads_back(planted, tmp_path):
    """The written files alone (copied elsewhere, run.yaml's paths rewritten) load to the same truth."""
    _, out, manifest, *_ = planted
    for name in (TABLE_FILE,):
        shutil.copy(out / name, tmp_path / name)
    from balpm.data import load_table

    t = load_table([str(tmp_path / TABLE_FILE)], format="table", keep_original=True,
                   columns={"source": "source", "split": "split", "id": "pair_id", "prompt_id": "prompt_id"}).table
    assert len(t) == manifest["source_rows"]
    assert float(np.log(t.loc[t["split"] == "test", "true_prob"]).mean()) == pytest.approx(
        manifest["ceilings"]["test_log_likelihood"], abs=1e-9)


def test_table_loader_keeps_and_checks_the_truth_columns(tmp_path):
    from balpm.data import load_table

    good = tmp_path / "t.csv"
    good.write_text("prompt,chosen,rejected,true_prob,noisy\np1,a,b,0.7,false\np2,c,d,0.5,true\n", encoding="utf-8")
    t = load_table([str(good)], format="table").table
    assert t["true_prob"].tolist() == [0.7, 0.5] and t["noisy"].tolist() == [False, True]
    plain = tmp_path / "p.csv"
    plain.write_text("prompt,chosen,rejected\np1,a,b\n", encoding="utf-8")
    assert "true_prob" not in load_table([str(plain)], format="table").table.columns
    for value, what in (("1.5", "true_prob must be a probability in [0, 1]"), ("abc", "true_prob must be a probability")):
        bad = tmp_path / "b.csv"
        bad.write_text(f"prompt,chosen,rejected,true_prob\np1,a,b,{value}\n", encoding="utf-8")
        with pytest.raises(DataError, match=r"line 2") as err:
            load_table([str(bad)], format="table")
        assert what in str(err.value) and "\n" not in str(err.value)
