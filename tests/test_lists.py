"""One source for each list: metrics, run files, formats, poolings, devices and world specs are defined once and
read everywhere else (issue 16, item 3). Each test plants a case that a second, drifting copy would get wrong."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from balpm import devices
from balpm.config import LOADER_FORMATS, POOLINGS, RunConfig, field_info
from balpm.data.load import FORMATS
from balpm.data.worlds import canonical_spec, parse_world
from balpm.errors import ConfigError, FeatureError
from balpm.evidence import metrics, stats
from balpm.experiment import runs
from balpm.features import encoder

REPO = Path(__file__).resolve().parents[1]


def test_quality_metrics_come_from_the_metric_specs():
    names = [m.name for m in metrics.METRIC_SPECS]
    assert metrics.PREFERENCE_METRICS == tuple(names)
    columns = {f"{split}_{n}" for split in metrics.EVAL_SPLITS for n in names}
    assert set(stats.QUALITY_METRICS) == set(stats.METRIC_NAMES) == columns
    for m in metrics.METRIC_SPECS:
        assert stats.metric_direction(f"test_{m.name}") == (1 if m.higher_is_better else -1)
        assert stats.METRIC_NAMES[f"ood_{m.name}"] == f"OOD {m.label}"
    # what preference_metrics computes is exactly the list (brier and ece are lower-is-better)
    probs_N_K = np.array([[0.9, 0.8], [0.2, 0.4], [0.6, 0.7]])
    assert set(metrics.preference_metrics(probs_N_K)) >= set(names)
    assert stats.metric_direction("test_brier") == stats.metric_direction("ood_ece") == -1


def test_the_loop_evaluates_every_metric_of_the_list():
    from balpm.experiment.loop import _evaluate

    class Ensemble:
        def predict_probs(self, pairs):
            return np.full((len(pairs), 3), 0.7)

    class Inputs:
        def pairs(self, rows):
            return np.zeros((len(rows), 2, 4), dtype=np.float32)

    out = _evaluate(Ensemble(), Inputs(), np.arange(5), "test")
    assert list(out) == list(metrics.evaluation_columns("test"))
    assert out["test_accuracy"] == 1.0 and out["test_log_likelihood"] == pytest.approx(np.log(0.7))
    assert all(np.isnan(v) for v in _evaluate(Ensemble(), Inputs(), np.arange(0), "ood").values())


def test_the_dashboard_labels_every_quality_metric():
    from balpm_dashboard import frames

    assert frames.METRICS == stats.METRIC_NAMES  # ood_brier and ood_ece were missing (6 of 8)


def test_the_dashboard_refuses_what_runs_refuses(tmp_path):
    from balpm_dashboard import state

    root = tmp_path / "runs"
    (root / "ok-run").mkdir(parents=True)
    outside = tmp_path / "secret.parquet"
    outside.write_text("x")
    for name in ("config.yaml", "status.json", "rounds.parquet", "acquisitions.parquet", "pool.parquet"):
        bad = root / f"link-{name.split('.')[0]}"
        bad.mkdir()
        os.symlink(outside, bad / name)  # one run file leading out of the runs folder
        assert state.refusal(root, bad.name) == runs.refused(root, bad.name) is not None, name
    os.symlink(root / "ok-run", root / "linked-run")
    assert state.refusal(root, "linked-run") == runs.refused(root, "linked-run") is not None
    assert state.refusal(root, "ok-run") is None and runs.refused(root, "ok-run") is None
    assert "not a run id" in state.refusal(root, "bad name")


def test_formats_and_poolings_are_one_tuple_each():
    assert FORMATS is LOADER_FORMATS
    assert field_info("data.format")[1].metadata["choices"] == LOADER_FORMATS + ("synthetic",)
    assert field_info("features.pooling")[1].metadata["choices"] == POOLINGS == encoder.POOLINGS
    assert set(POOLINGS) - {"auto"} == set(encoder.POOLERS)  # every pooling the config admits is implemented
    assert RunConfig().replace(features={"pooling": "cls"}).validate().features.pooling == "cls"


def test_one_device_resolver(monkeypatch):
    import torch

    from balpm.engine import model

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert model.resolve_device("auto") == encoder.resolve_device("cpu") == devices.resolve("auto", mps=False)
    for bad in ("tpu", "cuda:x", "CPU"):
        with pytest.raises(ConfigError, match="unknown device"):
            devices.check_name(bad)
        with pytest.raises(ConfigError, match="unknown device"):
            RunConfig().replace(features={"device": bad}).validate()
    with pytest.raises(ConfigError, match="model.device.*no CUDA GPU"):
        model.resolve_device("cuda")
    with pytest.raises(FeatureError, match="features.device.*no CUDA GPU"):
        encoder.resolve_device("cuda:1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert model.resolve_device("auto").type == encoder.resolve_device("auto").type == "cuda"


def test_two_spellings_of_a_world_are_one_run():
    a = RunConfig().replace(data={"world": "test=pool, noisy_share=0.20"})
    b = RunConfig().replace(data={"world": "noisy_share=0.2,test=pool"})
    assert a.data.world == b.data.world == parse_world("noisy_share=0.2,test=pool").spec()
    assert a.hash() == b.hash() and runs.default_run_id(a) == runs.default_run_id(b)
    assert RunConfig().replace(data={"world": "classic"}).hash() == RunConfig().hash()  # the classic world is ""
    assert RunConfig.from_yaml("data:\n  world: test=pool,noisy_share=0.2\n").hash() == a.hash()
    with pytest.raises(ConfigError, match="unknown world knob"):
        RunConfig().replace(data={"world": "noisy=0.2"})


#: world 0 of runs/worlds-24/worlds.yaml, as ``balpm worlds`` wrote it (the folder is not in git)
WORLDS_24_SPEC = ("noisy_share=0.571,contrast_ratio=1.61,noisy_flip=0.722,test=topics,imbalance=2.65,cpp=1,"
                  "n_prompts=851,budget=0.087,dim=128")


def test_canonical_world_specs_of_existing_runs_are_unchanged():
    """The canonical form is what ``balpm worlds`` wrote: a run of runs/worlds-24 keeps its id."""
    assert canonical_spec(WORLDS_24_SPEC) == WORLDS_24_SPEC
    assert RunConfig().replace(data={"world": WORLDS_24_SPEC}).data.world == WORLDS_24_SPEC
    folder = REPO / "runs" / "worlds-24"
    if not (folder / "worlds.yaml").is_file():
        pytest.skip("runs/worlds-24 is not in this checkout")
    from balpm import safe_yaml

    worlds = safe_yaml.load_file(folder / "worlds.yaml", "worlds.yaml")["worlds"]
    specs = [w["spec"] if isinstance(w, dict) else str(w) for w in worlds]
    assert specs and all(canonical_spec(s) == s for s in specs)
    run = next(p for p in sorted(folder.iterdir()) if (p / "config.yaml").is_file())
    cfg = RunConfig.from_yaml(run / "config.yaml")
    assert cfg.data.world in specs and runs.default_run_id(cfg) == run.name
