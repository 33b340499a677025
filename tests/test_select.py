"""``balpm select`` on the real TL;DR sample with its labels hidden: the batch, the run folder, determinism,
idempotence, a new labelled set, no labels, every registered policy, the one-line errors, and the dashboard's
Anatomy page on the run folder.

The sample: the first 30 comparisons of batch13.json are the labelled table (prompt, chosen, rejected); the
next 40 (from row 28: two of them are labelled ones) are the unlabelled pool, written as prompt, answer_a,
answer_b with each pair's answers in a seeded random order (the label is not in the file). Features are the
bundled MiniLM's (64 tokens: fast), computed once (``balpm select`` through the CLI) and read back from the same cache.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from balpm.experiment import runs
from balpm import next_batch as engine
from tldr_tables import write_select_inputs
from balpm.acquisition.registry import entries
from balpm.cli import main
from balpm.config import RunConfig
from balpm.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[1]
TINY_SETS = ["model.hidden=32,8", "model.ensemble_size=3", "model.max_epochs=3", "model.lr=3e-3",
             "model.batch_size=16", "model.device=cpu"]


def _tiny(cache: Path, **acq) -> RunConfig:
    return RunConfig().replace(
        model={"hidden": (32, 8), "ensemble_size": 3, "max_epochs": 3, "lr": 3e-3, "batch_size": 16, "device": "cpu"},
        features={"cache_dir": str(cache), "max_length": 64}, acquisition={"policy": "balpm", **acq})


@pytest.fixture(scope="module")
def sample(tmp_path_factory, comparisons_dir) -> dict:
    """The files, the CLI's first selection (which featurizes), and the loaded tables and features."""
    folder = tmp_path_factory.mktemp("select")
    write_select_inputs(folder, comparisons_dir, labelled=slice(0, 30), pool=slice(28, 68), seed=0)  # 2 pairs in both
    root, cache = folder / "runs", folder / "cache"
    args = ["select", str(folder / "pool.csv"), "--labelled", str(folder / "labelled.jsonl"), "--out",
            str(folder / "batch.jsonl"), "--batch-size", "6", "--policy", "balpm", "--seed", "3", "--runs-dir", str(root),
            "--no-progress", "--json", *[x for s in TINY_SETS for x in ("--set", s)],
            "--set", f"features.cache_dir={cache}", "--set", "features.max_length=64"]
    pool = engine.load_unlabelled(folder / "pool.csv")
    labelled = engine.load_labelled(folder / "labelled.jsonl")
    combined, _ = engine.combined_table(pool, labelled)
    return {"folder": folder, "root": root, "cache": cache, "args": args, "pool": pool, "labelled": labelled,
            "combined": combined}


@pytest.fixture(scope="module")
def first(sample) -> dict:
    """The CLI's first call (featurizes with MiniLM); its printed summary."""
    import io
    from contextlib import redirect_stdout

    buf = io.StringIO()
    with redirect_stdout(buf):
        main(sample["args"])
    return json.loads(buf.getvalue().strip().splitlines()[-1])


@pytest.fixture(scope="module")
def features(sample, first):
    from balpm.features import featurize

    feats = featurize(sample["combined"], _tiny(sample["cache"]).features, progress=False)
    assert feats.cache_hits == {"prompts": True, "pairs": True}  # what the CLI computed, read back
    return feats


def test_cli_batch_on_the_real_sample_labels_hidden(sample, first):
    folder = sample["folder"]
    batch = pd.read_json(folder / "batch.jsonl", lines=True, dtype={"pair_id": str, "prompt_id": str})
    entry = entries()["balpm"]
    assert list(batch.columns) == ["step", "pair_id", "prompt_id", "prompt", "answer_a", "answer_b",
                                   *entry.acquisition_columns]
    assert batch["step"].tolist() == list(range(6)) and batch["pair_id"].is_unique
    # every pick is a pool pair as written in pool.csv (answer order kept), never a labelled one
    pool_csv = pd.read_csv(folder / "pool.csv", keep_default_na=False)
    pool_rows = set(zip(pool_csv["prompt"], pool_csv["answer_a"], pool_csv["answer_b"]))
    assert set(zip(batch["prompt"], batch["answer_a"], batch["answer_b"])) <= pool_rows
    lab_keys = set(engine.pair_keys(sample["labelled"]))
    assert not set(engine.pair_keys(batch.rename(columns={"answer_a": "chosen", "answer_b": "rejected"}))) & lab_keys
    assert first["already_labelled"] == 2 and first["picks"] == 6 and first["reused_run"] is False
    assert np.isfinite(batch[["score", "u", "beta_h"]].to_numpy()).all()
    # the run folder: listed, complete, marked as a selection, its picks the batch's
    info = {i.run_id: i for i in runs.list_runs(sample["root"])}[first["run_id"]]
    assert info.state == "complete" and first["run_id"].startswith("select-balpm-s3-")
    run = runs.open_run(sample["root"], first["run_id"])
    sel = run.meta["select"]
    assert sel["labelled"] == len(sample["labelled"]) and sel["already_labelled"] == 2
    assert sel["unlabelled"] == len(sample["pool"]) - 2
    assert run.acquisitions()["pair_id"].tolist() == batch["pair_id"].tolist()
    scores = run.pool_scores(0)
    assert len(scores) == sel["unlabelled"] and not set(scores["pair_id"]) & set(run.pool()[run.pool()["initial"]]["pair_id"])
    assert run.config.model.validation == "none" and run.config.loop.batch_size == 6


def test_same_command_reuses_the_folder_and_rewrites_nothing(sample, first):
    run_dir = Path(first["run_dir"])
    files = sorted(p for p in sample["root"].rglob("*") if p.is_file() and ".locks" not in p.parts)
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in files + [sample["folder"] / "batch.jsonl"]}
    import io
    from contextlib import redirect_stdout

    buf = io.StringIO()
    with redirect_stdout(buf):
        main(sample["args"])
    again = json.loads(buf.getvalue().strip().splitlines()[-1])
    assert again["run_id"] == first["run_id"] and again["reused_run"] is True and again["out_written"] is False
    after = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in before}
    assert after == before and run_dir.is_dir()
    assert sorted(p for p in sample["root"].rglob("*") if p.is_file() and ".locks" not in p.parts) == files


def test_deterministic_bit_for_bit_and_a_new_labelled_set_is_a_new_run(sample, first, features, tmp_path):
    cfg = _tiny(sample["cache"]).replace(loop={"seed": 3})
    fresh = engine.select(cfg, sample["pool"], sample["labelled"], 6, tmp_path / "a", progress=False, features=features)
    assert fresh.run_id == first["run_id"] and not fresh.reused
    assert engine.batch_bytes(fresh.batch, ".jsonl") == (sample["folder"] / "batch.jsonl").read_bytes()
    for suffix in (".csv", ".parquet"):  # every format round-trips the same picks
        out = tmp_path / f"batch{suffix}"
        assert engine.write_batch(fresh.batch, out) and not engine.write_batch(fresh.batch, out)
        back = pd.read_csv(out, dtype={"pair_id": str, "prompt_id": str}) if suffix == ".csv" else pd.read_parquet(out)
        assert back["pair_id"].tolist() == fresh.batch["pair_id"].tolist()
    # one more labelled pair (the next annotation round): another run id, another folder
    more = pd.concat([sample["labelled"], sample["pool"].iloc[[5]]], ignore_index=True)
    nxt = engine.select(cfg, sample["pool"], more, 6, tmp_path / "a", progress=False, features=features)
    assert nxt.run_id != fresh.run_id and (tmp_path / "a" / nxt.run_id).is_dir()
    assert sample["pool"].iloc[5]["pair_id"] not in set(nxt.batch["pair_id"])
    # another seed: another run id
    other = engine.select(cfg.replace(loop={"seed": 4}), sample["pool"], sample["labelled"], 6, tmp_path / "a",
                          progress=False, features=features)
    assert other.run_id != fresh.run_id


def test_every_registered_policy_selects_a_valid_batch(sample, features, tmp_path):
    for name, entry in entries().items():
        if name == "full":
            continue
        cfg = _tiny(sample["cache"], policy=name)
        res = engine.select(cfg, sample["pool"], sample["labelled"], 4, tmp_path, progress=False, features=features)
        assert len(res.batch) == 4 and res.batch["pair_id"].is_unique, name
        assert set(entry.acquisition_columns) <= set(res.batch.columns), name
        assert np.isfinite(res.batch["u"]).all() and (name == "random" or np.isfinite(res.batch["score"]).all()), name
        again = engine.select(cfg, sample["pool"], sample["labelled"], 4, tmp_path / "again", progress=False,
                              features=features)
        assert again.batch.equals(res.batch), name


def test_no_labels_needs_a_model_free_policy(sample, features, tmp_path):
    with pytest.raises(ConfigError, match="needs labelled pairs.*--policy random, coreset, dopt"):
        engine.select(_tiny(sample["cache"]), sample["pool"], None, 4, tmp_path, progress=False, features=features)
    assert not tmp_path.joinpath("runs").exists() and not any(tmp_path.iterdir())
    res = engine.select(_tiny(sample["cache"], policy="coreset"), sample["pool"], None, 4, tmp_path, progress=False,
                        features=features)
    radius = res.batch["covered_radius"].to_numpy()  # nothing labelled: the first pick covers an infinite radius
    assert len(res.batch) == 4 and res.already_labelled == 0 and np.isinf(radius[0]) and np.isfinite(radius[1:]).all()
    assert (np.diff(radius[1:]) <= 0).all() and (res.batch["u"] == 0).all()  # farthest-first; untrained: U = 0
    assert runs.open_run(tmp_path, res.run_id).meta["select"]["model_free"] is True


def test_bad_input_is_one_line_and_writes_nothing(sample, features, tmp_path, capsys):
    cfg = _tiny(sample["cache"])
    with pytest.raises(DataError, match="pool is empty"):
        engine.select(cfg, sample["pool"].iloc[:0], sample["labelled"], 4, tmp_path, features=features)
    left = len(sample["pool"]) - 2
    with pytest.raises(ConfigError, match=f"larger than the pool .{left} unlabelled pairs, 2 already labelled left out"):
        engine.select(cfg, sample["pool"], sample["labelled"], left + 1, tmp_path, features=features)
    with pytest.raises(DataError, match="already in the labelled table"):
        engine.select(cfg, sample["labelled"], sample["labelled"], 1, tmp_path, features=features)
    assert not any(tmp_path.iterdir())
    bad = tmp_path / "bad.csv"
    bad.write_text("prompt,answer_a,other\nhello,a,b\n")
    out = tmp_path / "b.jsonl"
    for argv, needle in (([str(bad)], "answer_b"), ([str(sample["folder"] / "pool.csv")], "--out")):
        target = str(tmp_path / "b.txt") if needle == "--out" else str(out)
        with pytest.raises(SystemExit) as exc:
            main(["select", *argv, "-o", target, "-b", "2", "--runs-dir", str(tmp_path / "r"), "--no-progress"])
        err = capsys.readouterr().err.strip()
        assert exc.value.code == 2 and err.startswith("error:") and "\n" not in err and needle in err, err
    assert not out.exists() and not (tmp_path / "r").exists()


def test_anatomy_page_renders_the_selection_run(sample, first, monkeypatch):
    from streamlit.testing.v1 import AppTest

    sys.path.insert(0, str(REPO))
    monkeypatch.setenv("BALPM_RUNS_DIR", str(sample["root"]))
    at = AppTest.from_file(str(REPO / "dashboard" / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("views/batch_anatomy.py").run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.title[0].value and at.get("plotly_chart"), "the anatomy page drew no figure for the selection run"
