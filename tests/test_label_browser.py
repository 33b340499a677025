"""``balpm select`` then ``balpm label`` end to end in Debian's Chromium (headless, Playwright): issue 17's "done when".

The real TL;DR sample with its labels hidden (the first 30 comparisons of batch13.json labelled, the next 50 the
pool, each pair's answers in a seeded random order), a tiny model, a batch of 20. ``balpm label RUN_DIR`` runs as
a subprocess in its own session; the test types 20 labels with KEYSTROKES (a / b: the hidden human choice, t and
s at two positions, the left arrow once to go back and re-label), kills the server with SIGKILL (its whole
process group, the Streamlit child included) after 12, starts it again on the same port, reloads the page,
finds it at pair 13 and finishes. Then it checks every one of the 20 labels is in ``labels.sqlite`` exactly once
with the value typed, presses "Select the next round" and sees the new batch, downloads the export from the page
and runs ``balpm run --data`` on it. Screenshots: label-*.png under test-artifacts/screenshots/ (or the folder
named by ``BALPM_LABEL_SHOTS``: ``docs/screenshots`` holds the ones docs/label.md shows).

Every wait is on the page's state (the pair counter, the script's run state), never a fixed sleep.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from test_dashboard_browser import ARGS, CHROMIUM, HANG, act, idle, shot
from test_dashboard_browser import pytestmark  # noqa: F401 - the same browser mark and Chromium skip rule
from tldr_tables import write_select_inputs

REPO = Path(__file__).resolve().parents[1]
# test-artifacts/ by default, so a test run leaves the checkout clean; BALPM_LABEL_SHOTS=docs/screenshots re-takes
# the pictures of docs/label.md
SHOTS = REPO / os.environ.get("BALPM_LABEL_SHOTS", "test-artifacts/screenshots")
N = 20
KILL_AFTER = 12
TYPED_TIE_SKIP = {4: "t", 15: "s"}  # positions labelled tie and skip; every other pair a / b by the hidden choice
VALUE = {"a": "A", "b": "B", "t": "tie", "s": "skip"}

@pytest.fixture(scope="module")
def folder():
    """A folder of this module's own outside pytest's rotating tmp folders (a server reads it); removed at teardown."""
    path = Path(tempfile.mkdtemp(prefix="balpm-label-browser-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def selection(folder, comparisons_dir) -> dict:
    """``balpm select`` (the CLI, in this process) on the sample; the run folder and the hidden choices."""
    from balpm.cli import main

    chosen = write_select_inputs(folder, comparisons_dir, seed=1)
    truth = {key: "a" if text == key[1] else "b" for key, text in chosen.items()}
    root = folder / "runs"
    main(["select", str(folder / "pool.csv"), "--labelled", str(folder / "labelled.jsonl"), "--out",
          str(folder / "batch.jsonl"), "--batch-size", str(N), "--policy", "balpm", "--seed", "0", "--runs-dir", str(root),
          "--no-progress", "--set", "model.hidden=32,8", "--set", "model.ensemble_size=3", "--set", "model.max_epochs=3",
          "--set", "model.device=cpu", "--set", f"features.cache_dir={folder / 'cache'}", "--set", "features.max_length=64"])
    run_dir = next(p for p in root.iterdir() if p.name.startswith("select-"))
    import pandas as pd

    batch = pd.read_json(folder / "batch.jsonl", lines=True, dtype={"pair_id": str, "prompt_id": str})
    keys = [TYPED_TIE_SKIP.get(i, truth[(r["prompt"], r["answer_a"], r["answer_b"])]) for i, r in batch.iterrows()]
    return {"root": root, "run_dir": run_dir, "batch": batch, "keys": keys}


class LabelServer:
    """``balpm label RUN_DIR`` on one port, in its own session: ``kill()`` SIGKILLs the whole group."""

    def __init__(self, run_dir: Path, port: int, log: Path) -> None:
        self.run_dir, self.port, self.log_path = run_dir, port, log
        self.proc: subprocess.Popen | None = None

    def start(self) -> str:
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed when the process ends (the child keeps its copy)
        self.proc = subprocess.Popen([sys.executable, "-m", "balpm", "label", str(self.run_dir), "--port", str(self.port),
                                      "--annotator", "browser-test"], stdout=log, stderr=subprocess.STDOUT,
                                     cwd=str(REPO), start_new_session=True)
        log.close()
        url = f"http://127.0.0.1:{self.port}"
        t0 = time.time()
        while time.time() - t0 < 240 and self.proc.poll() is None:
            try:
                if urllib.request.urlopen(url + "/_stcore/health", timeout=2).status == 200:
                    return url
            except OSError:
                time.sleep(0.2)
        raise AssertionError("balpm label did not start: " + self.log_path.read_text(errors="replace")[-2000:])

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=60)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _at_pair(page, k: int) -> None:
    """Until the page shows pair ``k`` (1-based) and the script is idle."""
    page.locator("h3", has_text=f"Pair {k} of {N}").first.wait_for(timeout=HANG * 1000)
    idle(page)


def _type(page, key: str, then: int | None) -> None:
    """Press ``key`` and wait for pair ``then`` (None: the batch's done message)."""
    page.keyboard.press(key)
    if then is None:
        page.get_by_text("Round 0 is done").first.wait_for(timeout=HANG * 1000)
        idle(page)
    else:
        _at_pair(page, then)


def _store_rows(run_dir: Path) -> list[tuple]:
    con = sqlite3.connect(run_dir / "labels.sqlite")
    try:
        return con.execute("SELECT round, pair_id, label, annotator FROM labels ORDER BY round, step").fetchall()
    finally:
        con.close()


def test_label_twenty_pairs_by_keystrokes_through_a_server_kill(selection, folder, monkeypatch):
    from playwright.sync_api import sync_playwright

    from balpm.experiment import runs
    from balpm.cli import main

    run_dir, keys, batch = selection["run_dir"], selection["keys"], selection["batch"]
    server = LabelServer(run_dir, _free_port(), folder / "label.log")
    url = server.start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1440, "height": 1000}, accept_downloads=True)
            page.goto(url)
            page.locator("h1", has_text="Annotate").first.wait_for(timeout=HANG * 1000)  # balpm label lands here
            _at_pair(page, 1)
            for i in range(KILL_AFTER):
                _type(page, keys[i], i + 2)
                if i == 3:
                    shot(page, SHOTS / "label-pair.png")
            # back one pair with the left arrow: it shows its label; typing the same key again changes nothing
            _type(page, "ArrowLeft", KILL_AFTER)
            assert page.get_by_text(f"labelled {VALUE[keys[KILL_AFTER - 1]]}").count() >= 1
            _type(page, keys[KILL_AFTER - 1], KILL_AFTER + 1)
            assert len(_store_rows(run_dir)) == KILL_AFTER

            # SIGKILL the server (balpm label and its Streamlit child), start it again, reload the page
            server.kill()
            url = server.start()
            page.reload()
            _at_pair(page, KILL_AFTER + 1)  # the first unlabelled pair
            for i in range(KILL_AFTER, N):
                _type(page, keys[i], i + 2 if i < N - 1 else None)
            shot(page, SHOTS / "label-done.png")

            rows = _store_rows(run_dir)
            assert [r[1] for r in rows] == batch["pair_id"].tolist()  # all 20, each exactly once, in pick order
            assert [r[2] for r in rows] == [VALUE[k] for k in keys]  # with the value typed
            assert {r[0] for r in rows} == {0} and {r[3] for r in rows} == {"browser-test"}

            # the export, downloaded from the page
            with page.expect_download() as dl:
                page.get_by_role("button", name="Export labels (JSONL)").click()
            export = folder / "labels.jsonl"
            dl.value.save_as(export)

            # the next round, from the page's button
            act(page, lambda: page.get_by_role("button", name="Select the next round").click())
            page.get_by_text(f"round 1: 0 of {N} labelled").first.wait_for(timeout=HANG * 1000)
            _at_pair(page, 1)
            shot(page, SHOTS / "label-next-round.png")
            browser.close()
    finally:
        server.kill(signal.SIGTERM)

    run = runs.open_run(selection["root"], run_dir.name)
    acq = run.acquisitions()
    assert sorted(acq["round"].unique()) == [0, 1] and acq["pair_id"].is_unique and (acq["round"] == 1).sum() == N
    assert run.rounds()["labelled"].tolist()[1] == run.rounds()["labelled"].tolist()[0] + sum(k in "ab" for k in keys)

    exported = [json.loads(line) for line in export.read_text(encoding="utf-8").splitlines()]
    assert len(exported) == N - len(TYPED_TIE_SKIP) and set(exported[0]) == {"prompt", "chosen", "rejected"}
    for row, k in zip(exported, [k for k in keys if k in "ab"]):
        assert {row["chosen"], row["rejected"]} <= set(batch[["answer_a", "answer_b"]].to_numpy().ravel())
    chosen_a = [r["answer_a"] if k == "a" else r["answer_b"] for (_, r), k in zip(batch.iterrows(), keys) if k in "ab"]
    assert [r["chosen"] for r in exported] == chosen_a
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    main(["run", "--data", str(export), "--policy", "random", "--initial", "4", "--batch-size", "2", "--rounds", "2",
          "--ensemble-size", "2", "--hidden", "8", "--epochs", "1", "--no-pool-scores", "--runs-dir", str(folder / "sim"),
          "--set", f"features.cache_dir={folder / 'cache'}", "--set", "features.max_length=64", "-q"])
    sim = runs.list_runs(folder / "sim")
    assert len(sim) == 1 and sim[0].state == "complete"
