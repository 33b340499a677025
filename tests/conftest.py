"""Shared fixtures: where the real data lives, and a temporary runs root.

The real-data tests read ``$BALPM_SHARED_DATA`` (default ``../shared/data`` beside the checkout).
Outside CI they are skipped when it is missing, and the run ends with one line saying how many were
skipped and how to enable them (not one line per test); in CI (``CI=true``) a missing folder fails them.
"""
from __future__ import annotations

import os
from pathlib import Path

# Idle OpenMP threads sleep instead of spinning: on a 2-core machine shared with a streamlit server
# or a second process, spinning threads made small torch calls 4-6x slower. Set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

REPO = Path(__file__).resolve().parents[1]


def _shared_data_dir() -> Path:
    env = os.environ.get("BALPM_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


REAL_DATA_SKIP = "real data not found"
REAL_DATA_CATEGORY = "skipped (no real data)"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder holding summarize_from_feedback/ (fails in CI, skips elsewhere, when absent)."""
    path = _shared_data_dir()
    if not (path / "summarize_from_feedback" / "comparisons").is_dir():
        msg = f"{REAL_DATA_SKIP} at {path}; set BALPM_SHARED_DATA to the shared data folder"
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def pytest_report_teststatus(report, config):
    """Real-data skips get their own category: not one ``SKIPPED`` line each in the ``-ra`` summary,
    but a count in the final stats line and the single line of :func:`pytest_unconfigure`."""
    if report.skipped and REAL_DATA_SKIP in str(report.longrepr):
        return REAL_DATA_CATEGORY, "s", "SKIPPED (no real data)"
    return None


def pytest_unconfigure(config):
    """The run's last line: how many real-data tests were skipped and how to run them."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    n = len([r for r in reporter.stats.get(REAL_DATA_CATEGORY, []) if getattr(r, "when", "") in ("setup", "call")])
    if n:
        reporter.write_line(f"{n} real-data test(s) skipped: no data at {_shared_data_dir()}; to run them, set "
                            "BALPM_SHARED_DATA to the folder holding summarize_from_feedback/ "
                            "(e.g. BALPM_SHARED_DATA=../shared/data .venv/bin/python -m pytest -q)", yellow=True)


@pytest.fixture(scope="session")
def comparisons_dir(shared_data: Path) -> Path:
    """OpenAI's comparison JSON-lines files."""
    return shared_data / "summarize_from_feedback" / "comparisons"


@pytest.fixture(scope="session")
def tldr_table(comparisons_dir: Path):
    """``make(n)``: a preference table of the first ``n`` real TL;DR comparisons of batch13.json, built by
    hand (no balpm loader involved), for tests of what comes after loading."""
    import json

    import pandas as pd

    def make(n: int) -> pd.DataFrame:
        rows = []
        with open(comparisons_dir / "batch13.json", encoding="utf-8") as fh:
            for i, line in enumerate(fh):
                if i == n:
                    break
                rec = json.loads(line)
                summaries = [s["text"] for s in rec["summaries"]]
                rows.append({"pair_id": f"b13-{i}", "prompt_id": rec["info"]["id"], "prompt": rec["info"]["post"],
                             "chosen": summaries[rec["choice"]], "rejected": summaries[1 - rec["choice"]],
                             "split": "train", "source": "tldr"})
        return pd.DataFrame(rows)

    return make


#: the tiny worlds of the shared worlds sweep (tests/test_worlds_report.py, tests/test_dashboard_worlds.py)
TINY_WORLDS = ("n_prompts=60,cpp=2,noisy_share=0.2,contrast_ratio=1",
               "n_prompts=60,cpp=2,noisy_share=0.5,contrast_ratio=12,test=pool",
               "n_prompts=60,cpp=2,noisy_share=0.3,contrast_ratio=20,noisy_flip=0.5",
               "n_prompts=60,cpp=2,noisy_share=0.4,contrast_ratio=4,test=ood",
               "n_prompts=60,cpp=2,noisy_share=0.1,contrast_ratio=0.5")


@pytest.fixture(scope="session")
def worlds_sweep(tmp_path_factory) -> Path:
    """A real worlds sweep at a tiny scale: the five :data:`TINY_WORLDS` (``data.world``) x random, bald,
    balpm x seeds 0-2, each a 3-round loop (10 + 10 + 10 labels) of a 3-member (8,) ensemble; ~45 runs."""
    from balpm.config import RunConfig
    from balpm.experiment import sweep

    root = tmp_path_factory.mktemp("worlds")
    cfgs = []
    for spec in TINY_WORLDS:
        base = RunConfig().replace(data={"world": spec}, model={"hidden": (8,), "ensemble_size": 3, "max_epochs": 3,
                                                                "lr": 1e-2, "batch_size": 16, "device": "cpu"},
                                   loop={"initial": 10, "batch_size": 10, "rounds": 3})
        cfgs += sweep.expand(base, ["random", "bald", "balpm"], [0, 1, 2])
    results = sweep.sweep(cfgs, root, workers=1, progress=False)
    assert all(r.state == "complete" for r in results), [r for r in results if r.state != "complete"]
    return root


@pytest.fixture(scope="session")
def hostile_runs_root(tmp_path_factory) -> Path:
    """The hostile runs folder of :mod:`hostile_runs` (markup in every untrusted string), built once for
    the AppTest and the Chromium tests of the dashboard; read-only for them."""
    import hostile_runs

    return hostile_runs.build(tmp_path_factory.mktemp("hostile"))


@pytest.fixture(scope="module")
def dashboard_server(tmp_path_factory):
    """``start(runs_root) -> url``: ``balpm dashboard --runs runs_root`` on a free 127.0.0.1 port, returned
    once its health check answers (waits on the server, not a fixed sleep; a server that exits fails at
    once with its log). Every server a module started is stopped (SIGTERM) at the module's end. The one
    start-up of the Chromium tests (test_dashboard_browser, test_dashboard_hostile_browser)."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    started: list[tuple[subprocess.Popen, object]] = []

    def start(runs_root: Path, timeout: float = 240.0) -> str:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        log_path = tmp_path_factory.mktemp("dashboard-log") / "balpm-dashboard.log"
        log = open(log_path, "wb")  # noqa: SIM115 - closed at teardown
        proc = subprocess.Popen([sys.executable, "-m", "balpm", "dashboard", "--runs", str(runs_root), "--port", str(port)],
                                stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO))
        started.append((proc, log))
        url = f"http://127.0.0.1:{port}"
        t0 = time.time()
        while time.time() - t0 < timeout and proc.poll() is None:
            try:
                if urllib.request.urlopen(url + "/_stcore/health", timeout=2).status == 200:
                    return url
            except OSError:
                time.sleep(0.2)
        raise AssertionError("balpm dashboard did not start: " + log_path.read_text(errors="replace")[-2000:])

    yield start
    for proc, log in started:
        proc.terminate()  # balpm dashboard stops its Streamlit child on SIGTERM
        assert proc.wait(timeout=30) is not None
        log.close()
