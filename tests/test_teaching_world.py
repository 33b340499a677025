"""The teaching world teaches the paper's lessons, end to end through the engine at the teaching preset.

With 4 seeds (docs/teaching-world.md's table uses 8; the claims there are stronger): paired by seed, on the AULC of
test log-likelihood, with 95% Student-t intervals (``balpm.evidence.stats.t_interval``):

* BAL-PM beats random and BALD (interval above zero);
* BALD is not better than random (it spends ~90% of its labels in the chit-chat cluster);
* both ablations, BAL-PM without U and the entropy minimiser, are worse than BAL-PM;
* and the mechanism: BALD's picks are mostly chit-chat, BAL-PM's topic picks are mostly clear pairs,
  BAL-PM without U picks clear pairs no more often than random.

One slow test (20 runs of the preset, two processes); each run is a bare ``apply_preset(RunConfig())``,
so it is the config a bare ``balpm sweep`` builds.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from balpm.config import RunConfig
from balpm.data.synthetic import teaching_world
from balpm.evidence.metrics import aulc
from balpm.evidence.stats import t_interval
from balpm.experiment import runs, sweep
from balpm.experiment.presets import apply_preset

SEEDS = (0, 1, 2, 3)
VARIANTS = {
    "random": {"policy": "random"},
    "bald": {"policy": "bald"},
    "balpm": {"policy": "balpm"},
    "no_u": {"policy": "balpm", "uncertainty": "none"},
    "minimiser": {"policy": "balpm", "minimize_entropy": True},
}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("teaching")
    base = apply_preset(RunConfig()).replace(loop={"save_pool_scores": False})
    configs, names = [], []
    for name, acq in VARIANTS.items():
        for seed in SEEDS:
            configs.append(base.replace(acquisition=acq, loop={"seed": seed}))
            names.append((name, seed))
    out = sweep.sweep(configs, root, workers=2, progress=False)
    assert [r.state for r in out] == ["complete"] * len(configs), [r.error for r in out if r.error]
    worlds = {s: teaching_world(seed=s)[0].set_index("pair_id") for s in SEEDS}
    rows = []
    for (name, seed), res in zip(names, out):
        run = runs.open_run(root, res.run_id)
        r = run.rounds()
        acq = run.acquisitions()
        world = worlds[seed].loc[acq["pair_id"]]
        topic = world["cluster"].to_numpy() > 0
        rows.append({
            "name": name, "seed": seed,
            "aulc": aulc(r["labelled"].to_numpy(float), r["test_log_likelihood"].to_numpy()),
            "labels": int(r["labelled"].iloc[-1]),
            "chat": float(np.mean(~topic)),
            "clear": float(np.mean(world["contrast"].to_numpy()[topic] >= 1.0)) if topic.any() else np.nan,
        })
    return pd.DataFrame(rows)


def _diff(df: pd.DataFrame, a: str, b: str):
    piv = df.pivot(index="seed", columns="name", values="aulc")
    return t_interval((piv[a] - piv[b]).to_numpy())


@pytest.mark.slow
def test_teaching_world_lessons(results):
    df = results
    assert (df["labels"] == 500).all()                             # the preset's budget: 50 + 50 x 9
    vs_random = _diff(df, "balpm", "random")
    vs_bald = _diff(df, "balpm", "bald")
    bald_vs_random = _diff(df, "bald", "random")
    vs_no_u = _diff(df, "balpm", "no_u")
    vs_min = _diff(df, "balpm", "minimiser")
    named = {"vs_random": vs_random, "vs_bald": vs_bald, "bald_vs_random": bald_vs_random, "vs_no_u": vs_no_u,
             "vs_min": vs_min}
    summary = {k: (round(v.mean, 4), round(v.low, 4), round(v.high, 4)) for k, v in named.items()}
    assert vs_random.low > 0, summary                             # BAL-PM beats random
    assert vs_bald.low > 0, summary                               # ... and BALD
    assert bald_vs_random.mean < 0 and bald_vs_random.low < 0, summary   # BALD is not better than random
    assert vs_no_u.low > 0, summary                               # U matters inside BAL-PM
    assert vs_min.low > 0, summary                                # the entropy term's sign matters
    # the mechanism behind the numbers
    mean = df.groupby("name")[["chat", "clear"]].mean()
    assert mean.loc["bald", "chat"] > 0.75                         # BALD's attractor: chit-chat
    assert mean.loc["balpm", "chat"] < mean.loc["random", "chat"] < mean.loc["bald", "chat"]
    assert mean.loc["balpm", "clear"] > 0.8 and mean.loc["no_u", "clear"] < 0.6   # U picks the clear pair
    assert abs(mean.loc["no_u", "clear"] - mean.loc["random", "clear"]) < 0.1
    assert mean.loc["minimiser", "chat"] > 0.95                    # the minimiser piles into the dense blob
