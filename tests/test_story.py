"""balpm.evidence.story: the words say what the summary of balpm.evidence.report says, number for number.

Learning curves with a known structure (a policy that gains, one that loses, one that is noise, ceiling
runs near or far above round 0) go through the real :func:`balpm.evidence.report.summarize`; the sentences are
then checked against that summary, and the verdict each kind of curve must get is checked too.
"""
from __future__ import annotations


import numpy as np
import pandas as pd
import pytest

from balpm.evidence import report, story
from run_records import Run as FakeRun

X = np.arange(50, 550, 50, dtype=float)  # 10 rounds, 50 labels each


def _curve(seed: int, shift: float, noise: float, rng_offset: int) -> np.ndarray:
    rng = np.random.default_rng(1000 * rng_offset + seed)
    seed_level = np.random.default_rng(seed).normal(0, 0.01)  # shared by all policies of a seed: pairing helps
    return -0.69 + 0.08 * (1 - np.exp(-X / 200)) + seed_level + shift * (X - X[0]) / (X[-1] - X[0]) \
        + rng.normal(0, noise, X.size)


def _run(policy: str, seed: int, y: np.ndarray, label: str | None = None, x: np.ndarray = X) -> FakeRun:
    rounds = pd.DataFrame({"round": np.arange(len(x)), "labelled": x, "test_log_likelihood": y,
                           "test_accuracy": 0.5 + (y + 0.69)})
    return FakeRun(f"{label or policy}-s{seed}", label or policy, policy, seed, "s1", rounds)


def _summary(ceiling_gain: float | None = None, seeds: int = 6) -> dict:
    runs = []
    for s in range(seeds):
        runs.append(_run("random", s, _curve(s, 0.0, 0.002, 1)))
        runs.append(_run("balpm", s, _curve(s, 0.04, 0.002, 2)))  # gains steadily: better
        runs.append(_run("bald", s, _curve(s, -0.04, 0.002, 3)))  # loses steadily: worse
        runs.append(_run("softmax_bald", s, _curve(s, 0.0, 0.01, 4)))  # noise only: no detectable difference
        if ceiling_gain is not None:
            start = float(_curve(s, 0.0, 0.002, 1)[0])
            runs.append(_run("full", s, np.array([start + ceiling_gain]), x=np.array([1960.0])))
    return report.summarize(runs, n_boot=200)


@pytest.fixture(scope="module")
def summary() -> dict:
    return _summary()


def _vs(summary: dict, policy: str) -> dict:
    return next(e for e in summary["policies"] if e["policy"] == policy)["vs_baseline"]["test_log_likelihood"]


def test_better_worse_and_null_sentences_carry_the_summarys_numbers(summary):
    lines = story.verdict_lines(summary, "s1")
    assert len(lines) == 3  # the baseline gets none
    by = {line.split(" ", 1)[0]: line for line in lines}
    for name, policy, verdict in (("BAL-PM", "balpm", "better"), ("BALD", "bald", "worse"),
                                  ("SoftmaxBALD", "softmax_bald", "no detectable difference")):
        vs = _vs(summary, policy)
        assert vs["verdict"] == verdict, policy  # the curves were built for this verdict
        line = by[name]
        lo, hi = vs["aulc_diff"]["ci"]
        assert f"AULC {vs['aulc_diff']['mean']:+.4f}, 95% CI [{lo:+.4f}, {hi:+.4f}], 6 paired seeds" in line
    assert by["BAL-PM"].startswith("BAL-PM beat random:")
    fl = _vs(summary, "balpm")["fewer_labels"]["exact"]
    assert f"{fl['value'] * 100:.1f}% [{fl['ci'][0] * 100:.1f}, {fl['ci'][1] * 100:.1f}] fewer labels" in by["BAL-PM"]
    assert by["BALD"].startswith("BALD did worse than random:") and "fewer labels" not in by["BALD"]
    null = by["SoftmaxBALD"]
    assert null.startswith("SoftmaxBALD vs random: no detectable difference") and "fewer labels" not in null
    assert f"could detect a difference of {_vs(summary, 'softmax_bald')['mde']:.4f} or more (MDE, 80% power" in null


def test_only_the_chosen_labels_and_holm_when_it_disagrees(summary):
    assert [line.split(" ", 1)[0] for line in story.verdict_lines(summary, "s1", labels=["bald"])] == ["BALD"]
    entry = next(e for e in summary["policies"] if e["policy"] == "balpm")
    changed = {**entry, "vs_baseline": {"test_log_likelihood": {**_vs(summary, "balpm"),
                                                                "holm_verdict": "no detectable difference"}}}
    text = story.verdict_sentence(changed, "random")
    assert text.endswith("[under Holm's control over the report's comparisons: no detectable difference]")
    agrees = story.verdict_sentence(entry, "random")  # a called verdict that Holm keeps says so, with its MDE
    assert agrees.endswith("[holds under Holm's control over the report's comparisons]")
    assert f"; MDE {_vs(summary, 'balpm')['mde']:.4f} (80% power" in agrees


def test_two_labels_of_one_policy_are_named_by_label():
    runs = [_run("random", s, _curve(s, 0.0, 0.002, 1)) for s in range(3)]
    runs += [_run("balpm", s, _curve(s, 0.04, 0.002, 2)) for s in range(3)]
    runs += [_run("balpm", s, _curve(s, 0.0, 0.002, 5), label="balpm uncertainty=none") for s in range(3)]
    lines = story.verdict_lines(report.summarize(runs, n_boot=100), "s1")
    assert lines[0].startswith("balpm ") and lines[1].startswith("balpm uncertainty=none ")


@pytest.mark.parametrize("gain, separable", [(0.001, False), (0.3, True)])
def test_headroom_against_the_aa_noise_says_whether_the_runs_can_separate(gain, separable):
    s = _summary(ceiling_gain=gain)
    lines = story.headroom_lines(s, "s1")
    aa = s["aa_check"]["s1"]
    c = s["ceiling"]["s1"]["metrics"]["test_log_likelihood"]
    assert f"random's 6 seeds split in halves, {aa['splits']} splits" in lines[0]
    assert f"by up to {aa['per_metric']['test_log_likelihood']['noise']:.4f}" in lines[0]
    assert f"reaches test log-likelihood {c['mean']:.4f}" in lines[1] and f"headroom of {c['headroom']:+.4f}" in lines[1]
    assert story.separable(s, "s1") is separable
    assert ("cannot separate the policies" in lines[2]) is (not separable)
    assert ("could show" in lines[2]) is separable


def test_without_ceiling_or_aa_the_words_say_so():
    s = _summary(seeds=3)
    lines = story.headroom_lines(s, "s1")
    assert lines[0].startswith("A/A check: not run: needs >= 6 seeds") and lines[1].startswith("Ceiling: unknown")
    assert story.separable(s, "s1") is None and len(lines) == 2


def test_acquired_noisy_share_excludes_the_initial_labels():
    rounds = pd.DataFrame({"labelled": [50, 100, 150], "noisy_share": [0.4, 0.5, 0.6]})
    assert story._acquired_noisy_share(rounds) == pytest.approx((0.6 * 150 - 0.4 * 50) / 100)
    assert story._acquired_noisy_share(rounds.assign(noisy_share=np.nan)) is None  # real data: unknown, not 0


def test_mechanism_line_and_conditions_from_mechanisms(summary):
    mech = {"random": story.Mechanism("random", 6, 0.40, 0.40, 48.7, 50, 500, 2800),
            "bald": story.Mechanism("bald", 6, 0.89, 0.40, 47.2, 50, 500, 2800),
            "balpm": story.Mechanism("balpm", 6, 0.31, 0.40, 49.9, 50, 500, 2800)}
    line = story.mechanism_line(mech, summary, "s1", "the noisy chit-chat region")
    assert line == ("Why: share of the acquired labels in the noisy chit-chat region (pool: 40%): random 40%, "
                    "BALD 89%, BAL-PM 31%; distinct prompts per batch of 50: random 48.7, BALD 47.2, BAL-PM 49.9.")
    cond = story.teaching_conditions(mech)
    assert len(cond) == len(story.TEACHING_CONDITIONS) and cond[-1].endswith("here 500 labels of a 2,800-comparison pool")
    words = " ".join(story.teaching_conditions())
    for knob, _ in story.TEACHING_CONDITIONS:
        words = words.replace(knob, "")
    assert not any(ch.isdigit() for ch in words)  # no measured number is hard-coded, only the knobs
