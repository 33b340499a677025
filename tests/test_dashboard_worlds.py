"""The dashboard's Worlds page in Streamlit's AppTest, on the real tiny worlds sweep of tests/conftest.py
(``worlds_sweep``): the numbers shown are balpm.evidence.worlds_report's (the same as ``balpm report --worlds``)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from balpm.evidence import worlds_report

APP = REPO / "dashboard" / "app.py"


def _page(root: Path, monkeypatch) -> AppTest:
    monkeypatch.setenv("BALPM_RUNS_DIR", str(root))
    at = AppTest.from_file(str(APP), default_timeout=300)
    at.run()
    at.switch_page("views/worlds.py").run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def test_worlds_page_shows_verdict_shares_distributions_regime_map_and_per_world_table(worlds_sweep, monkeypatch):
    summary = worlds_report.worlds_report([worlds_sweep])
    at = _page(worlds_sweep, monkeypatch)
    assert at.title[0].value == "Worlds"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {"worlds": "5", "runs": "45", "comparisons": "15", "Holm family (m)": "15"}
    shares = at.dataframe[0].value.set_index("comparison")
    for comp, vs in summary["verdict_shares"].items():
        verdicts = ("better", "worse", "no detectable difference")
        assert shares.loc[comp, "Holm: better / worse / none"] == " / ".join(str(vs["holm"][v]) for v in verdicts)
        assert shares.loc[comp, "per comparison: better / worse / none"] == " / ".join(str(vs["raw"][v]) for v in verdicts)
        assert shares.loc[comp, "worlds"] == 5
    assert len(at.get("plotly_chart")) == 2  # the distributions and the regime map
    regime = at.dataframe[1].value
    rho = summary["regime"]["balpm - random"]["knobs"]["noisy_share"]["rho"]
    row = regime[(regime["comparison"] == "balpm - random") & (regime["knob"] == "noisy_share")].iloc[0]
    assert row["summary"].startswith(f"ρ {rho:+.2f}")
    per = at.dataframe[2].value
    assert len(per) == 15 and set(per["comparison"]) == set(summary["comparisons"])
    for got, want in zip(per.to_dict("records"), summary["table"]):
        assert got["effect"] == pytest.approx(want["mean"]) and got["Holm"] == want["holm_verdict"]
        assert got["p Holm"] == pytest.approx(want["p_holm"]) and got["MDE"] == pytest.approx(want["mde"])
    assert len(at.get("download_button")) == 2
    # one comparison only: the regime map keeps one row of panels and the summary only its knobs
    at.multiselect(key="wo_comps").set_value(["bald - random"]).run()
    assert not at.exception
    assert set(at.dataframe[1].value["comparison"]) == {"bald - random"}


def test_worlds_page_without_complete_runs_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("BALPM_RUNS_DIR", str(tmp_path))
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    at.switch_page("views/worlds.py").run()
    assert not at.exception
    assert "balpm worlds" in " ".join(i.value for i in at.info)
