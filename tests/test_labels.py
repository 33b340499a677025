"""The label store of ``balpm label`` (balpm.labels) and the next round (balpm.labels.next_round) on a
``balpm select`` run of the real TL;DR sample with its labels hidden.

The sample: the first 30 comparisons of batch13.json are the labelled table; the next 50 the unlabelled pool
(prompt, answer_a, answer_b, each pair's answers in a seeded random order); a tiny model; a batch of 10. The
labels typed into the store are the hidden human choices read back from batch13.json (A when answer A is the
human's choice), with a fixed set of pairs marked tie and skip.
"""
from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from balpm import labels as store_mod
from balpm import next_batch as engine
from balpm.experiment import runs
from balpm.cli import main
from balpm.config import RunConfig
from balpm.errors import ConfigError, DataError
from tldr_tables import write_select_inputs

REPO = Path(__file__).resolve().parents[1]
BATCH = 10
TIE_SKIP = {2: "tie", 5: "skip"}  # pick positions labelled tie / skip in every round


def _tiny(cache: Path, **acq) -> RunConfig:
    return RunConfig().replace(
        model={"hidden": (32, 8), "ensemble_size": 3, "max_epochs": 3, "lr": 3e-3, "batch_size": 16, "device": "cpu"},
        features={"cache_dir": str(cache), "max_length": 64}, acquisition={"policy": "balpm", **acq},
        loop={"seed": 5})


@pytest.fixture(scope="module")
def sample(tmp_path_factory, comparisons_dir) -> dict:
    """The files, the loaded tables, their features, the hidden truth (prompt, answer -> chosen) and a selection."""
    from balpm.features import featurize

    folder = tmp_path_factory.mktemp("labels")
    truth = write_select_inputs(folder, comparisons_dir, seed=0)
    truth.update({(p, b, a): c for (p, a, b), c in list(truth.items())})  # either order -> the chosen text
    pool = engine.load_unlabelled(folder / "pool.csv")
    labelled = engine.load_labelled(folder / "labelled.jsonl")
    cache = folder / "cache"
    combined, _ = engine.combined_table(pool, labelled)
    features = featurize(combined, _tiny(cache).features, progress=False)
    root = folder / "runs"
    res = engine.select(_tiny(cache), pool, labelled, BATCH, root, progress=False, features=features)
    return {"folder": folder, "root": root, "cache": cache, "pool": pool, "labelled": labelled, "features": features,
            "truth": truth, "run_dir": res.run_dir, "batch": res.batch}


def _human(sample: dict, batch: pd.DataFrame) -> list[str]:
    """The label an honest annotator types for each pick: the hidden human choice (A or B), and tie / skip at
    the positions of TIE_SKIP."""
    out = []
    for i, r in batch.reset_index(drop=True).iterrows():
        chosen = sample["truth"][(r["prompt"], r["answer_a"], r["answer_b"])]
        out.append(TIE_SKIP.get(i, "A" if chosen == r["answer_a"] else "B"))
    return out


def _label_all(store: store_mod.LabelStore, sample: dict, rnd: int) -> list[str]:
    batch = store.batch(rnd)
    values = _human(sample, batch)
    for pid, v in zip(batch["pair_id"], values):
        store.set(rnd, pid, v, "tester")
    return values


def test_store_is_wal_unique_and_upserts(sample, tmp_path):
    run_dir = shutil.copytree(sample["run_dir"].parent, tmp_path / "runs") / sample["run_dir"].name
    store = store_mod.LabelStore(run_dir)
    batch = store.batch(0)
    assert store.labels().empty and store.progress(0).done == 0 and store.first_unlabelled(0) == 0
    assert not (run_dir / "labels.sqlite").exists()  # nothing written before the first label
    p0, p1 = batch["pair_id"].iloc[0], batch["pair_id"].iloc[1]
    store.set(0, p0, "A", "ann1")
    con = sqlite3.connect(run_dir / "labels.sqlite")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # WAL is a property of the file: it persists
    unique = [r for r in con.execute("PRAGMA index_list(labels)").fetchall() if r[2] == 1]
    assert [[c[2] for c in con.execute(f"PRAGMA index_info('{u[1]}')")] for u in unique] == [["round", "pair_id"]]
    # a second write of the same (round, pair) changes the row, never adds one
    store.set(0, p0, "B", "ann2")
    store.set(0, p1, "tie", "ann1")
    lab = store.labels(0).set_index("pair_id")
    assert len(lab) == 2 and lab.loc[p0, "label"] == "B" and lab.loc[p0, "annotator"] == "ann2"
    assert lab.loc[p0, "revisions"] == 2 and lab.loc[p1, "revisions"] == 1 and lab.loc[p0, "step"] == 0
    with pytest.raises(sqlite3.IntegrityError):  # the constraint itself refuses a duplicate row
        con.execute("INSERT INTO labels (round, pair_id, step, label, annotator, labelled_at) VALUES (0, ?, 0, 'A', 'x', 't')", (p0,))
    with pytest.raises(sqlite3.IntegrityError):  # and a value outside the four
        con.execute("UPDATE labels SET label = 'maybe' WHERE pair_id = ?", (p0,))
    con.close()
    assert store.progress(0).done == 2 and store.progress(0).counts == {"A": 0, "B": 1, "tie": 1, "skip": 0}
    assert store.first_unlabelled(0) == 2


def test_two_processes_writing_at_once_never_duplicate(sample, tmp_path):
    run_dir = shutil.copytree(sample["run_dir"].parent, tmp_path / "runs") / sample["run_dir"].name
    script = textwrap.dedent("""
        import sys
        from balpm.labels import LabelStore
        store = LabelStore(sys.argv[1])
        ids = list(store.batch(0)["pair_id"])
        for sweep in range(5):
            for pid in ids:
                store.set(0, pid, sys.argv[2], sys.argv[3])
        print("done")
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(run_dir), value, name], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for value, name in (("A", "one"), ("skip", "two"))]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 and o.strip() == "done" for p, (o, _) in zip(procs, outs)), outs
    con = sqlite3.connect(run_dir / "labels.sqlite")
    rows = con.execute("SELECT round, pair_id, label, annotator, revisions FROM labels").fetchall()
    groups = con.execute("SELECT COUNT(*) FROM labels GROUP BY round, pair_id").fetchall()
    con.close()
    assert len(rows) == BATCH and {g[0] for g in groups} == {1}  # one row per pair, 100 writes
    assert all((label, who) in (("A", "one"), ("skip", "two")) for _, _, label, who, _ in rows)
    assert sum(r[4] for r in rows) == 2 * 5 * BATCH  # every write counted, none lost


def test_bad_input_is_one_line_and_a_corrupt_store_is_never_overwritten(sample, tmp_path, capsys):
    root = shutil.copytree(sample["run_dir"].parent, tmp_path / "runs")
    run_dir = root / sample["run_dir"].name
    store = store_mod.LabelStore(run_dir)
    pid = store.batch(0)["pair_id"].iloc[0]
    with pytest.raises(DataError, match="'maybe' is not one of A, B, tie, skip"):
        store.set(0, pid, "maybe")
    with pytest.raises(DataError, match="pair 'nope' is not in round 0's batch"):
        store.set(0, "nope", "A")
    with pytest.raises(ConfigError, match="has no round 1"):
        store.set(1, pid, "A")
    store.set(0, pid, "A")
    # a store copied from another run folder (another selection: seed 6)
    other = engine.select(_tiny(sample["cache"]).replace(loop={"seed": 6}), sample["pool"], sample["labelled"], BATCH,
                          root, progress=False, features=sample["features"])
    shutil.copy(run_dir / "labels.sqlite", other.run_dir / "labels.sqlite")
    with pytest.raises(DataError, match=f"belongs to run '{run_dir.name}', not to '{other.run_id}'"):
        store_mod.LabelStore(other.run_dir)
    # a corrupt file: refused, left byte for byte as it was, also through the CLI (one line, exit 2)
    junk = b"this is not a database\n" * 50
    (other.run_dir / "labels.sqlite").write_bytes(junk)
    for wal in other.run_dir.glob("labels.sqlite-*"):
        wal.unlink()
    with pytest.raises(DataError, match="not an SQLite database .corrupt or another file.; it was left untouched"):
        store_mod.LabelStore(other.run_dir)
    for argv in (["--status"], ["--export", str(tmp_path / "x.jsonl")], ["--next-round"]):
        with pytest.raises(SystemExit) as exc:
            main(["label", str(other.run_dir), *argv])
        err = capsys.readouterr().err.strip()
        assert exc.value.code == 2 and err.startswith("error:") and "\n" not in err and "labels.sqlite" in err, err
    assert (other.run_dir / "labels.sqlite").read_bytes() == junk and not (tmp_path / "x.jsonl").exists()
    # a truncated database (the header kept, the pages cut): also refused, also untouched
    good = (run_dir / "labels.sqlite")
    con = sqlite3.connect(good)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    cut = good.read_bytes()[:600]
    (other.run_dir / "labels.sqlite").write_bytes(cut)
    with pytest.raises(DataError, match="is a corrupt SQLite database .database disk image is malformed.; it was left"):
        store_mod.LabelStore(other.run_dir)
    assert (other.run_dir / "labels.sqlite").read_bytes() == cut
    # not a selection run / not a run folder / a bad export suffix
    with pytest.raises(ConfigError, match="is not a run folder"):
        store_mod.LabelStore(tmp_path)
    with pytest.raises(ConfigError, match="unknown suffix '.txt'"):
        store_mod.check_export_path(tmp_path / "labels.txt")


def test_next_round_trains_on_every_label_and_is_deterministic(sample, tmp_path):
    root_a = shutil.copytree(sample["run_dir"].parent, tmp_path / "a")
    run_a = root_a / sample["run_dir"].name
    store = store_mod.LabelStore(run_a)
    with pytest.raises(ConfigError, match=f"round 0 of run '{run_a.name}' has {BATCH} of {BATCH} pairs unlabelled"):
        store_mod.next_round(run_a)
    values = _label_all(store, sample, 0)
    root_b = shutil.copytree(root_a, tmp_path / "b")  # the same labels in a second folder
    res_a = store_mod.next_round(run_a)
    res_b = store_mod.next_round(root_b / run_a.name)
    assert res_a.round == 1 and not res_a.reused and len(res_a.batch) == BATCH
    assert engine.batch_bytes(res_a.batch, ".jsonl") == engine.batch_bytes(res_b.batch, ".jsonl")  # same labels, same batch
    run = runs.open_run(root_a, run_a.name)
    acq = run.acquisitions()
    assert sorted(acq["round"].unique()) == [0, 1] and acq["pair_id"].is_unique  # nothing picked twice
    round0 = set(acq.loc[acq["round"] == 0, "pair_id"])
    assert not set(res_a.batch["pair_id"]) & round0  # ties and skips are not offered again either
    lab_keys = set(engine.pair_keys(sample["labelled"]))
    assert not set(engine.pair_keys(res_a.batch.rename(columns={"answer_a": "chosen", "answer_b": "rejected"}))) & lab_keys
    # trained on the original labelled pairs plus the A/B labels (ties and skips excluded)
    n_ab = sum(v in ("A", "B") for v in values)
    rounds = run.rounds()
    assert rounds["labelled"].tolist() == [len(sample["labelled"]), len(sample["labelled"]) + n_ab]
    assert run.status["state"] == "complete" and run.last_round == 1
    assert run.pool_scores(1) is not None and len(run.pool_scores(1)) == len(run.pool_scores(0)) - BATCH
    # the same call again: refused (round 1 is not labelled), nothing appended
    with pytest.raises(ConfigError, match="round 1 .* pairs unlabelled"):
        store_mod.next_round(run_a)
    # the store opens on round 1 now; balpm select's same command still finds round 0's batch
    assert store_mod.LabelStore(run_a).last_round() == 1 and store.first_unlabelled(1) == 0
    again = engine.select(_tiny(sample["cache"]), sample["pool"], sample["labelled"], BATCH, root_a, progress=False,
                          features=sample["features"])
    assert again.reused and again.batch["pair_id"].tolist() == sample["batch"]["pair_id"].tolist()


def test_training_pairs_flip_b_labels(sample):
    run = runs.open_run(sample["root"], sample["run_dir"].name)
    from balpm.experiment import snapshot

    table, features = snapshot.load_inputs(sample["root"], run.meta["data_hash"], run.meta["feature_hash"])
    n_lab = run.meta["select"]["labelled"]
    inputs = engine._inputs(table, features, n_lab)
    batch = sample["batch"]
    lab = pd.DataFrame({"round": 0, "pair_id": batch["pair_id"].iloc[:3], "label": ["A", "B", "tie"]})
    rows, pairs = engine.training_pairs(inputs, n_lab, lab)
    assert len(rows) == n_lab + 2
    where = {p: i for i, p in enumerate(table["pair_id"])}
    a_row, b_row = where[batch["pair_id"].iloc[0]], where[batch["pair_id"].iloc[1]]
    np.testing.assert_array_equal(pairs[n_lab], inputs.pairs(np.array([a_row]))[0])
    np.testing.assert_array_equal(pairs[n_lab + 1], inputs.pairs(np.array([b_row]))[0][::-1])  # B: answer B chosen


def test_export_round_trips_through_the_loaders_and_balpm_run(sample, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    root = shutil.copytree(sample["run_dir"].parent, tmp_path / "runs")
    run_dir = root / sample["run_dir"].name
    store = store_mod.LabelStore(run_dir)
    v0 = _label_all(store, sample, 0)
    store_mod.next_round(run_dir)
    v1 = _label_all(store, sample, 1)
    expected = []
    for rnd, values in ((0, v0), (1, v1)):
        for (_, r), v in zip(store.batch(rnd).iterrows(), values):
            if v in ("A", "B"):
                expected.append((r["prompt"], r["answer_a"] if v == "A" else r["answer_b"],
                                 r["answer_b"] if v == "A" else r["answer_a"]))
    # every exported pair is the human's choice of batch13.json (the labels typed were the hidden truth)
    assert all(sample["truth"][(p, c, r)] == c for p, c, r in expected)
    from balpm.data import load_table

    for suffix in (".jsonl", ".csv", ".parquet"):
        out = tmp_path / f"labels{suffix}"
        main(["label", str(run_dir), "--export", str(out), "--json"])
        doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert doc == {"out": str(out), "pairs": len(expected), "ties": 2, "skips": 2}
        back = load_table(out).table
        assert list(zip(back["prompt"], back["chosen"], back["rejected"])) == expected, suffix
    assert len(engine.load_labelled(tmp_path / "labels.jsonl")) == len(expected)  # balpm select --labelled reads it
    main(["run", "--data", str(tmp_path / "labels.jsonl"), "--policy", "random", "--initial", "4", "--batch-size", "2",
          "--rounds", "2", "--ensemble-size", "2", "--hidden", "8", "--epochs", "1", "--no-pool-scores",
          "--runs-dir", str(tmp_path / "sim"), "--set", f"features.cache_dir={sample['cache']}",
          "--set", "features.max_length=64", "-q"])
    assert "complete, 2 rounds" in capsys.readouterr().out
    sim = runs.list_runs(tmp_path / "sim")
    assert len(sim) == 1 and sim[0].state == "complete"
    table = runs.open_run(tmp_path / "sim", sim[0].run_id).dataset()[0]
    assert set(zip(table["prompt"], table["chosen"], table["rejected"])) == set(expected)


def test_status_cli(sample, tmp_path, capsys):
    root = shutil.copytree(sample["run_dir"].parent, tmp_path / "runs")
    run_dir = root / sample["run_dir"].name
    store = store_mod.LabelStore(run_dir)
    for pid in store.batch(0)["pair_id"].iloc[:3]:
        store.set(0, pid, "B")
    main(["label", str(run_dir), "--status", "--json"])
    doc = json.loads(capsys.readouterr().out.strip())
    assert doc["round"] == 0 and doc["done"] == 3 and doc["total"] == BATCH and doc["B"] == 3
    assert doc["first_unlabelled"] == 3
    with pytest.raises(SystemExit) as exc:
        main(["label", str(run_dir), "--status", "--next-round"])
    assert exc.value.code == 2 and "one of --status, --export, --next-round" in capsys.readouterr().err


def test_annotate_page_saves_on_click_and_reopens_at_the_first_unlabelled_pair(sample, tmp_path, monkeypatch):
    """The Annotate page in Streamlit's AppTest (the browser test types keys; this one clicks): ``balpm label``'s
    environment lands on it, a click saves the label at once, a new session opens at the first unlabelled pair."""
    from streamlit.testing.v1 import AppTest

    root = shutil.copytree(sample["run_dir"].parent, tmp_path / "runs")
    run_dir = root / sample["run_dir"].name
    sys.path.insert(0, str(REPO))
    monkeypatch.setenv("BALPM_RUNS_DIR", str(root))
    monkeypatch.setenv("BALPM_LABEL_RUN", run_dir.name)
    monkeypatch.setenv("BALPM_ANNOTATOR", "apptest")
    at = AppTest.from_file(str(REPO / "dashboard" / "app.py"), default_timeout=120)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.title[0].value == "Annotate" and at.subheader[0].value == f"Pair 1 of {BATCH}"
    batch = sample["batch"]
    assert batch["prompt"].iloc[0] in at.text[0].value  # the prompt, as plain text
    at.button(key="an_B").click().run()
    at.button(key="an_tie").click().run()
    assert at.subheader[0].value == f"Pair 3 of {BATCH}"
    lab = store_mod.LabelStore(run_dir).labels(0)
    assert lab["pair_id"].tolist() == batch["pair_id"].iloc[:2].tolist() and lab["label"].tolist() == ["B", "tie"]
    assert set(lab["annotator"]) == {"apptest"}
    at.button(key="an_back").click().run()  # back: pair 2 shows its label; A changes it in place
    assert at.subheader[0].value == f"Pair 2 of {BATCH}" and "labelled **tie**" in at.caption[0].value
    at.button(key="an_A").click().run()
    lab = store_mod.LabelStore(run_dir).labels(0)
    assert lab["label"].tolist() == ["B", "A"] and lab["revisions"].tolist() == [1, 2]
    fresh = AppTest.from_file(str(REPO / "dashboard" / "app.py"), default_timeout=120)  # a reload: a new session
    fresh.run()
    assert fresh.subheader[0].value == f"Pair 3 of {BATCH}"
