"""Adding a policy is one module: tests/plugins/toy_policy.py (a toy with one knob, ``weight``), loaded only
through ``BALPM_PLUGINS``, runs through ``balpm run``, ``balpm sweep --grid``, ``balpm report`` (its label and
colour), a resume after an interruption (bit for bit) and the Ablations page (its knob's widget)."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest

from balpm.acquisition import registry
from balpm.cli import main
from balpm.config import RunConfig
from balpm.experiment import loop, runs

PLUGINS = Path(__file__).parent / "plugins"
APP = Path(__file__).resolve().parents[1] / "dashboard" / "app.py"
SMALL = ["--pool-size", "60", "--initial", "10", "--batch-size", "10", "--rounds", "3", "--hidden", "16",
         "--epochs", "1", "--ensemble-size", "3", "-q"]


@pytest.fixture(scope="module")
def toy():
    """The toy registered the way a user would: ``BALPM_PLUGINS=toy_policy`` with its folder on the path."""
    mp = pytest.MonkeyPatch()
    mp.syspath_prepend(str(PLUGINS))
    mp.setenv("BALPM_PLUGINS", "toy_policy")
    assert "toy_topk" in registry.names()
    yield registry.policy_entry("toy_topk")
    registry.unregister_policy("toy_topk")
    registry._LOADED.discard("toy_policy")
    sys.modules.pop("toy_policy", None)
    mp.undo()


def test_a_plugin_that_fails_to_import_is_one_line(monkeypatch, capsys):
    monkeypatch.setenv("BALPM_PLUGINS", "no_such_policy_module")
    with pytest.raises(SystemExit) as exc:
        main(["run", "--print-config"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "no_such_policy_module" in err and "BALPM_PLUGINS" in err, err
    assert len(err.strip().splitlines()) == 1


def test_the_toy_runs_resumes_sweeps_reports_and_shows(toy, tmp_path, monkeypatch, capsys):
    root = tmp_path / "runs"
    # ---- balpm run, with the knob through --set; it records its own step column --------------------------
    main(["run", "--runs-dir", str(root), "--policy", "toy_topk", "--set", "acquisition.weight=0.5",
          "--run-id", "toy", *SMALL])
    run = runs.open_run(root, "toy")
    assert run.config.acquisition.weight == 0.5 and runs.inspect_run(root / "toy").state == "complete"
    acq = run.acquisitions()
    assert acq["feature_term"].notna().all() and acq["h"].isna().all()  # its column; BAL-PM's read as NaN
    # ---- interrupted after round 0 (the writer's own state: a failed run at round 0), then resumed ------
    shutil.copytree(root / "toy", root / "toy-cut")
    status = json.loads((root / "toy-cut" / "status.json").read_text())
    status.update(state="failed", last_round=0, error="interrupted")
    (root / "toy-cut" / "status.json").write_text(json.dumps(status))
    done = loop.run(run.config, root, resume=True, run_id="toy-cut", progress=False)
    for name in ("acquisitions.parquet", "rounds.parquet"):
        a, b = pd.read_parquet(root / "toy" / name), pd.read_parquet(done / name)
        keep = [c for c in a.columns if not c.endswith("_seconds")]
        pd.testing.assert_frame_equal(a[keep], b[keep], check_exact=True)
    # ---- balpm sweep --grid weight=0.5,1 over the toy and random: the grid is the toy's knob only --------
    sweep_root = tmp_path / "sweep"
    main(["sweep", "--runs-dir", str(sweep_root), "--policies", "toy_topk,random", "--seeds", "0,1",
          "--grid", "weight=0.5,1", *SMALL])
    labels = sorted(i.label for i in runs.list_runs(sweep_root) if i.state == "complete")
    assert labels == ["random", "random", "toy_topk", "toy_topk", "toy_topk weight=0.5", "toy_topk weight=0.5"]
    # ---- balpm report: its label, and its registry colour in the HTML ---------------------------------
    capsys.readouterr()
    html = tmp_path / "report.html"
    main(["report", str(sweep_root), "--html", str(html)])
    assert "toy_topk weight=0.5" in capsys.readouterr().out
    assert toy.color in html.read_text()
    # ---- the Ablations page: the toy's knob is a widget with its bounds ------------------------------
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("BALPM_RUNS_DIR", str(root))
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    at.switch_page("views/ablations.py").run()
    at.selectbox(key="abl_base").set_value("toy").run()
    assert not at.exception, [e.message for e in at.exception]
    widget = at.number_input(key="abl_weight")
    assert widget.value == 0.5 and widget.min == 0.0
    assert RunConfig.from_yaml(root / "toy" / "config.yaml").hash() == run.config.hash()
