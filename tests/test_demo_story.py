"""``balpm demo`` tells the story in words whose numbers are ``balpm report --json``'s on the same runs.

One small demo (both worlds, 2 seeds, 3 rounds, small models) runs once for the module through the real
entry point; its printed sentences are parsed back and checked against ``balpm report <runs> --json``
(and ``--baseline bald``), and its mechanism line against rounds.parquet / acquisitions.parquet read here.
Also: newcomer details (every command that takes a folder exits 2 on a missing one).
"""
from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from balpm.cli import demo, main
from balpm.experiment import presets

SMALL_MODEL = {"ensemble_size": 3, "hidden": (16,), "max_epochs": 3, "patience": 2, "lr": 1e-2, "batch_size": 32,
               "standardize": True}
NUM = r"[+-]\d+\.\d{4}"
SENTENCE = re.compile(rf"\* (?P<who>\S+) (?:beat|did worse than|vs) (?P<base>\S+?):? .*?test log-likelihood AULC "
                      rf"(?P<mean>{NUM}), 95% CI \[(?P<lo>{NUM}), (?P<hi>{NUM})\], (?P<n>\d+) paired seeds")
NAMES = {"random": "random", "BALD": "bald", "BAL-PM": "balpm"}


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory, shared_data):
    """The demo's stdout and runs folder (both worlds, 2 seeds, 3 rounds, small models)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("BALPM_SHARED_DATA", str(shared_data))
    mp.setenv("HF_HUB_OFFLINE", "1")
    tiny = {**presets.TEACHING_PRESET, "model": {**presets.TEACHING_PRESET["model"], "ensemble_size": 3,
                                                 "max_epochs": 5}}
    mp.setattr(presets, "TEACHING_PRESET", tiny)
    mp.setattr(demo, "SCALES", {"small": {"loop": {"initial": 64, "batch_size": 64, "rounds": 8}, "model": SMALL_MODEL}})
    from balpm.experiment import projection

    mp.setattr(projection, "precompute", lambda *a, **k: {})  # the dashboard's map (~1 min of UMAP): not the words'

    root = tmp_path_factory.mktemp("demo")
    cap = tmp_path_factory.mktemp("out") / "stdout.txt"
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        main(["demo", "--seeds", "2", "--rounds", "3", "--no-dashboard", "--runs-dir", str(root), "--workers", "1"])
    mp.undo()
    cap.write_text(buf.getvalue())
    return buf.getvalue(), root


def _report_json(capsys, *args: str) -> dict:
    capsys.readouterr()
    main(["report", *args, "--json"])
    return json.loads(capsys.readouterr().out)


def _part(out: str, world: str) -> str:
    start = out.index(f"== The {world}")
    nxt = out.find("\n== ", start + 3)
    return out[start:] if nxt < 0 else out[start:nxt]


def _check_sentences(text: str, summary: dict, vs_bald: dict) -> int:
    """Every verdict sentence of ``text`` equals the summary's numbers; returns how many were checked."""
    checked = 0
    for m in SENTENCE.finditer(text):
        who, base = NAMES[m["who"]], NAMES[m["base"]]
        src = summary if base == "random" else vs_bald
        entry = next(e for e in src["policies"] if e["policy"] == who)
        vs = entry["vs_baseline"]["test_log_likelihood"]
        assert f"{vs['aulc_diff']['mean']:+.4f}" == m["mean"]
        assert [f"{c:+.4f}" for c in vs["aulc_diff"]["ci"]] == [m["lo"], m["hi"]]
        assert int(m["n"]) == vs["n"] == 2
        line = text[m.start():text.index("\n", m.start())]
        verdict = vs["verdict"]
        assert (" beat " in line) == (verdict == "better") and (" did worse than " in line) == (verdict == "worse")
        if verdict == "better" and vs["fewer_labels"]:
            fl = vs["fewer_labels"]["exact"]
            assert f"with {fl['value'] * 100:.1f}% [" in line
        else:
            assert "fewer labels" not in line or "fewer labels:" in line  # never a figure behind a non-'better'
        if verdict == "no detectable difference":
            assert f"could detect a difference of {vs['mde']:.4f} or more" in line
        checked += 1
    return checked


def test_words_come_first_and_equal_report_json_on_the_teaching_world(demo_out, capsys):
    out, root = demo_out
    assert out.index("The teaching world") < out.index("The real sample")  # the teaching world first
    assert "setting " not in out and "final mean ± SEM" not in out  # no hash heading, no table
    text = _part(out, "teaching world")
    troot = root / "teaching"
    summary, vs_bald = _report_json(capsys, str(troot)), _report_json(capsys, str(troot), "--baseline", "bald")
    assert _check_sentences(text, summary, vs_bald) == 3  # BALD and BAL-PM vs random, BAL-PM vs BALD
    assert f"balpm report {troot} --json" in text
    hr = summary["headroom"][summary["settings"][0]]["test_log_likelihood"]
    assert hr["source"] == "truth"
    assert (f"Bayes-optimal test log-likelihood is {hr['ceiling']:.4f}; random's AULC is {hr['baseline_aulc']:.4f}, "
            f"a headroom of {hr['headroom']:+.4f}") in text
    assert "A/A check: not run: needs >= 6 seeds" in text
    assert "When (what each part of this result needs): the BALD trap" in text and "docs/evidence.md" in text


def test_the_mechanism_line_is_the_runs_own_data(demo_out, capsys):
    out, root = demo_out
    text = _part(out, "teaching world")
    troot = root / "teaching"
    summary = _report_json(capsys, str(troot))
    why = next(line for line in text.splitlines() if "Why:" in line)
    for e in summary["policies"]:
        shares, uniq, pool = [], [], []
        for rid in e["run_ids"]:
            r = pd.read_parquet(troot / rid / "rounds.parquet")
            acquired = r["labelled"].iloc[-1] - r["labelled"].iloc[0]
            shares.append((r["noisy_share"].iloc[-1] * r["labelled"].iloc[-1]
                           - r["noisy_share"].iloc[0] * r["labelled"].iloc[0]) / acquired)
            a = pd.read_parquet(troot / rid / "acquisitions.parquet")
            uniq.append(a.groupby("round")["prompt_id"].nunique().mean())
            pool.append(json.loads((troot / rid / "truth.json").read_text())["noisy_share_pool"])
        name = {"random": "random", "bald": "BALD", "balpm": "BAL-PM"}[e["policy"]]
        assert f"{name} {sum(shares) / len(shares):.0%}" in why
        assert f"{name} {sum(uniq) / len(uniq):.1f}" in why
    assert f"(pool: {sum(pool) / len(pool):.0%})" in why and "chit-chat" in why


def test_real_sample_words_equal_report_json_with_ceiling_and_aa_status(demo_out, capsys):
    out, root = demo_out
    text = _part(out, "real sample")
    rroot = root / "real"
    summary, vs_bald = _report_json(capsys, str(rroot)), _report_json(capsys, str(rroot), "--baseline", "bald")
    assert _check_sentences(text, summary, vs_bald) == 3
    setting = summary["settings"][0]
    ceil = summary["ceiling"][setting]
    c = ceil["metrics"]["test_log_likelihood"]
    assert ceil["n_seeds"] == 2
    assert (f"reaches test log-likelihood {c['mean']:.4f}; the policies start at {c['initial']:.4f} (round 0), a "
            f"headroom of {c['headroom']:+.4f}") in text
    assert "A/A check: not run with 2 seed(s) (needs >= 6)" in text  # said up front, and again in the words
    assert "A/A check: not run: needs >= 6 seeds" in text
    assert "run on the full data" in text and f"balpm report {rroot}" in text
    assert "features: cache hit" in text or "first time only" in text


@pytest.mark.parametrize("argv", [
    ["featurize", "{missing}"], ["data", "inspect", "{missing}"], ["run", "--data", "{missing}"],
    ["sweep", "--data", "{missing}", "--seeds", "0"], ["report", "{missing}"], ["runs", "--runs-dir", "{missing}"],
    ["dashboard", "--runs", "{missing}", "--port", "8597"], ["plant", "--data", "{missing}", "--out", "{out}"],
    ["demo", "--data", "{missing}", "--no-dashboard", "--runs-dir", "{out}"],
])
def test_every_command_exits_2_on_a_missing_folder(argv, tmp_path, capfd):
    missing, out = tmp_path / "missing", tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        main([a.format(missing=missing, out=out) for a in argv])
    assert exc.value.code == 2
    err = capfd.readouterr().err
    assert err.startswith("error: ") and str(missing) in err and err.count("\n") == 1
    assert not missing.exists()
